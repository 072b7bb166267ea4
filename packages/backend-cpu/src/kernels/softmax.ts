import type { SoftmaxAttrs } from '@qkv/core';

/** Pass 1 of a row: its max (−∞ when all −∞), NaN when the row holds a NaN. Shared with logSumExp. */
export function rowMax(s: Float32Array, off: number, n: number): number {
  let max = Number.NEGATIVE_INFINITY;
  let nan = false;
  for (let j = 0; j < n; j++) {
    const v = s[off + j] as number;
    if (v > max) max = v;
    else if (v !== v) nan = true;
  }
  return nan ? Number.NaN : max;
}

/** Row r's sink logit (rows are (b·H + h)·Lq + i), or null without sinks. Shared with logSumExp. */
export function rowSink(attrs: SoftmaxAttrs, r: number): number | null {
  const sinks = attrs.sinks;
  if (sinks === undefined) return null;
  return sinks[Math.floor(r / (attrs.queryLength as number)) % sinks.length] as number;
}

/**
 * Row softmax over the last axis for rows [from, to).
 * Pass 1: the row max (subtracted only for numerical stability: exp never overflows).
 * Pass 2: exp(s − max) and their sum, in float64.
 * Pass 3: normalise.
 * A row that is entirely −∞ (a query that can see no key) yields zeros, not NaN. NaN anywhere in
 * a row propagates to the whole row, as in PyTorch.
 * With attrs.sinks (learned sink logits, gpt-oss) the head's sink joins the max and the sum of
 * passes 1–2 and carries no value, so the row sums to < 1; a row with no visible key stays zero.
 */
export function softmax(s: Float32Array, out: Float32Array, attrs: SoftmaxAttrs, from = 0, to = attrs.rows): void {
  const n = attrs.cols;
  for (let r = from; r < to; r++) {
    const off = r * n;
    let max = rowMax(s, off, n);
    if (max !== max) {
      out.fill(Number.NaN, off, off + n);
      continue;
    }
    if (max === Number.NEGATIVE_INFINITY) {
      out.fill(0, off, off + n);
      continue;
    }
    let sum = 0;
    const sink = rowSink(attrs, r);
    if (sink !== null) {
      if (sink > max) max = sink;
      sum = Math.exp(sink - max);
    }
    for (let j = 0; j < n; j++) {
      const e = Math.exp((s[off + j] as number) - max);
      out[off + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < n; j++) out[off + j] = (out[off + j] as number) * inv;
  }
}
