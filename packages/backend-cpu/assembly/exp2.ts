// The one base-2 exponential of the flash kernel (attention.ts) and the decode kernel (decode.ts).
import { madd } from './madd';

// 2^x for f32x4, x ≤ 0: 2^x = 2^n · 2^f with n = round(x), f = x − n ∈ [−½, ½], and 2^f from a
// degree-5 polynomial fitted to minimise the relative error on [−½, ½] with p(0) = 1 exactly
// (the row max gives p = 1): max relative error 9.1e-8 in exact arithmetic, 1.5e-7 (FMA) and
// 1.9e-7 (mul + add) in float32 over x ∈ [−125, 0], about one float32 ulp.
// The attention kernel works in base 2 throughout (scale·log₂e folded into Q, as FlashAttention
// does), so there is no x·log₂e multiply and no Cody–Waite reduction here.
// n comes from the 1.5·2²³ trick: adding it rounds x to an integer held in the low mantissa bits,
// so 2^n is one integer add and shift of those bits. That replaces f32x4.nearest,
// i32x4.trunc_sat_f32x4_s (a long saturating sequence on x64) and NaN-exact f32x4.max/min
// sequences by pmax (one instruction).
// x is clamped to −127 (pmax keeps a NaN x: the comparison x < lo is false), where n = −127 puts
// 0 in 2^n's exponent field: 2^n is +0, so anything below −126.5 (including −∞, a masked key)
// gives exactly 0 without a compare and a select, and NaN stays NaN (NaN · 0 is NaN), so a NaN
// score poisons its row as it does in the reference.
const EXP_MAGIC: f32 = 12582912.0; // 1.5 · 2^23
const EXP2_LO: f32 = -127.0;
// @ts-ignore: decorator
@inline
export function exp2NonPositive(x: v128): v128 {
  const xc = f32x4.pmax(x, f32x4.splat(EXP2_LO));
  const magic = f32x4.splat(EXP_MAGIC);
  const t = f32x4.add(xc, magic);
  const f = f32x4.sub(xc, f32x4.sub(t, magic));
  let y = f32x4.splat(1.3264714349725303e-3);
  y = madd(y, f, f32x4.splat(9.671512638439458e-3));
  y = madd(y, f, f32x4.splat(5.550733773787876e-2));
  y = madd(y, f, f32x4.splat(2.402224208584356e-1));
  y = madd(y, f, f32x4.splat(6.93146977587222e-1));
  y = madd(y, f, f32x4.splat(1));
  // t's bits are bits(magic) + n; shifting (bits + 127) left by 23 drops the magic's bits (all at
  // 2^9 and above) and leaves 2^n's exponent field: n ∈ [−127, 0], 2^n normal or (n = −127) +0.
  const pow2n = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return f32x4.mul(y, pow2n);
}
