// Packing, the 4 × 8 micro-kernel and the matrix multiply (C = A · B + bias) of `linear`.
import { gemmRows1, gemmRows2, gemmRows3 } from './gemv';
import { madd } from './madd';

/**
 * Packs B [K, N] (row stride ldb floats) into 8-column panels: panel p holds B[:, 8p … 8p+7] as
 * [K][8], zero-padded past N. out: [ceil(N/8)][K][8]. The micro-kernel then reads B as one
 * contiguous stream per panel (no strided access, no 4 KiB set aliasing on power-of-two widths).
 */
export function packPanels(b: usize, K: i32, N: i32, ldb: i32, out: usize): void {
  const panels = (N + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const col0 = p << 3;
    const full = col0 + 8 <= N;
    for (let k = 0; k < K; k++) {
      const src = b + ((<usize>k * ldb + col0) << 2);
      const dst = out + ((<usize>(p * K + k)) << 5);
      if (full) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
      } else {
        for (let t = 0; t < 8; t++) store<f32>(dst + (t << 2), col0 + t < N ? load<f32>(src + (t << 2)) : 0);
      }
    }
  }
}

/**
 * Packs the transpose of a [rows, cols] block (row stride ld floats) into 8-column panels of
 * Bᵀ: used for Kᵀ so that scores = Q · Kᵀ runs on the same micro-kernel. Rows past `rows` (up to
 * rowsPadded, a multiple of 8) and columns past `cols` (up to colsPadded) are zero.
 * out: [rowsPadded/8][colsPadded][8].
 */
export function packTransposed(src: usize, rows: i32, cols: i32, ld: i32, rowsPadded: i32, colsPadded: i32, out: usize): void {
  const panels = rowsPadded >> 3;
  for (let p = 0; p < panels; p++) {
    for (let c = 0; c < colsPadded; c++) {
      const dst = out + ((<usize>(p * colsPadded + c)) << 5);
      for (let t = 0; t < 8; t++) {
        const r = (p << 3) + t;
        store<f32>(dst + (t << 2), r < rows && c < cols ? load<f32>(src + ((<usize>r * ld + c) << 2)) : 0);
      }
    }
  }
}

/**
 * C[4, 8] (+)= A[4, K] · P[K, 8]: A rows at a, a + lda·4, …; P a packed panel; C rows ldc apart.
 * `accumulate` adds onto C (flash attention's running output), else overwrites it. rowMax (four
 * f32x4, one per row, or 0) takes the lane-wise max of each row of the tile (flash attention's
 * pass 1): the tile is in registers here, so the row max costs no second read of C.
 */
// @ts-ignore: decorator
@inline
export function micro4x8(a: usize, lda: usize, p: usize, K: i32, c: usize, ldc: usize, accumulate: bool, rowMax: usize = 0): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const ldaB = lda << 2;
  let a0 = a;
  const end = a + (<usize>K << 2);
  let pp = p;
  for (; a0 < end; a0 += 4, pp += 32) {
    const b0 = v128.load(pp);
    const b1 = v128.load(pp, 16);
    let s = v128.load32_splat(a0);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(a0 + ldaB);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(a0 + 2 * ldaB);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(a0 + 3 * ldaB);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
  }
  const ldcB = ldc << 2;
  if (accumulate) {
    c00 = f32x4.add(c00, v128.load(c));
    c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + ldcB));
    c11 = f32x4.add(c11, v128.load(c + ldcB, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * ldcB));
    c21 = f32x4.add(c21, v128.load(c + 2 * ldcB, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * ldcB));
    c31 = f32x4.add(c31, v128.load(c + 3 * ldcB, 16));
  }
  if (rowMax) {
    // pmax skips NaN in its second operand: the running max stays a number, as in pass 2.
    v128.store(rowMax, f32x4.pmax(v128.load(rowMax), f32x4.pmax(c00, c01)));
    v128.store(rowMax, f32x4.pmax(v128.load(rowMax, 16), f32x4.pmax(c10, c11)), 16);
    v128.store(rowMax, f32x4.pmax(v128.load(rowMax, 32), f32x4.pmax(c20, c21)), 32);
    v128.store(rowMax, f32x4.pmax(v128.load(rowMax, 48), f32x4.pmax(c30, c31)), 48);
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + ldcB, c10);
  v128.store(c + ldcB, c11, 16);
  v128.store(c + 2 * ldcB, c20);
  v128.store(c + 2 * ldcB, c21, 16);
  v128.store(c + 3 * ldcB, c30);
  v128.store(c + 3 * ldcB, c31, 16);
}

/** Rows of A per cache block: this many rows of A (≤ 64 × K floats) stay in L2 while one 8-wide
 * panel of B (K × 8 floats, 24 KiB at K = 768) stays in L1 across all of them. */
const GEMM_ROW_BLOCK = 64;

/**
 * C[M, Np] = A[M, K] · B + bias, B given as packed panels (packPanels) of Np = ceil(N/8)·8
 * columns; any M ≥ 0. bias: [Np] or 0.
 * Loop nest for the row quads: row block (64) → panel (8 columns) → row quad (4) → k. The last
 * M mod 4 rows go to the few-row kernels (gemv.ts: gemmRows3, 2 or 1), which hold more
 * panels per row instead of more rows per panel: a decode step's projection (1–3 rows) reads W
 * once, at the FMA rate, instead of computing three zero rows for each real one.
 */
export function gemm(a: usize, M: i32, K: i32, bp: usize, Np: i32, bias: usize, c: usize): void {
  const panels = Np >> 3;
  const M4 = M & ~3;
  for (let i0 = 0; i0 < M4; i0 += GEMM_ROW_BLOCK) {
    const i1 = min(M4, i0 + GEMM_ROW_BLOCK);
    for (let p = 0; p < panels; p++) {
      const panel = bp + ((<usize>p * K) << 5);
      for (let i = i0; i < i1; i += 4) {
        const cTile = c + ((<usize>i * Np + (p << 3)) << 2);
        if (bias) {
          // Seed the tile with the bias so the micro-kernel's accumulate adds it once.
          const b0 = v128.load(bias + (<usize>p << 5));
          const b1 = v128.load(bias + (<usize>p << 5), 16);
          for (let r = 0; r < 4; r++) {
            const row = cTile + ((<usize>r * Np) << 2);
            v128.store(row, b0);
            v128.store(row, b1, 16);
          }
        }
        micro4x8(a + ((<usize>i * K) << 2), K, panel, K, cTile, Np, bias != 0);
      }
    }
  }
  const aTail = a + ((<usize>M4 * K) << 2);
  const cTail = c + ((<usize>M4 * Np) << 2);
  const tail = M - M4;
  if (tail == 3) gemmRows3(aTail, K, bp, panels, bias, cTail, Np);
  else if (tail == 2) gemmRows2(aTail, K, bp, panels, bias, cTail, Np);
  else if (tail == 1) gemmRows1(aTail, K, bp, panels, bias, cTail);
}
