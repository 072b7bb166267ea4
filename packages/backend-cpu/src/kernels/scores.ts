import type { ScoresAttrs } from '@qkv/core';

/**
 * Raw scores, one row per (b, h, i) in [from, to) of the B·H·Lq rows:
 *   out[b, h, i, j] = Σ_c q[b, i, h·hd + c] · k[b, j, kvh·hd + c],  kvh = floor(h / (H / KVH))
 * q [B, Lq, H·hd], k [B, Lk, KVH·hd] (or a cache [B, keyCapacity, KVH·hd]) → out [B, H, Lq, Lk].
 * Consecutive query heads share a KV head (grouped-query; KVH = 1 is multi-query).
 */
export function scores(
  q: Float32Array,
  k: Float32Array,
  out: Float32Array,
  attrs: ScoresAttrs,
  from = 0,
  to = rowsOf(attrs),
): void {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
  // A KV cache [B, maxLength, KVH·hd] holds Lk valid rows per batch at stride keyCapacity.
  const cap = attrs.keyCapacity ?? Lk;
  const group = H / KVH;
  const qStride = H * hd;
  const kStride = KVH * hd;
  for (let row = from; row < to; row++) {
    const i = row % Lq;
    const bh = (row - i) / Lq;
    const h = bh % H;
    const b = (bh - h) / H;
    const qOff = (b * Lq + i) * qStride + h * hd;
    const kBase = b * cap * kStride + Math.floor(h / group) * hd;
    const outRow = row * Lk;
    for (let j = 0; j < Lk; j++) {
      const kOff = kBase + j * kStride;
      let dot = 0;
      for (let c = 0; c < hd; c++) dot += (q[qOff + c] as number) * (k[kOff + c] as number);
      out[outRow + j] = dot;
    }
  }
}

export function rowsOf(attrs: { batch: number; numHeads: number; queryLength: number }): number {
  return attrs.batch * attrs.numHeads * attrs.queryLength;
}
