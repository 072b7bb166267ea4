// Passes 1 and 4 of the decode kernel (decode.ts) for several query rows per KV head (grouped
// query, or several step tokens): nq > 1, rows padded to nqp, a multiple of 4. Scores are in key
// order, s[h·nqp + r, j].

import { keyAt, storeQuad, sum4 } from './decode-quads';
import { madd } from './madd';

/** Keys per block of pass 4 (several rows): the block's V rows stay in L2 across channel groups. */
const KEY_BLOCK: i32 = 256;

/**
 * Pass 1, several rows per head: s[h·nqp + r, j] = q_(h, r) · k_(j, h), a tile of a key quad ×
 * 2 rows (eight accumulators: per four channels 4 k loads and 2 q loads feed 8 multiply-adds,
 * where a row at a time reloads each k). With nq odd, the last pair's second row is a padding
 * row, overwritten by pass 2.
 */
// @ts-ignore: decorator
@inline
export function scoresRows(
  q: usize,
  nq: i32,
  nqp: i32,
  heads: i32,
  hd: i32,
  k: usize,
  stride: usize,
  n: i32,
  s: usize,
  sRow: usize,
): void {
  const rowBytes = <usize>hd << 2;
  const Q = ((n + 3) & ~3) >> 2;
  for (let i = 0; i < Q; i++) {
    const k0 = k + keyAt(i, 0, Q, n, stride);
    const k1 = k + keyAt(i, 1, Q, n, stride);
    const k2 = k + keyAt(i, 2, Q, n, stride);
    const k3 = k + keyAt(i, 3, Q, n, stride);
    for (let h = 0; h < heads; h++) {
      const kOff = <usize>h * rowBytes;
      for (let r = 0; r < nq; r += 2) {
        const row = <usize>(h * nqp + r);
        const q0 = q + row * rowBytes;
        const q1 = q0 + rowBytes;
        let a0 = f32x4.splat(0);
        let a1 = f32x4.splat(0);
        let a2 = f32x4.splat(0);
        let a3 = f32x4.splat(0);
        let b0 = f32x4.splat(0);
        let b1 = f32x4.splat(0);
        let b2 = f32x4.splat(0);
        let b3 = f32x4.splat(0);
        for (let c: usize = 0; c < rowBytes; c += 16) {
          const x = v128.load(q0 + c);
          const y = v128.load(q1 + c);
          const kc = kOff + c;
          let t = v128.load(k0 + kc);
          a0 = madd(x, t, a0);
          b0 = madd(y, t, b0);
          t = v128.load(k1 + kc);
          a1 = madd(x, t, a1);
          b1 = madd(y, t, b1);
          t = v128.load(k2 + kc);
          a2 = madd(x, t, a2);
          b2 = madd(y, t, b2);
          t = v128.load(k3 + kc);
          a3 = madd(x, t, a3);
          b3 = madd(y, t, b3);
        }
        const sr = s + row * sRow;
        storeQuad(sr, i, Q, sum4(a0, a1, a2, a3));
        storeQuad(sr + sRow, i, Q, sum4(b0, b1, b2, b3));
      }
    }
  }
}

/**
 * Pass 4, several rows: per head, a tile of 4 rows × 8 channels (eight accumulators) per (key
 * block, channel pair); each key's four p are broadcast from memory and shared by two V loads.
 */
// @ts-ignore: decorator
@inline
export function valuesRows(nqp: i32, heads: i32, hd: i32, v: usize, stride: usize, n: i32, s: usize, sRow: usize, o: usize): void {
  const rowBytes = <usize>hd << 2;
  memory.fill(o, 0, <usize>(heads * nqp) * rowBytes);
  for (let j0 = 0; j0 < n; j0 += KEY_BLOCK) {
    const j1 = min(n, j0 + KEY_BLOCK);
    for (let h = 0; h < heads; h++) {
      const vh = v + <usize>h * rowBytes;
      for (let r0 = 0; r0 < nqp; r0 += 4) {
        const row0 = <usize>(h * nqp + r0);
        const p0 = s + row0 * sRow;
        const o0 = o + row0 * rowBytes;
        let c: usize = 0;
        for (; c + 32 <= rowBytes; c += 32) {
          let a0 = f32x4.splat(0);
          let a1 = f32x4.splat(0);
          let a2 = f32x4.splat(0);
          let a3 = f32x4.splat(0);
          let b0 = f32x4.splat(0);
          let b1 = f32x4.splat(0);
          let b2 = f32x4.splat(0);
          let b3 = f32x4.splat(0);
          for (let j = j0; j < j1; j++) {
            const vj = vh + <usize>j * stride + c;
            const x = v128.load(vj);
            const y = v128.load(vj + 16);
            const pj = p0 + (<usize>j << 2);
            let p = v128.load32_splat(pj);
            a0 = madd(p, x, a0);
            b0 = madd(p, y, b0);
            p = v128.load32_splat(pj + sRow);
            a1 = madd(p, x, a1);
            b1 = madd(p, y, b1);
            p = v128.load32_splat(pj + 2 * sRow);
            a2 = madd(p, x, a2);
            b2 = madd(p, y, b2);
            p = v128.load32_splat(pj + 3 * sRow);
            a3 = madd(p, x, a3);
            b3 = madd(p, y, b3);
          }
          addRows(o0 + c, rowBytes, a0, a1, a2, a3);
          addRows(o0 + c + 16, rowBytes, b0, b1, b2, b3);
        }
        // hd a multiple of 4, not of 8: the last four channels alone.
        if (c < rowBytes) {
          let a0 = f32x4.splat(0);
          let a1 = f32x4.splat(0);
          let a2 = f32x4.splat(0);
          let a3 = f32x4.splat(0);
          for (let j = j0; j < j1; j++) {
            const x = v128.load(vh + <usize>j * stride + c);
            const pj = p0 + (<usize>j << 2);
            a0 = madd(v128.load32_splat(pj), x, a0);
            a1 = madd(v128.load32_splat(pj + sRow), x, a1);
            a2 = madd(v128.load32_splat(pj + 2 * sRow), x, a2);
            a3 = madd(v128.load32_splat(pj + 3 * sRow), x, a3);
          }
          addRows(o0 + c, rowBytes, a0, a1, a2, a3);
        }
      }
    }
  }
}

/** o rows r … r+3 (rowBytes apart) at `at` += a0 … a3. */
// @ts-ignore: decorator
@inline
function addRows(at: usize, rowBytes: usize, a0: v128, a1: v128, a2: v128, a3: v128): void {
  v128.store(at, f32x4.add(v128.load(at), a0));
  v128.store(at + rowBytes, f32x4.add(v128.load(at + rowBytes), a1));
  v128.store(at + 2 * rowBytes, f32x4.add(v128.load(at + 2 * rowBytes), a2));
  v128.store(at + 3 * rowBytes, f32x4.add(v128.load(at + 3 * rowBytes), a3));
}
