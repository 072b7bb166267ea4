/**
 * Which keys a score row of the packed fused programs (fusedAttention.glsl.ts) may see, and how
 * passes 2–4 walk only those: the GLSL shared by every pass, plus the per-block id table of
 * packed sequences. Key rows j of batch b, query row i (position p = queryOffset + i):
 *   causal       j ≤ i + (Lk − Lq) (bottom-right aligned)
 *   window w     rows p' − w + 1 … p' (causal) or |p' − j| < w, p' = p − keyOffset (a compacted
 *                window cache holds position j + keyOffset in row j ≥ sinkTokens)
 *   sinkTokens s rows 0 … s − 1 stay visible besides the window, causal permitting
 * so row i sees [0, sinkEnd) ∪ [start, end) before padding and sequence ids. Pass 1 writes −∞ for
 * every other key without reading q or k; passes 2–4 loop over those two ranges only, and with
 * `sequenceIds` also skip each block of SEQ_BLOCK4 texels whose id range misses the query's id,
 * so fully hidden blocks are never computed, only their −∞/0 texels written by passes 1 and 3.
 */
import type { FusedAttentionAttrs } from '@qkv/core';
import { PRELUDE } from '../raw.js';

/** What of the visibility logic a program compiles in (also part of FusedVariant). */
export interface KeyVariant {
  readonly Lq: number;
  readonly causal: boolean;
  readonly window: boolean;
  readonly sinkTokens: boolean;
  readonly sequenceIds: boolean;
  /** Loop bound of the key loops: nextPow2(ceil(keyCapacity / 4)). */
  readonly maxKeys4: number;
}

/** Keys per block of the sequence-id table: 32, as the cpu reference kernel's blocks. */
export const SEQ_BLOCK = 32;
/** The same blocks in texels of 4 keys. */
export const SEQ_BLOCK4 = SEQ_BLOCK / 4;

/** Uniforms every pass that finds a row's visible keys reads (set by `keyUniforms`). */
export function keyDeclarations(v: KeyVariant): string {
  return `uniform float uLk; uniform float uQueryOffset; uniform float uKeyOffset;
uniform float uWindow; uniform float uSinkTokens;
${v.sequenceIds ? 'uniform sampler2D uIds; uniform vec2 uIdsSize;\nuniform sampler2D uIdBlocks; uniform vec2 uIdBlocksSize;' : ''}`;
}

/** The values of `keyDeclarations`' uniforms for one call. */
export function keyUniforms(attrs: FusedAttentionAttrs): Record<string, number> {
  return {
    uLk: attrs.keyLength,
    uQueryOffset: attrs.queryOffset ?? 0,
    uKeyOffset: attrs.keyOffset ?? 0,
    uWindow: attrs.window ?? 0,
    uSinkTokens: attrs.sinkTokens ?? 0,
  };
}

/**
 * GLSL functions (after `keyDeclarations`): `visibleKeys(i, sinkEnd, start, end)`, the key rows
 * [0, sinkEnd) ∪ [start, end) of query row i; `visibleTexels(i, a1, b0, b1)`, the same as
 * disjoint texel ranges [0, a1) ∪ [b0, b1) (a texel holding a visible key may hold hidden ones:
 * pass 1 wrote −∞ there); and with sequence ids `queryId(b, i)`, the id of query row i.
 */
export function keyFunctions(v: KeyVariant): string {
  const causalEnd = v.causal ? 'min(uLk, max(0.0, i + uLk - float(LQ) + 1.0))' : 'uLk';
  return `void visibleKeys(float i, out float sinkEnd, out float start, out float end) {
  float causalEnd = ${causalEnd};
  start = 0.0;
  end = causalEnd;
  ${
    v.window
      ? `float pr = uQueryOffset + i - uKeyOffset;
  start = max(0.0, pr - uWindow + 1.0);
  end = min(end, ${v.causal ? 'pr + 1.0' : 'pr + uWindow'});`
      : ''
  }
  end = max(start, end);
  sinkEnd = ${v.sinkTokens ? 'min(uSinkTokens, causalEnd)' : '0.0'};
}
void visibleTexels(float i, out float a1, out float b0, out float b1) {
  float sinkEnd; float start; float end;
  visibleKeys(i, sinkEnd, start, end);
  float first = max(start, sinkEnd);
  a1 = ceil(sinkEnd / 4.0);
  b0 = max(floor(first / 4.0), a1);
  b1 = first < end ? max(b0, ceil(end / 4.0)) : b0;
}
${
  v.sequenceIds
    ? `float queryId(float b, float i) {
  return flatAt(uIds, uIdsSize, b * uLk + i + uLk - float(LQ));
}
// Whether block blk of batch b (keys 32·blk … 32·blk + 31) holds no key with the query's id.
bool blockHidden(float b, float blk, float qid) {
  vec4 mm = texel(uIdBlocks, uIdBlocksSize, blk, b);
  return qid < mm.x || qid > mm.y;
}`
    : ''
}`;
}

/**
 * GLSL that runs `body` (which reads `float j4`) for every texel of row (b, i)'s visible key
 * ranges, in key order; needs `keyFunctions`, and `qid` = queryId(b, i) with sequence ids.
 * Loops have constant bounds (GLSL ES 1.00) and start at each range's first texel.
 */
export function forVisibleTexels(v: KeyVariant, body: string): string {
  const loop = (lo: string, hi: string) =>
    v.sequenceIds
      ? `for (int visT = 0; visT < ${Math.ceil(v.maxKeys4 / SEQ_BLOCK4)}; visT++) {
    float blk = floor(${lo} / ${SEQ_BLOCK4}.0) + float(visT);
    if (blk * ${SEQ_BLOCK4}.0 >= ${hi}) break;
    if (blockHidden(b, blk, qid)) continue;
    for (int visU = 0; visU < ${SEQ_BLOCK4}; visU++) {
      float j4 = blk * ${SEQ_BLOCK4}.0 + float(visU);
      if (j4 < ${lo}) continue;
      if (j4 >= ${hi}) break;
      ${body}
    }
  }`
      : `for (int visT = 0; visT < ${v.maxKeys4}; visT++) {
    float j4 = ${lo} + float(visT);
    if (j4 >= ${hi}) break;
    ${body}
  }`;
  return `float a1; float b0; float b1;
  visibleTexels(i, a1, b0, b1);
  ${v.sinkTokens ? loop('0.0', 'a1') : ''}
  ${loop('b0', 'b1')}`;
}

/**
 * Once per call with sequence ids: ids flat [B, Lk] → the block table [ceil(Lk/32), B], texel
 * (blk, b) = (min, max) of the ids of keys 32·blk … 32·blk + 31 of batch b.
 */
export const ID_BLOCKS = `${PRELUDE}
uniform sampler2D uIds; uniform vec2 uIdsSize;
uniform float uLk;
void main() {
  float blk = floor(gl_FragCoord.x);
  float b = floor(gl_FragCoord.y);
  float lo = 3.4e38;
  float hi = -3.4e38;
  for (int u = 0; u < ${SEQ_BLOCK}; u++) {
    float j = blk * ${SEQ_BLOCK}.0 + float(u);
    if (j >= uLk) break;
    float id = flatAt(uIds, uIdsSize, b * uLk + j);
    lo = min(lo, id);
    hi = max(hi, id);
  }
  gl_FragColor = vec4(lo, hi, 0.0, 0.0);
}`;
