import type { MaskAttrs } from '@qkv/core';
import { rowsOf } from './scores.js';

/**
 * One row per (b, h, i) in [from, to): out = scaled (+ attnMask[i, :]), then −∞ wherever a key
 * is hidden: causal keys j > i + (Lk − Lq) (bottom-right aligned, so the last query sees every
 * key, as KV-cache decoding needs), and keys whose keyPaddingMask[b, j] is nonzero.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk] | null, attnMask [Lq, Lk] | null.
 *
 * The optional ScoreModifiers (core/graph.ts), with p = queryOffset + i the query's position:
 *   window w      hides keys outside p−w+1 … p (causal) or |p − j| ≥ w (otherwise)
 *   alibiSlopes   s −= slope[h]·|p − j|
 *   scoreMod      s = scoreMod(s, b, h, p, j), before attnMask is added
 *   maskMod       hides the key where maskMod(b, h, p, j) is false
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
  const { numHeads: H, queryLength: Lq, keyLength: Lk } = attrs;
  const modified = hasScoreModifiers(attrs);
  for (let row = from; row < to; row++) {
    const i = row % Lq;
    const h = Math.floor(row / Lq) % H;
    const b = Math.floor(row / (Lq * H));
    const off = row * Lk;
    const amOff = i * Lk;
    const padOff = b * Lk;
    // Keys outside [start, end) are in the future of query i, or outside its window.
    const [start, end] = visibleKeys(i, attrs);
    for (let j = 0; j < Lk; j++) {
      const hidden = j < start || j >= end || (keyPaddingMask !== null && keyPaddingMask[padOff + j] !== 0);
      if (hidden) {
        out[off + j] = Number.NEGATIVE_INFINITY;
      } else if (modified) {
        out[off + j] = modifiedScore(
          s[off + j] as number,
          b,
          h,
          i,
          j,
          attnMask === null ? 0 : (attnMask[amOff + j] as number),
          attrs,
        );
      } else {
        out[off + j] =
          attnMask !== null ? (s[off + j] as number) + (attnMask[amOff + j] as number) : (s[off + j] as number);
      }
    }
  }
}

type Modifiers = Pick<
  MaskAttrs,
  'queryLength' | 'keyLength' | 'causal' | 'queryOffset' | 'window' | 'alibiSlopes' | 'maskMod' | 'scoreMod'
>;

/** Whether any optional modifier is present (the fast, base-only paths check this). */
export function hasScoreModifiers(attrs: Modifiers): boolean {
  return (
    attrs.window !== undefined ||
    attrs.alibiSlopes !== undefined ||
    attrs.maskMod !== undefined ||
    attrs.scoreMod !== undefined
  );
}

/**
 * The keys query row i may see before padding and maskMod: [start, end). Causal keys stop at
 * i + (Lk − Lq) (bottom-right); a window w keeps p−w+1 … p when causal, |p − j| < w otherwise,
 * with p = queryOffset + i. The fused kernel loops over exactly this range, so a window skips
 * every key block outside it.
 */
export function visibleKeys(i: number, attrs: Modifiers): [number, number] {
  const { queryLength: Lq, keyLength: Lk, causal, window: w } = attrs;
  let start = 0;
  let end = causal ? Math.min(Lk, Math.max(0, i + Lk - Lq + 1)) : Lk;
  if (w !== undefined) {
    const p = (attrs.queryOffset ?? 0) + i;
    start = Math.max(0, p - w + 1);
    end = Math.min(end, causal ? p + 1 : p + w);
  }
  return [start, Math.max(start, end)];
}

/**
 * A visible key's score after ALiBi, scoreMod and attnMask (in that order), or −∞ where maskMod
 * hides it. `scaled` is the float32 scaled score; the result is rounded to float32 once, in the
 * same place by the unfused (here, stored in a Float32Array) and fused paths.
 */
export function modifiedScore(
  scaled: number,
  b: number,
  h: number,
  i: number,
  j: number,
  attnMaskValue: number,
  attrs: Modifiers,
): number {
  const p = (attrs.queryOffset ?? 0) + i;
  if (attrs.maskMod !== undefined && !attrs.maskMod(b, h, p, j)) return Number.NEGATIVE_INFINITY;
  let v = scaled;
  if (attrs.alibiSlopes !== undefined) v -= (attrs.alibiSlopes[h] as number) * Math.abs(p - j);
  if (attrs.scoreMod !== undefined) v = attrs.scoreMod(v, b, h, p, j);
  return Math.fround(v + attnMaskValue);
}
