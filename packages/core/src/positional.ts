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
