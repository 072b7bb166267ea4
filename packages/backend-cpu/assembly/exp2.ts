// The one base-2 exponential of the flash kernel (attention.ts) and the decode kernel (decode.ts).
import { madd } from './madd';

// 2^x for f32x4, x ≤ 0: 2^x = 2^n · 2^f with n = round(x), f = x − n ∈ [−½, ½], and 2^f from its
// degree-6 Taylor polynomial (truncation error (½·ln 2)^7 / 7! ≈ 1.2e-7, about one float32 ulp).
// The attention kernel works in base 2 throughout (scale·log₂e folded into Q, as FlashAttention
// does), so there is no x·log₂e multiply and no Cody–Waite reduction here. Anything below −126
// (including −∞, a masked key) gives exactly 0, and NaN stays NaN, so a NaN score poisons its row
// as it does in the reference.
// n comes from the 1.5·2²³ trick: adding it rounds x to an integer held in the low mantissa bits,
// so 2^n is one integer add and shift of those bits. That replaces f32x4.nearest,
// i32x4.trunc_sat_f32x4_s (a long saturating sequence on x64) and NaN-exact f32x4.max/min
// sequences by pmax (one instruction). Measured at L = 1024, h = 12: the exp went from ≈ 23 ms
// (Cephes expf with those instructions) to ≈ 10 ms of a 120 ms kernel.
const EXP_MAGIC: f32 = 12582912.0; // 1.5 · 2^23
const EXP2_LO: f32 = -126.0;
// @ts-ignore: decorator
@inline
export function exp2NonPositive(x: v128): v128 {
  const lo = f32x4.splat(EXP2_LO);
  // pmax keeps a NaN x (the comparison x < lo is false), unlike a clamp through f32x4.max.
  const xc = f32x4.pmax(x, lo);
  const magic = f32x4.splat(EXP_MAGIC);
  const t = f32x4.add(xc, magic);
  const f = f32x4.sub(xc, f32x4.sub(t, magic));
  let y = f32x4.splat(1.5403530393381606e-4); // ln2^6 / 6!
  y = madd(y, f, f32x4.splat(1.3333558146428443e-3)); // ln2^5 / 5!
  y = madd(y, f, f32x4.splat(9.618129107628477e-3)); // ln2^4 / 4!
  y = madd(y, f, f32x4.splat(5.550410866482158e-2)); // ln2^3 / 3!
  y = madd(y, f, f32x4.splat(2.402265069591007e-1)); // ln2^2 / 2!
  y = madd(y, f, f32x4.splat(6.931471805599453e-1)); // ln2
  y = madd(y, f, f32x4.splat(1));
  // t's bits are bits(magic) + n; shifting (bits + 127) left by 23 drops the magic's bits (all at
  // 2^9 and above) and leaves 2^n's exponent field: n ∈ [−126, 0] here, so 2^n is normal.
  const pow2n = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  y = f32x4.mul(y, pow2n);
  return v128.andnot(y, f32x4.lt(x, lo));
}
