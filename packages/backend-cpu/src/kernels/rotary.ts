import type { RotaryAttrs } from '@qkv/core';

/**
 * RoPE (Su et al. 2021, "RoFormer"), rows r = (b, l) in [from, to) of x [B, L, heads·hd]:
 * position p = offset + l (or positions[r] with positionIds) rotates each channel pair (x1, x2) of every head by p·θ_c,
 *   x1' = x1·cos(p·θ_c) − x2·sin(p·θ_c)
 *   x2' = x2·cos(p·θ_c) + x1·sin(p·θ_c),       θ_c = base^(−2c/hd), c = 0 … hd/2 − 1
 * 'half' pairs channel c with c + hd/2 (rotate_half: Llama, GPT-NeoX); 'interleaved' pairs 2c
 * with 2c + 1 (GPT-J). Angles in float64, each output rounded once.
 */
export function rotary(
  x: Float32Array,
  out: Float32Array,
  attrs: RotaryAttrs,
  from = 0,
  to = attrs.batch * attrs.length,
): void {
  const { length: L, heads, headDim: hd, offset, base, pairing, positions } = attrs;
  const half = hd / 2;
  const width = heads * hd;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let r = from; r < to; r++) {
    const p = positions ? (positions[r] as number) : offset + (r % L);
    for (let c = 0; c < half; c++) {
      const angle = p * base ** ((-2 * c) / hd);
      cos[c] = Math.cos(angle);
      sin[c] = Math.sin(angle);
    }
    for (let h = 0; h < heads; h++) {
      const o = r * width + h * hd;
      for (let c = 0; c < half; c++) {
        // The two channels that rotate together.
        const i1 = pairing === 'half' ? o + c : o + 2 * c;
        const i2 = pairing === 'half' ? o + c + half : o + 2 * c + 1;
        const x1 = x[i1] as number;
        const x2 = x[i2] as number;
        out[i1] = x1 * (cos[c] as number) - x2 * (sin[c] as number);
        out[i2] = x2 * (cos[c] as number) + x1 * (sin[c] as number);
      }
    }
  }
}
