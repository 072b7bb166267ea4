import type { LogSumExpAttrs } from '@qkv/core';
import { rowMax } from './softmax.js';

/**
 * lse[r] = log Σ_j exp(s[r, j]) for rows [from, to) of masked scores [rows, cols], computed as
 * max + log Σ exp(s − max) (the max keeps exp from overflowing), in float64. A row that is all −∞
 * (a query that sees no key) gives −∞; NaN in a row gives NaN, as softmax does.
 * With it, softmax(s)[r, j] = exp(s[r, j] − lse[r]).
 */
export function logSumExp(s: Float32Array, out: Float32Array, attrs: LogSumExpAttrs, from = 0, to = attrs.rows): void {
  const n = attrs.cols;
  for (let r = from; r < to; r++) {
    const off = r * n;
    const max = rowMax(s, off, n);
    if (max !== max || max === Number.NEGATIVE_INFINITY) {
      out[r] = max;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) sum += Math.exp((s[off + j] as number) - max);
    out[r] = max + Math.log(sum);
  }
}
