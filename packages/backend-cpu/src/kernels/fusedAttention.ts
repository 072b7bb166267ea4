import type { FusedAttentionAttrs } from '@qkv/core';
import { hasScoreModifiers, modifiedScore, visibleKeys } from './mask.js';
import { rowsOf } from './scores.js';

/**
 * scores → scale → mask → softmax → weightedSum for rows (b, h, i) in [from, to), holding one
 * query row's running state instead of the [Lq, Lk] score matrix (online softmax, Milakov &
 * Gimelshein 2018): memory is O(hd) per row whatever the sequence length.
 *
 * For each visible key j (causal rows stop at the diagonal, a window starts at p−w+1 and stops
 * at its far edge, so keys outside it are never visited; padding keys are skipped):
 *   s = q_i·k_j · scale, then ALiBi, scoreMod, + attnMask[i, j], maskMod (as in mask.ts)
 *   if s > m: rescale the running sum l and accumulator acc by exp(m − s); m = s
 *   p = exp(s − m); l += p; acc += p · v_j
 * heads[b, i, h, :] = acc / l, or 0 when no key was visible (l = 0).
 * q [B, Lq, H·hd], k, v [B, Lk, KVH·hd] (or caches [B, keyCapacity, KVH·hd]) → heads [B, Lq, H·hd].
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
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd, scale } = attrs;
  const cap = attrs.keyCapacity ?? Lk;
  const modified = hasScoreModifiers(attrs);
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
    const kvBase = b * cap * kvStride + Math.floor(h / group) * hd;
    const [start, end] = visibleKeys(i, attrs);
    let m = Number.NEGATIVE_INFINITY;
    let l = 0;
    acc.fill(0);
    for (let j = start; j < end; j++) {
      if (keyPaddingMask !== null && keyPaddingMask[b * Lk + j] !== 0) continue;
      const kOff = kvBase + j * kvStride;
      let dot = 0;
      for (let c = 0; c < hd; c++) dot += (q[qOff + c] as number) * (k[kOff + c] as number);
      // Round like the unfused chain does (scores, scaled, masked are float32 tensors there).
      let s = Math.fround(Math.fround(dot) * scale);
      if (modified) s = modifiedScore(s, b, h, i, j, attnMask === null ? 0 : (attnMask[i * Lk + j] as number), attrs);
      else if (attnMask !== null) s = Math.fround(s + (attnMask[i * Lk + j] as number));
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
