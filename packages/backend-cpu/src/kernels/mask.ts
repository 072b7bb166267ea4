import type { MaskAttrs } from '@qkv/core';
import { rowsOf } from './scores.js';

/**
 * One row per (b, h, i) in [from, to): out = scaled (+ attnMask[i, :]), then −∞ wherever a key
 * is hidden: causal keys j > i + (Lk − Lq) (bottom-right aligned, so the last query sees every
 * key, as KV-cache decoding needs), and keys whose keyPaddingMask[b, j] is nonzero.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk] | null, attnMask [Lq, Lk] | null.
 */
export function mask(
  s: Float32Array,
  keyPaddingMask: Float32Array | null,
  attnMask: Float32Array | null,
  out: Float32Array,
  attrs: MaskAttrs,
  from = 0,
  to = rowsOf(attrs),
): void {
  const { numHeads: H, queryLength: Lq, keyLength: Lk, causal } = attrs;
  for (let row = from; row < to; row++) {
    const i = row % Lq;
    const b = Math.floor(row / (Lq * H));
    const off = row * Lk;
    const amOff = i * Lk;
    const padOff = b * Lk;
    // Keys at or past `visibleEnd` are in the future of query i.
    const visibleEnd = causal ? Math.min(Lk, Math.max(0, i + Lk - Lq + 1)) : Lk;
    for (let j = 0; j < Lk; j++) {
      const hidden = j >= visibleEnd || (keyPaddingMask !== null && keyPaddingMask[padOff + j] !== 0);
      out[off + j] = hidden
        ? Number.NEGATIVE_INFINITY
        : attnMask !== null
          ? (s[off + j] as number) + (attnMask[amOff + j] as number)
          : (s[off + j] as number);
    }
  }
}
