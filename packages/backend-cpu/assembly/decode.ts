// The decode kernel of @qkv/backend-cpu (token-by-token generation: a few query rows against a
// long KV cache), compiled by scripts/build-wasm.mjs into its own module with an imported, shared
// memory: the session's K/V caches live in that memory (src/fast/arena.ts), so the kernel reads
// them where writeRows appended them, with no copy or repacking per step.
//
// Dimension names as in @qkv/core: Lq / Lk query / key lengths, hd head width, nq the query rows
// of one KV head in a step (its group's heads × Lq), n the keys of the range a call covers.
// Pointers are byte addresses in the shared memory; matrices are row-major f32.
//
// A step reads every cached key once, so the kernel runs at the speed the cache streams in only
// if it spends few instructions per byte and keeps the hardware prefetchers streaming. Passes 1
// and 4 therefore take keys as quads, i, i + Q, i + 2Q, i + 3Q (Q = n4 / 4): four sequential
// streams through the range, each reading whole cache rows front to back, with register tiles
// that share every q (pass 1) or o (pass 4) load across the quad's four keys. Four adjacent keys
// instead (one stream hopping between rows 2 KB apart) ran 2.3× slower cold at d = 512, h = 8,
// despite the same instructions (bench/README.md › decode kernel). Where n is not a multiple of
// 4, a quad's missing keys read key n − 1 again (never past the range); their scores are −∞.
//
// Files: decode.ts (the entry, one row per head, passes 2–3), decode-rows.ts (passes 1 and 4
// for several rows per head), decode-quads.ts (the quads' helpers).

import { scoresRows, valuesRows } from './decode-rows';
import { keyAt, sum4 } from './decode-quads';
import { exp2NonPositive } from './exp2';
import { madd } from './madd';

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
 *   s     [heads·nqp, n4]  scratch scores, n4 = n rounded up to 4 (with one row per head in
 *                          quad order, position 4i + t holding key i + t·Q; else in key order)
 *   o     [heads·nqp, hd]  Σ_j 2^(s_j − m)·v_j;  m, l [heads·nqp]: row max (base 2, −∞ when
 *                          nothing is visible) and Σ_j 2^(s_j − m) (0 then, with o = 0)
 *
 * Pass 1 reads K by quads of keys, every head's channels against that head's query rows (a cache
 * row holds all heads side by side); pass 2 takes the row maxima; pass 3 turns scores into
 * 2^(s − m) and sums them; pass 4 reads V by quads for one row per head, and per head in blocks of
 * keys, four rows at a time, otherwise. hd must be a multiple of 4.
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
  const sRow = <usize>n4 << 2;
  if (nq === 1) scoresOneRow(q, heads, hd, k, stride, n, s, sRow);
  else scoresRows(q, nq, nqp, heads, hd, k, stride, n, s, sRow);
  softmaxRows(nq, nqp, heads, n4, count, s, sRow, m, l);
  if (nq === 1) valuesOneRow(heads, hd, v, stride, n, s, sRow, o);
  else valuesRows(nqp, heads, hd, v, stride, n, s, sRow, o);
}

/**
 * Pass 1, one row per head: s[h, 4i + t] = q_h · k_(i + t·Q, h). Two accumulators per key (eight
 * in all) share each pair of q loads; one transpose-add yields the quad's four scores, one store.
 */
// @ts-ignore: decorator
@inline
function scoresOneRow(q: usize, heads: i32, hd: i32, k: usize, stride: usize, n: i32, s: usize, sRow: usize): void {
  const rowBytes = <usize>hd << 2;
  const Q = ((n + 3) & ~3) >> 2;
  for (let i = 0; i < Q; i++) {
    const k0 = k + keyAt(i, 0, Q, n, stride);
    const k1 = k + keyAt(i, 1, Q, n, stride);
    const k2 = k + keyAt(i, 2, Q, n, stride);
    const k3 = k + keyAt(i, 3, Q, n, stride);
    for (let h = 0; h < heads; h++) {
      const off = <usize>h * rowBytes;
      const qh = q + off;
      const h0 = k0 + off;
      const h1 = k1 + off;
      const h2 = k2 + off;
      const h3 = k3 + off;
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0);
      let b1 = f32x4.splat(0);
      let b2 = f32x4.splat(0);
      let b3 = f32x4.splat(0);
      let c: usize = 0;
      for (; c + 32 <= rowBytes; c += 32) {
        const x = v128.load(qh + c);
        const y = v128.load(qh + c + 16);
        a0 = madd(x, v128.load(h0 + c), a0);
        b0 = madd(y, v128.load(h0 + c + 16), b0);
        a1 = madd(x, v128.load(h1 + c), a1);
        b1 = madd(y, v128.load(h1 + c + 16), b1);
        a2 = madd(x, v128.load(h2 + c), a2);
        b2 = madd(y, v128.load(h2 + c + 16), b2);
        a3 = madd(x, v128.load(h3 + c), a3);
        b3 = madd(y, v128.load(h3 + c + 16), b3);
      }
      if (c < rowBytes) {
        const x = v128.load(qh + c);
        a0 = madd(x, v128.load(h0 + c), a0);
        a1 = madd(x, v128.load(h1 + c), a1);
        a2 = madd(x, v128.load(h2 + c), a2);
        a3 = madd(x, v128.load(h3 + c), a3);
      }
      const scores = sum4(f32x4.add(a0, b0), f32x4.add(a1, b1), f32x4.add(a2, b2), f32x4.add(a3, b3));
      v128.store(s + <usize>h * sRow + (<usize>i << 4), scores);
    }
  }
}

/**
 * Passes 2 and 3, per row: hidden keys (past the row's count, and the pad to n4) are −∞;
 * padding rows get p = 0 (pass 4 reads them in its groups of four) and stay out of the rest.
 */
// @ts-ignore: decorator
@inline
function softmaxRows(nq: i32, nqp: i32, heads: i32, n4: i32, count: usize, s: usize, sRow: usize, m: usize, l: usize): void {
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
      if (nq === 1) {
        // Quad order (pass 1, one row): position 4i + t holds key i + t·Q, Q = n4 / 4.
        const Q = n4 >> 2;
        for (let t = 0; t < 4; t++) {
          for (let i = max(0, cnt - t * Q); i < Q; i++) store<f32>(row + (<usize>(4 * i + t) << 2), -Infinity);
        }
      } else {
        for (let j = cnt; j < n4; j++) store<f32>(row + (<usize>j << 2), -Infinity);
      }
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
}

/**
 * Pass 4, one row per head (multi-head attention, one token): o[h] += Σ_t p[h, 4i + t]·v_(i + t·Q, h)
 * per quad, so each o vector is loaded and stored once per four keys (o is heads·hd floats: it
 * stays in L1).
 */
// @ts-ignore: decorator
@inline
function valuesOneRow(heads: i32, hd: i32, v: usize, stride: usize, n: i32, s: usize, sRow: usize, o: usize): void {
  const rowBytes = <usize>hd << 2;
  memory.fill(o, 0, <usize>heads * rowBytes);
  const Q = ((n + 3) & ~3) >> 2;
  // Quads i < full have four real keys; past it, the keys ≥ n are skipped, not read again: a
  // p = 0 times an infinite v would put a NaN in o that the step does not have.
  const full = max(0, n - 3 * Q);
  for (let i = 0; i < full; i++) {
    const v0 = v + <usize>i * stride;
    const v1 = v + <usize>(i + Q) * stride;
    const v2 = v + <usize>(i + 2 * Q) * stride;
    const v3 = v + <usize>(i + 3 * Q) * stride;
    for (let h = 0; h < heads; h++) {
      const ph = s + <usize>h * sRow + (<usize>i << 4);
      const p0 = v128.load32_splat(ph);
      const p1 = v128.load32_splat(ph + 4);
      const p2 = v128.load32_splat(ph + 8);
      const p3 = v128.load32_splat(ph + 12);
      const off = <usize>h * rowBytes;
      const oh = o + off;
      for (let c: usize = 0; c < rowBytes; c += 16) {
        const vc = off + c;
        const a = madd(p1, v128.load(v1 + vc), f32x4.mul(p0, v128.load(v0 + vc)));
        const b = madd(p3, v128.load(v3 + vc), f32x4.mul(p2, v128.load(v2 + vc)));
        v128.store(oh + c, f32x4.add(v128.load(oh + c), f32x4.add(a, b)));
      }
    }
  }
  for (let i = full; i < Q; i++) {
    for (let t = 0; t < 4 && i + t * Q < n; t++) {
      const vj = v + <usize>(i + t * Q) * stride;
      for (let h = 0; h < heads; h++) {
        const p = v128.load32_splat(s + <usize>h * sRow + (<usize>(4 * i + t) << 2));
        const off = <usize>h * rowBytes;
        for (let c: usize = 0; c < rowBytes; c += 16) {
          v128.store(o + off + c, madd(p, v128.load(vj + off + c), v128.load(o + off + c)));
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
