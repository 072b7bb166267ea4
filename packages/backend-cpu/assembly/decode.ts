// The decode kernel of @qkv/backend-cpu (token-by-token generation: a few query rows against a
// long KV cache), compiled by scripts/build-wasm.mjs into its own module with an imported, shared
// memory: the session's K/V caches live in that memory (src/fast/arena.ts), so the kernel reads
// them where writeRows appended them, with no copy or repacking per step.
//
// Dimension names as in @qkv/core: Lq / Lk query / key lengths, hd head width, nq the query rows
// of one KV head in a step (its group's heads × Lq), n the keys of the range a call covers.
// Pointers are byte addresses in the shared memory; matrices are row-major f32.

import { exp2NonPositive } from './exp2';

/** Keys per block of pass 4: the block's V rows (KEY_BLOCK · hd floats) stay in L2 across channel groups. */
const KEY_BLOCK: i32 = 256;

// @ts-ignore: decorator
@inline
function hsum(x: v128): f32 {
  const t = f32x4.add(x, v128.shuffle<f32>(x, x, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.add(t, v128.shuffle<f32>(t, t, 1, 0, 3, 2)), 0);
}

// @ts-ignore: decorator
@inline
function hmax(x: v128): f32 {
  const t = f32x4.max(x, v128.shuffle<f32>(x, x, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.max(t, v128.shuffle<f32>(t, t, 1, 0, 3, 2)), 0);
}

/**
 * Attention of nq query rows per head, for `heads` KV heads side by side, over keys j0 … j0+n−1,
 * unnormalised (a partial result that merges exactly with other key ranges through its m and l).
 * Rows are (head h, row r) at index h·nqp + r, nqp = nq for one row, else nq rounded up to 4
 * (pass 4 takes four rows at a time; rows r ≥ nq are padding, ignored):
 *
 *   q     [heads·nqp, hd]  the query rows pre-scaled by scale·log₂e (base 2, as attention.ts)
 *   k, v                   address of key j0's channels of head 0; head h's are h·hd floats on,
 *                          consecutive keys `stride` bytes apart (the cache layout
 *                          [B, capacity, KVH·hd], read in place)
 *   count [nqp] i32        visible keys of row r within the range (the same for every head;
 *                          causal rows see a prefix)
 *   s     [heads·nqp, n4]  scratch scores, n4 = n rounded up to 4
 *   o     [heads·nqp, hd]  Σ_j 2^(s_j − m)·v_j;  m, l [heads·nqp]: row max (base 2, −∞ when
 *                          nothing is visible) and Σ_j 2^(s_j − m) (0 then, with o = 0)
 *
 * Pass 1 reads each key row once, front to back, every head's channels against that head's query
 * rows (a row of the cache is all heads side by side: reading it whole streams memory in order);
 * pass 2 takes the row maxima; pass 3 turns scores into 2^(s − m) and sums them; pass 4 reads V
 * the same way for one row per head, and per head in blocks of keys, four rows at a time,
 * otherwise. hd must be a multiple of 4.
 */
export function decode(
  q: usize,
  nq: i32,
  heads: i32,
  hd: i32,
  k: usize,
  v: usize,
  stride: usize,
  n: i32,
  count: usize,
  s: usize,
  o: usize,
  m: usize,
  l: usize,
): void {
  const nqp = nq === 1 ? 1 : (nq + 3) & ~3;
  const n4 = (n + 3) & ~3;
  const rowBytes = <usize>hd << 2;
  const sRow = <usize>n4 << 2;
  // Pass 1: s[h·nqp + r, j] = q_(h, r) · k_(j, h); two accumulators halve the add chain.
  for (let j = 0; j < n; j++) {
    const kj = k + <usize>j * stride;
    for (let h = 0; h < heads; h++) {
      const kh = kj + <usize>h * rowBytes;
      for (let r = 0; r < nq; r++) {
        if (j >= load<i32>(count + (<usize>r << 2))) continue;
        const row = <usize>(h * nqp + r);
        const qr = q + row * rowBytes;
        let a0 = f32x4.splat(0);
        let a1 = f32x4.splat(0);
        let c: usize = 0;
        for (; c + 32 <= rowBytes; c += 32) {
          a0 = f32x4.add(a0, f32x4.mul(v128.load(qr + c), v128.load(kh + c)));
          a1 = f32x4.add(a1, f32x4.mul(v128.load(qr + c + 16), v128.load(kh + c + 16)));
        }
        if (c < rowBytes) a0 = f32x4.add(a0, f32x4.mul(v128.load(qr + c), v128.load(kh + c)));
        store<f32>(s + row * sRow + (<usize>j << 2), hsum(f32x4.add(a0, a1)));
      }
    }
  }
  // Passes 2 and 3, per row: hidden keys (past the row's count, and the pad to n4) are −∞;
  // padding rows get p = 0 (pass 4 reads them in its groups of four) and stay out of the rest.
  const negInf = f32x4.splat(-Infinity);
  for (let h = 0; h < heads; h++) {
    for (let r = 0; r < nqp; r++) {
      const idx = <usize>(h * nqp + r);
      const row = s + idx * sRow;
      if (r >= nq) {
        memory.fill(row, 0, sRow);
        store<f32>(m + (idx << 2), -Infinity);
        store<f32>(l + (idx << 2), 0);
        continue;
      }
      const cnt = load<i32>(count + (<usize>r << 2));
      for (let j = cnt; j < n4; j++) store<f32>(row + (<usize>j << 2), -Infinity);
      let vm = negInf;
      for (let j = 0; j < n4; j += 4) vm = f32x4.max(vm, v128.load(row + (<usize>j << 2)));
      const mr = hmax(vm);
      store<f32>(m + (idx << 2), mr);
      // Nothing visible: subtract 0 so every p is 2^−∞ = 0 (−∞ − −∞ would be NaN).
      const sub = f32x4.splat(mr === -Infinity ? 0 : mr);
      let vl = f32x4.splat(0);
      for (let j = 0; j < n4; j += 4) {
        const p = exp2NonPositive(f32x4.sub(v128.load(row + (<usize>j << 2)), sub));
        v128.store(row + (<usize>j << 2), p);
        vl = f32x4.add(vl, p);
      }
      store<f32>(l + (idx << 2), hsum(vl));
    }
  }
  // Pass 4: o[h·nqp + r, :] = Σ_j p[h·nqp + r, j]·v_(j, h).
  memory.fill(o, 0, <usize>(heads * nqp) * rowBytes);
  if (nq === 1) {
    // One row per head (multi-head attention, one token): each V row read once, front to back,
    // into every head's o row (heads·hd floats: they stay in L1).
    for (let j = 0; j < n; j++) {
      const vj = v + <usize>j * stride;
      for (let h = 0; h < heads; h++) {
        const p = f32x4.splat(load<f32>(s + <usize>h * sRow + (<usize>j << 2)));
        const vh = vj + <usize>h * rowBytes;
        const oh = o + <usize>h * rowBytes;
        for (let c: usize = 0; c < rowBytes; c += 16) {
          v128.store(oh + c, f32x4.add(v128.load(oh + c), f32x4.mul(p, v128.load(vh + c))));
        }
      }
    }
    return;
  }
  // Several rows: per head, four rows × four channels in registers per (key block, channel group).
  for (let j0 = 0; j0 < n; j0 += KEY_BLOCK) {
    const j1 = min(n, j0 + KEY_BLOCK);
    for (let h = 0; h < heads; h++) {
      const vh = v + <usize>h * rowBytes;
      for (let r0 = 0; r0 < nqp; r0 += 4) {
        const row0 = <usize>(h * nqp + r0);
        const p0 = s + row0 * sRow;
        const p1 = p0 + sRow;
        const p2 = p1 + sRow;
        const p3 = p2 + sRow;
        for (let c: usize = 0; c < rowBytes; c += 16) {
          let a0 = f32x4.splat(0);
          let a1 = f32x4.splat(0);
          let a2 = f32x4.splat(0);
          let a3 = f32x4.splat(0);
          for (let j = j0; j < j1; j++) {
            const vj = v128.load(vh + <usize>j * stride + c);
            const jb = <usize>j << 2;
            a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(p0 + jb)), vj));
            a1 = f32x4.add(a1, f32x4.mul(f32x4.splat(load<f32>(p1 + jb)), vj));
            a2 = f32x4.add(a2, f32x4.mul(f32x4.splat(load<f32>(p2 + jb)), vj));
            a3 = f32x4.add(a3, f32x4.mul(f32x4.splat(load<f32>(p3 + jb)), vj));
          }
          const o0 = o + row0 * rowBytes + c;
          v128.store(o0, f32x4.add(v128.load(o0), a0));
          v128.store(o0 + rowBytes, f32x4.add(v128.load(o0 + rowBytes), a1));
          v128.store(o0 + 2 * rowBytes, f32x4.add(v128.load(o0 + 2 * rowBytes), a2));
          v128.store(o0 + 3 * rowBytes, f32x4.add(v128.load(o0 + 3 * rowBytes), a3));
        }
      }
    }
  }
}

/** First free byte after the module's static data: the arena's header goes there. */
export function heapBase(): usize {
  return __heap_base;
}

/**
 * Σ of `bytes` bytes of f32 from p (a multiple of 64): one streaming read, four accumulators. The
 * decode bench's floor (the time to read a KV cache once), measured with the same module.
 */
export function streamSum(p: usize, bytes: usize): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  for (let e: usize = p; e < p + bytes; e += 64) {
    a0 = f32x4.add(a0, v128.load(e));
    a1 = f32x4.add(a1, v128.load(e + 16));
    a2 = f32x4.add(a2, v128.load(e + 32));
    a3 = f32x4.add(a3, v128.load(e + 48));
  }
  return hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
}
