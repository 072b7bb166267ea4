// The multiply-add of every kernel: the one instruction the two builds differ in.

/**
 * c + a·b per lane. The relaxed-SIMD build (ASC_FEATURE_RELAXED_SIMD, a compile-time constant:
 * the other branch is not emitted) uses the fused multiply-add, one instruction and one rounding;
 * the SIMD128 build a separate mul and add. The results differ by rounding only.
 */
// @ts-ignore: decorator
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}
