// The few-row kernels of `gemm` (its last M mod 4 rows: a decode step's projections, 1–3 rows):
// C rows = A rows · B + bias over the packed panels of packPanels ([ceil(N/8)][K][8]).
//
// Each reads W once. The one-row kernel keeps one pointer per panel (no `pp + j·panelB`
// recomputed per load) and unrolls k by two, so an iteration reads 64 contiguous bytes (one
// cache line) of each of its four panels. The sum over k of every output stays in order
// k = 0, 1, …, K−1 (the unroll only merges loop iterations): the results are those of one
// multiply-add chain per output, as in micro4x8, bit-identical to the kernel before the unroll.
import { madd } from './madd';

/** v + bias[col … col+3] when there is a bias. */
// @ts-ignore: decorator
@inline
function plusBias(v: v128, bias: usize, col: i32): v128 {
  return bias ? f32x4.add(v, v128.load(bias + (<usize>col << 2))) : v;
}

/**
 * One row of C [Np] = a [K] · B + bias: four panels at a time (eight accumulators, as many
 * independent FMA chains as the 4 × 8 tile, four streams K·32 bytes apart), then any last
 * panels one at a time.
 */
export function gemmRows1(a: usize, K: i32, bp: usize, panels: i32, bias: usize, c: usize): void {
  const panelB = <usize>K << 5;
  const end = a + (<usize>K << 2);
  const end2 = a + (<usize>(K & ~1) << 2);
  let p = 0;
  for (; p + 4 <= panels; p += 4) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
    let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
    let p0 = bp + <usize>p * panelB;
    let p1 = p0 + panelB;
    let p2 = p1 + panelB;
    let p3 = p2 + panelB;
    let a0 = a;
    for (; a0 < end2; a0 += 8, p0 += 64, p1 += 64, p2 += 64, p3 += 64) {
      let s = v128.load32_splat(a0);
      c00 = madd(s, v128.load(p0), c00);
      c01 = madd(s, v128.load(p0, 16), c01);
      c10 = madd(s, v128.load(p1), c10);
      c11 = madd(s, v128.load(p1, 16), c11);
      c20 = madd(s, v128.load(p2), c20);
      c21 = madd(s, v128.load(p2, 16), c21);
      c30 = madd(s, v128.load(p3), c30);
      c31 = madd(s, v128.load(p3, 16), c31);
      s = v128.load32_splat(a0, 4);
      c00 = madd(s, v128.load(p0, 32), c00);
      c01 = madd(s, v128.load(p0, 48), c01);
      c10 = madd(s, v128.load(p1, 32), c10);
      c11 = madd(s, v128.load(p1, 48), c11);
      c20 = madd(s, v128.load(p2, 32), c20);
      c21 = madd(s, v128.load(p2, 48), c21);
      c30 = madd(s, v128.load(p3, 32), c30);
      c31 = madd(s, v128.load(p3, 48), c31);
    }
    if (a0 < end) {
      // Odd K: the last k.
      const s = v128.load32_splat(a0);
      c00 = madd(s, v128.load(p0), c00);
      c01 = madd(s, v128.load(p0, 16), c01);
      c10 = madd(s, v128.load(p1), c10);
      c11 = madd(s, v128.load(p1, 16), c11);
      c20 = madd(s, v128.load(p2), c20);
      c21 = madd(s, v128.load(p2, 16), c21);
      c30 = madd(s, v128.load(p3), c30);
      c31 = madd(s, v128.load(p3, 16), c31);
    }
    const col = p << 3;
    const out = c + (<usize>col << 2);
    v128.store(out, plusBias(c00, bias, col));
    v128.store(out, plusBias(c01, bias, col + 4), 16);
    v128.store(out, plusBias(c10, bias, col + 8), 32);
    v128.store(out, plusBias(c11, bias, col + 12), 48);
    v128.store(out, plusBias(c20, bias, col + 16), 64);
    v128.store(out, plusBias(c21, bias, col + 20), 80);
    v128.store(out, plusBias(c30, bias, col + 24), 96);
    v128.store(out, plusBias(c31, bias, col + 28), 112);
  }
  for (; p < panels; p++) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
    let pp = bp + <usize>p * panelB;
    for (let a0 = a; a0 < end; a0 += 4, pp += 32) {
      const s = v128.load32_splat(a0);
      c00 = madd(s, v128.load(pp), c00);
      c01 = madd(s, v128.load(pp, 16), c01);
    }
    const col = p << 3;
    v128.store(c + (<usize>col << 2), plusBias(c00, bias, col));
    v128.store(c + (<usize>col << 2), plusBias(c01, bias, col + 4), 16);
  }
}

/** Two rows of C (ldc floats apart): two panels at a time (eight accumulators), then the last one. */
export function gemmRows2(a: usize, K: i32, bp: usize, panels: i32, bias: usize, c: usize, ldc: i32): void {
  const panelB = <usize>K << 5;
  const ldaB = <usize>K << 2;
  const ldcB = <usize>ldc << 2;
  const end = a + ldaB;
  let p = 0;
  for (; p + 2 <= panels; p += 2) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
    let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
    let pp = bp + <usize>p * panelB;
    for (let a0 = a; a0 < end; a0 += 4, pp += 32) {
      const b0 = v128.load(pp);
      const b1 = v128.load(pp, 16);
      const b2 = v128.load(pp + panelB);
      const b3 = v128.load(pp + panelB, 16);
      let s = v128.load32_splat(a0);
      c00 = madd(s, b0, c00);
      c01 = madd(s, b1, c01);
      c02 = madd(s, b2, c02);
      c03 = madd(s, b3, c03);
      s = v128.load32_splat(a0 + ldaB);
      c10 = madd(s, b0, c10);
      c11 = madd(s, b1, c11);
      c12 = madd(s, b2, c12);
      c13 = madd(s, b3, c13);
    }
    const col = p << 3;
    const out = c + (<usize>col << 2);
    v128.store(out, plusBias(c00, bias, col));
    v128.store(out, plusBias(c01, bias, col + 4), 16);
    v128.store(out, plusBias(c02, bias, col + 8), 32);
    v128.store(out, plusBias(c03, bias, col + 12), 48);
    v128.store(out + ldcB, plusBias(c10, bias, col));
    v128.store(out + ldcB, plusBias(c11, bias, col + 4), 16);
    v128.store(out + ldcB, plusBias(c12, bias, col + 8), 32);
    v128.store(out + ldcB, plusBias(c13, bias, col + 12), 48);
  }
  if (p < panels) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
    let pp = bp + <usize>p * panelB;
    for (let a0 = a; a0 < end; a0 += 4, pp += 32) {
      const b0 = v128.load(pp);
      const b1 = v128.load(pp, 16);
      let s = v128.load32_splat(a0);
      c00 = madd(s, b0, c00);
      c01 = madd(s, b1, c01);
      s = v128.load32_splat(a0 + ldaB);
      c10 = madd(s, b0, c10);
      c11 = madd(s, b1, c11);
    }
    const col = p << 3;
    const out = c + (<usize>col << 2);
    v128.store(out, plusBias(c00, bias, col));
    v128.store(out, plusBias(c01, bias, col + 4), 16);
    v128.store(out + ldcB, plusBias(c10, bias, col));
    v128.store(out + ldcB, plusBias(c11, bias, col + 4), 16);
  }
}

/**
 * Three rows of C (ldc floats apart), one panel at a time (six accumulators: three rows × two
 * f32x4, plus the panel's two vectors and a broadcast, in registers), so W is read once for all
 * three rows instead of once by gemmRows2 and again by gemmRows1.
 */
export function gemmRows3(a: usize, K: i32, bp: usize, panels: i32, bias: usize, c: usize, ldc: i32): void {
  const panelB = <usize>K << 5;
  const ldaB = <usize>K << 2;
  const ldcB = <usize>ldc << 2;
  const end = a + ldaB;
  for (let p = 0; p < panels; p++) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
    let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
    let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
    let pp = bp + <usize>p * panelB;
    for (let a0 = a; a0 < end; a0 += 4, pp += 32) {
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
    }
    const col = p << 3;
    const out = c + (<usize>col << 2);
    v128.store(out, plusBias(c00, bias, col));
    v128.store(out, plusBias(c01, bias, col + 4), 16);
    v128.store(out + ldcB, plusBias(c10, bias, col));
    v128.store(out + ldcB, plusBias(c11, bias, col + 4), 16);
    v128.store(out + 2 * ldcB, plusBias(c20, bias, col));
    v128.store(out + 2 * ldcB, plusBias(c21, bias, col + 4), 16);
  }
}
