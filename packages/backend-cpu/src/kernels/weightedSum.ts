import type { WeightedSumAttrs } from '@qkv/core';
import { rowsOf } from './scores.js';

/**
 * ΔE per head, one row per (b, h, i) in [from, to):
 *   heads[b, i, h, :] = Σ_j weights[b, h, i, j] · v[b, j, kvh·hd : (kvh+1)·hd]
 * weights [B, H, Lq, Lk], v [B, Lk, KVH·hd] → heads [B, Lq, H·hd] (concat(heads): head h is columns h·hd … h·hd+hd−1).
 * Zero weights (masked keys, the causal future) are skipped, so causal rows do half the work.
 */
export function weightedSum(
  weights: Float32Array,
  v: Float32Array,
  out: Float32Array,
  attrs: WeightedSumAttrs,
  from = 0,
  to = rowsOf(attrs),
): void {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
  // A KV cache [B, maxLength, KVH·hd] holds Lk valid rows per batch at stride keyCapacity.
  const cap = attrs.keyCapacity ?? Lk;
  const group = H / KVH;
  const vStride = KVH * hd;
  const acc = new Float64Array(hd);
  for (let row = from; row < to; row++) {
    const i = row % Lq;
    const bh = (row - i) / Lq;
    const h = bh % H;
    const b = (bh - h) / H;
    const vBase = b * cap * vStride + Math.floor(h / group) * hd;
    const wOff = row * Lk;
    acc.fill(0);
    for (let j = 0; j < Lk; j++) {
      const wj = weights[wOff + j] as number;
      if (wj === 0) continue;
      const vOff = vBase + j * vStride;
      for (let c = 0; c < hd; c++) acc[c] = (acc[c] as number) + wj * (v[vOff + c] as number);
    }
    const outOff = ((b * Lq + i) * H + h) * hd;
    for (let c = 0; c < hd; c++) out[outOff + c] = acc[c] as number;
  }
}
