import type { LinearAttrs } from '@qkv/core';

/**
 * out[r, :] = x[r, :] · w + bias for rows r in [from, to).
 * x [rows, in], w [in, out] (row-vector weights), bias [out] | null → out [rows, out].
 *
 * Loop order r → i → o: the inner loop walks a row of w and a row of out contiguously, so it
 * streams memory instead of striding down w's columns. Each row accumulates in float64 and is
 * rounded once, which keeps long dot products (in = 768…) well inside float32 tolerance.
 */
export function linear(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  out: Float32Array,
  attrs: LinearAttrs,
  from = 0,
  to = attrs.rows,
): void {
  const { inFeatures: nIn, outFeatures: nOut } = attrs;
  const acc = new Float64Array(nOut);
  for (let r = from; r < to; r++) {
    if (bias) for (let o = 0; o < nOut; o++) acc[o] = bias[o] as number;
    else acc.fill(0);
    const xRow = r * nIn;
    for (let i = 0; i < nIn; i++) {
      const xv = x[xRow + i] as number;
      if (xv === 0) continue;
      const wRow = i * nOut;
      for (let o = 0; o < nOut; o++) acc[o] = (acc[o] as number) + xv * (w[wRow + o] as number);
    }
    const outRow = r * nOut;
    for (let o = 0; o < nOut; o++) out[outRow + o] = acc[o] as number;
  }
}
