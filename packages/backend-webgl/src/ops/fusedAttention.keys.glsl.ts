/**
 * Which keys a score row of the packed fused programs (fusedAttention.glsl.ts) may see, and how
 * every pass walks only those: the GLSL shared by the passes, the spans pass, the row quads of
 * passes 1 and 3, and the per-block id table of packed sequences. Key rows j of batch b, query row i (position p = queryOffset + i):
 *   causal       j ≤ i + (Lk − Lq) (bottom-right aligned)
 *   window w     rows p' − w + 1 … p' (causal) or |p' − j| < w, p' = p − keyOffset (a window
 *                cache's row j ≥ sinkTokens holding position j + keyOffset)
 *   sinkTokens s rows 0 … s − 1 stay visible besides the window, causal permitting
 * so row i sees [0, sinkEnd) ∪ [start, end) before padding and sequence ids. Once per call the
 * spans pass turns that into two texel ranges per query, `spans` [Lq, B], narrowed with
 * `sequenceIds` to the first … last 32-key block holding the query's id (by a table of each
 * block's id range). Passes 1 and 3 draw only those ranges, as quads of ROW_GROUP rows (where
 * vertex shaders can read textures; else the whole tile, with an early −∞/0 outside them), and
 * passes 2 and 4 loop over them, skipping the blocks inside whose id range misses the query's id:
 * texels of fully hidden blocks are never computed, nor written.
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
uniform float uWindow; uniform float uSinkTokens; uniform float uRingSplit; uniform float uRingSize;
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
    // A wrapped window ring (core's keyRing): rows before uRingSplit are uRingSize further on.
    uRingSplit: attrs.keyRing?.split ?? 0,
    uRingSize: attrs.keyRing?.size ?? 0,
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
 * GLSL that runs `body` (which reads `float j4`) for every texel of row (b, i)'s spans, in key
 * order, skipping the blocks of other sequences; needs `spanDeclarations`, and `qid` =
 * queryId(b, i) with sequence ids. Loops have constant bounds (GLSL ES 1.00) and start at each
 * range's first texel.
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
  return `vec4 span = rowSpan(b, i);
  ${v.sinkTokens ? loop('span.x', 'span.y') : ''}
  ${loop('span.z', 'span.w')}`;
}

/** The spans texture's declaration and `rowSpan(b, i)`: texel ranges [x, y) ∪ [z, w) of row i. */
export const SPAN_DECLARATIONS = `uniform sampler2D uSpans; uniform vec2 uSpansSize;
vec4 rowSpan(float b, float i) { return texel(uSpans, uSpansSize, i, b); }
bool inSpan(vec4 span, float j4) { return (j4 >= span.x && j4 < span.y) || (j4 >= span.z && j4 < span.w); }`;

/**
 * Once per call: spans [Lq, B], texel (i, b) = the texel ranges [x, y) (sink tokens) and
 * [z, w) (causal / window) query row i of batch b reads; with sequence ids each range narrowed
 * to its first … last block holding the query's id (empty: x = y or z = w).
 */
export function spansSource(v: KeyVariant): string {
  return `${PRELUDE}
#define LQ ${v.Lq}
${keyDeclarations(v)}
${keyFunctions(v)}
${
  v.sequenceIds
    ? `void narrow(float b, float qid, inout float lo, inout float hi) {
  float first = hi;
  float last = lo;
  for (int t = 0; t < ${Math.ceil(v.maxKeys4 / SEQ_BLOCK4)}; t++) {
    float blk = floor(lo / ${SEQ_BLOCK4}.0) + float(t);
    if (blk * ${SEQ_BLOCK4}.0 >= hi) break;
    if (!blockHidden(b, blk, qid)) {
      first = min(first, max(lo, blk * ${SEQ_BLOCK4}.0));
      last = max(last, min(hi, blk * ${SEQ_BLOCK4}.0 + ${SEQ_BLOCK4}.0));
    }
  }
  lo = first < last ? first : 0.0;
  hi = first < last ? last : 0.0;
}`
    : ''
}
void main() {
  float i = floor(gl_FragCoord.x);
  float b = floor(gl_FragCoord.y);
  float a1; float b0; float b1;
  visibleTexels(i, a1, b0, b1);
  float a0 = 0.0;
  ${v.sequenceIds ? 'float qid = queryId(b, i);\n  narrow(b, qid, a0, a1);\n  narrow(b, qid, b0, b1);' : ''}
  gl_FragColor = vec4(a0, a1, b0, b1);
}`;
}

/**
 * Rows per quad of passes 1 and 3: software and hardware rasterisers shade 2×2 fragment quads,
 * so a quad one row high would run twice the fragments it writes; groups of ROW_GROUP rows drawn
 * over the union of their spans keep the quads full (the few texels of the union outside a row's
 * own spans write −∞ / 0 without reading q, k or S). bench/README.md has the measurement.
 */
export const ROW_GROUP = 8;

/**
 * The vertex shader of passes 1 and 3 drawn as row quads: vertex (row group, corner x, corner y,
 * range) of the geometry from `rowQuads` covers tile rows ROW_GROUP·group … + ROW_GROUP − 1 over
 * the union of their range 0 (sink tokens) or 1 (the rest) from `spans`, in texels of a
 * [uTargetW, uTargetH] target; an empty union collapses to a point outside the target.
 */
export function rowQuadsVertex(v: KeyVariant & { readonly H: number }): string {
  return `precision highp float;
precision highp int;
precision highp sampler2D;
attribute vec4 aVertex;
uniform sampler2D uSpans; uniform vec2 uSpansSize;
uniform float uRowStart; uniform float uRows; uniform float uTargetW; uniform float uTargetH;
void main() {
  float x0 = uTargetW;
  float x1 = 0.0;
  float y0 = aVertex.x * ${ROW_GROUP}.0;
  for (int u = 0; u < ${ROW_GROUP}; u++) {
    float local = y0 + float(u);
    float row = uRowStart + local;
    if (row >= uRows || local >= uTargetH) break;
    float bh = floor((row + 0.5) / ${v.Lq}.0);
    float i = row - bh * ${v.Lq}.0;
    float b = floor((bh + 0.5) / ${v.H}.0);
    vec4 span = texture2D(uSpans, vec2((i + 0.5) / uSpansSize.x, (b + 0.5) / uSpansSize.y));
    vec2 r = aVertex.w < 0.5 ? span.xy : span.zw;
    if (r.x < r.y) { x0 = min(x0, r.x); x1 = max(x1, r.y); }
  }
  if (x1 <= x0) { gl_Position = vec4(2.0, 2.0, 0.0, 1.0); return; }
  float x = aVertex.y < 0.5 ? x0 : x1;
  float y = min(y0 + aVertex.z * ${ROW_GROUP}.0, uTargetH);
  gl_Position = vec4(2.0 * x / uTargetW - 1.0, 2.0 * y / uTargetH - 1.0, 0.0, 1.0);
}`;
}

/** aVertex data of `rowQuadsVertex`: two triangles per (row group, range), ranges 0 and 1 or 1 only. */
export function rowQuads(tileRows: number, sinkTokens: boolean): Float32Array {
  const ranges = sinkTokens ? [0, 1] : [1];
  const corners = [0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1];
  const groups = Math.ceil(tileRows / ROW_GROUP);
  const out = new Float32Array(groups * ranges.length * 6 * 4);
  let o = 0;
  for (let r = 0; r < groups; r++) {
    for (const g of ranges) {
      for (let c = 0; c < 6; c++) {
        out.set([r, corners[2 * c] as number, corners[2 * c + 1] as number, g], o);
        o += 4;
      }
    }
  }
  return out;
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
