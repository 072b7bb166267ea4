import type { LogSumExpAttrs } from '@qkv/core';
import { rowMax, rowSink } from './softmax.js';

/**
 * lse[r] = log(Σ_j exp(s[r, j]) + exp(sink_h)) for rows [from, to) of masked scores [rows, cols]
 * (the sink term only with attrs.sinks), computed as max + log Σ exp(s − max) with the sink in
 * the max (which keeps exp from overflowing), in float64: the log of softmax's denominator, so
 * softmax(s)[r, j] = exp(s[r, j] − lse[r]). A row that is all −∞ (a query that sees no key)
 * gives −∞, or sink_h with sinks (the sink alone is then the denominator); NaN in a row gives
 * NaN, as softmax does.
 */
export function logSumExp(s: Float32Array, out: Float32Array, attrs: LogSumExpAttrs, from = 0, to = attrs.rows): void {
  const n = attrs.cols;
  for (let r = from; r < to; r++) {
    const off = r * n;
    const keysMax = rowMax(s, off, n);
    const sink = rowSink(attrs, r);
    if (keysMax !== keysMax || (keysMax === Number.NEGATIVE_INFINITY && sink === null)) {
      out[r] = keysMax;
      continue;
    }
    const max = sink === null ? keysMax : Math.max(keysMax, sink);
    let sum = sink === null ? 0 : Math.exp(sink - max);
    for (let j = 0; j < n; j++) sum += Math.exp((s[off + j] as number) - max);
    out[r] = max + Math.log(sum);
  }
}
