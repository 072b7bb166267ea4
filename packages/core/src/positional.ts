import type { RotaryAttrs } from './ops.js';
import type { Tensor } from './tensor.js';

/**
 * The seed's "E + Positional Encoding", in the original Transformer's sinusoidal form:
 *   PE[pos, 2i]   = sin(pos / 10000^(2i/dModel))
 *   PE[pos, 2i+1] = cos(pos / 10000^(2i/dModel))
 * Computed in float64 and rounded once, so every backend starts from identical PE values.
 * `offset` shifts the positions (a KV-cache session continues where it left off).
 *
 * Returns [length, dModel].
 */
export function sinusoidalPositionalEncoding(length: number, dModel: number, offset = 0): Tensor {
  const data = new Float32Array(length * dModel);
  for (let p = 0; p < length; p++) {
    const pos = p + offset;
    const row = p * dModel;
    for (let c = 0; c < dModel; c += 2) {
      // The pair (2i, 2i+1) shares one frequency; c is 2i.
      const angle = pos / 10000 ** (c / dModel);
      data[row + c] = Math.sin(angle);
      if (c + 1 < dModel) data[row + c + 1] = Math.cos(angle);
    }
  }
  return { shape: [length, dModel], data };
}

/**
 * ALiBi slopes (Press et al. 2021, "Train Short, Test Long"), one per query head h = 0 … H−1:
 *   H a power of two:  m_h = 2^(−8(h+1)/H)  (a geometric sequence starting at 2^(−8/H))
 *   otherwise:         the slopes for the largest power of two n < H, followed by every other
 *                      slope of the 2n sequence (indices 0, 2, 4, …) until there are H
 *                      (the paper's reference code, `get_slopes`).
 * Core computes them once so every backend biases with identical values.
 */
export function alibiSlopes(numHeads: number): number[] {
  const pow2 = (n: number) => Array.from({ length: n }, (_, h) => 2 ** ((-8 * (h + 1)) / n));
  const n = 2 ** Math.floor(Math.log2(numHeads));
  if (n === numHeads) return pow2(n);
  const extra = pow2(2 * n).filter((_, i) => i % 2 === 0);
  return [...pow2(n), ...extra.slice(0, numHeads - n)];
}

/**
 * RoPE's cos/sin tables [L, hd/2] of (offset + l)·base^(−2c/hd), or [B·L, hd/2] of
 * positions[b·L + l]·base^(−2c/hd) with `positionIds`, computed in float64 and rounded once: GPU
 * backends upload them (f32 sin/cos of long positions lose digits), the cpu kernel computes the
 * same angles per row.
 */
export function rotaryTables(attrs: Pick<RotaryAttrs, 'length' | 'headDim' | 'offset' | 'base' | 'positions'>): {
  cos: Float32Array;
  sin: Float32Array;
} {
  const { length: L, headDim: hd, offset, base, positions } = attrs;
  const half = hd / 2;
  const rows = positions ? positions.length : L;
  const cos = new Float32Array(rows * half);
  const sin = new Float32Array(rows * half);
  for (let l = 0; l < rows; l++) {
    const at = positions ? (positions[l] as number) : offset + l;
    for (let c = 0; c < half; c++) {
      const angle = at * base ** ((-2 * c) / hd);
      cos[l * half + c] = Math.cos(angle);
      sin[l * half + c] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
