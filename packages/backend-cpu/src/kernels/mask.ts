import { keyPosition, type MaskAttrs } from '@qkv/core';
import { rowsOf } from './scores.js';

/**
 * One row per (b, h, i) in [from, to): out = scaled (+ attnMask[i, :]), then −∞ wherever a key
 * is hidden: causal keys j > i + (Lk − Lq) (bottom-right aligned, so the last query sees every
 * key, as KV-cache decoding needs), and keys whose keyPaddingMask[b, j] is nonzero.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk] | null, attnMask [Lq, Lk] | null.
 *
 * The optional ScoreModifiers (core/graph.ts), with p = queryOffset + i the query's position
 * and pj = keyPosition(j) the key's:
 *   softcap c     s = c·tanh(s/c), first
 *   window w      hides keys outside p−w+1 … p (causal) or |p − pj| ≥ w (otherwise)
 *   sinkTokens s  keys 0 … s−1 stay visible besides the window (causal permitting)
 *   alibiSlopes   s −= slope[h]·|p − pj|
 *   scoreMod      s = scoreMod(s, b, h, p, pj), before attnMask is added
 *   maskMod       hides the key where maskMod(b, h, p, pj) is false
 * sequenceIds [B, Lk] | null (packed sequences) hides key j unless its id is the query row's.
 */
export function mask(
  s: Float32Array,
  keyPaddingMask: Float32Array | null,
  attnMask: Float32Array | null,
  out: Float32Array,
  attrs: MaskAttrs,
  from = 0,
  to = rowsOf(attrs),
  sequenceIds: Float32Array | null = null,
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
    // Keys outside [0, sinkEnd) ∪ [start, end) are in the future of query i, or outside its
    // window and not sink tokens.
    const [start, end] = visibleKeys(i, attrs);
    const sinkEnd = sinkKeysEnd(i, attrs);
    const id = sequenceIds === null ? 0 : (sequenceIds[padOff + i + Lk - Lq] as number);
    for (let j = 0; j < Lk; j++) {
      const hidden =
        (j >= sinkEnd && (j < start || j >= end)) ||
        (keyPaddingMask !== null && keyPaddingMask[padOff + j] !== 0) ||
        (sequenceIds !== null && sequenceIds[padOff + j] !== id);
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
  | 'queryLength'
  | 'keyLength'
  | 'causal'
  | 'queryOffset'
  | 'window'
  | 'alibiSlopes'
  | 'maskMod'
  | 'scoreMod'
  | 'softcap'
  | 'sinkTokens'
  | 'keyOffset'
  | 'keyRing'
>;

/** Whether any modifier of the visible scores is present (else `modifiedScore` is skipped). */
export function hasScoreModifiers(attrs: Modifiers): boolean {
  return (
    attrs.window !== undefined ||
    attrs.alibiSlopes !== undefined ||
    attrs.maskMod !== undefined ||
    attrs.scoreMod !== undefined ||
    attrs.softcap !== undefined
  );
}

/**
 * With sinkTokens s: key rows [0, sinkEnd) are visible to query row i whatever its window
 * (the first s positions, causal permitting); 0 without sink tokens.
 */
export function sinkKeysEnd(i: number, attrs: Modifiers): number {
  if (attrs.sinkTokens === undefined) return 0;
  const { queryLength: Lq, keyLength: Lk } = attrs;
  return Math.min(attrs.sinkTokens, attrs.causal ? Math.max(0, i + Lk - Lq + 1) : Lk, Lk);
}

/**
 * The keys query row i may see before padding and maskMod: [start, end). Causal keys stop at
 * i + (Lk − Lq) (bottom-right); a window w keeps p−w+1 … p when causal, |p − j| < w otherwise,
 * with p = queryOffset + i (in rows: minus keyOffset, for a compacted window cache). The fused
 * kernel loops over exactly this range (and the sink tokens), so a window skips every key block
 * outside it.
 */
export function visibleKeys(i: number, attrs: Modifiers): [number, number] {
  const { queryLength: Lq, keyLength: Lk, causal, window: w } = attrs;
  let start = 0;
  let end = causal ? Math.min(Lk, Math.max(0, i + Lk - Lq + 1)) : Lk;
  if (w !== undefined) {
    const p = (attrs.queryOffset ?? 0) + i - (attrs.keyOffset ?? 0);
    start = Math.max(0, p - w + 1);
    end = Math.min(end, causal ? p + 1 : p + w);
  }
  return [start, Math.max(start, end)];
}

/**
 * A visible key's score after softcap, ALiBi, scoreMod and attnMask (in that order), or −∞ where maskMod
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
  const pj = keyPosition(j, attrs);
  if (attrs.maskMod !== undefined && !attrs.maskMod(b, h, p, pj)) return Number.NEGATIVE_INFINITY;
  let v = scaled;
  if (attrs.softcap !== undefined) v = attrs.softcap * Math.tanh(v / attrs.softcap);
  if (attrs.alibiSlopes !== undefined) v -= (attrs.alibiSlopes[h] as number) * Math.abs(p - pj);
  if (attrs.scoreMod !== undefined) v = attrs.scoreMod(v, b, h, p, pj);
  return Math.fround(v + attnMaskValue);
}
