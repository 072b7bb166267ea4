import type { FusedAttentionAttrs } from '@qkv/core';
import { rowsOf } from './scores.js';

/**
 * scores → scale → mask → softmax → weightedSum for rows (b, h, i) in [from, to), holding one
 * query row's running state instead of the [Lq, Lk] score matrix (online softmax, Milakov &
 * Gimelshein 2018): memory is O(hd) per row whatever the sequence length.
 *
 * For each visible key j (causal rows stop at the diagonal; padding keys are skipped):
 *   s = q_i·k_j · scale + attnMask[i, j]
 *   if s > m: rescale the running sum l and accumulator acc by exp(m − s); m = s
 *   p = exp(s − m); l += p; acc += p · v_j
 * heads[b, i, h, :] = acc / l, or 0 when no key was visible (l = 0).
 * q [B, Lq, H·hd], k, v [B, Lk, KVH·hd] → heads [B, Lq, H·hd].
 */
export function fusedAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  keyPaddingMask: Float32Array | null,
  attnMask: Float32Array | null,
  out: Float32Array,
  attrs: FusedAttentionAttrs,
  from = 0,
  to = rowsOf(attrs),
): void {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd, scale, causal } = attrs;
  const group = H / KVH;
  const qStride = H * hd;
  const kvStride = KVH * hd;
  const acc = new Float64Array(hd);
  for (let row = from; row < to; row++) {
    const i = row % Lq;
    const bh = (row - i) / Lq;
    const h = bh % H;
    const b = (bh - h) / H;
    const qOff = (b * Lq + i) * qStride + h * hd;
    const kvBase = b * Lk * kvStride + Math.floor(h / group) * hd;
    const end = causal ? Math.min(Lk, Math.max(0, i + Lk - Lq + 1)) : Lk;
    let m = Number.NEGATIVE_INFINITY;
    let l = 0;
    acc.fill(0);
    for (let j = 0; j < end; j++) {
      if (keyPaddingMask !== null && keyPaddingMask[b * Lk + j] !== 0) continue;
      const kOff = kvBase + j * kvStride;
      let dot = 0;
      for (let c = 0; c < hd; c++) dot += (q[qOff + c] as number) * (k[kOff + c] as number);
      // Round like the unfused chain does (scores, scaled, masked are float32 tensors there).
      let s = Math.fround(Math.fround(dot) * scale);
      if (attnMask !== null) s = Math.fround(s + (attnMask[i * Lk + j] as number));
      if (s === Number.NEGATIVE_INFINITY) continue;
      if (s > m) {
        const corr = Math.exp(m - s);
        l *= corr;
        for (let c = 0; c < hd; c++) acc[c] = (acc[c] as number) * corr;
        m = s;
      }
      const p = Math.exp(s - m);
      l += p;
      for (let c = 0; c < hd; c++) acc[c] = (acc[c] as number) + p * (v[kOff + c] as number);
    }
    const outOff = ((b * Lq + i) * H + h) * hd;
    const inv = l > 0 ? 1 / l : 0;
    for (let c = 0; c < hd; c++) out[outOff + c] = l > 0 ? (acc[c] as number) * inv : l !== l ? Number.NaN : 0;
  }
}
