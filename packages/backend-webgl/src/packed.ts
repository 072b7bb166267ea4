/**
 * The packed RGBA layout the raw programs (raw.ts) work on, and the programs that convert
 * between it and gpu.js's flat textures. Each op's own programs live in ops/<op>.ts.
 *
 * Packed layout of a [rows, cols] tensor whose columns form G groups of gw values
 * (heads: G = H, gw = hd; a plain matrix: G = 1, gw = cols): texture [G·gw4, rows] with
 * gw4 = ceil(gw/4); texel (g·gw4 + x, r) holds columns g·gw + 4x … 4x+3 of row r, zero past gw.
 * So a head's channels always start on a texel, whatever hd is, and a row's 4 values are one read.
 *
 * Loops in GLSL ES 1.00 need constant bounds: feature widths (nIn, hd) are compiled in, but the
 * key length is a uniform under a compiled maximum (the KV-cache capacity), so a session's steps
 * reuse one program instead of compiling one per token.
 */
import { PRELUDE } from './raw.js';

export interface PackedLayout {
  readonly rows: number;
  /** Columns per group (hd for heads, cols for a plain matrix). */
  readonly groupWidth: number;
  readonly groups: number;
}

export const texelsPerGroup = (l: PackedLayout) => Math.ceil(l.groupWidth / 4);
export const packedWidth = (l: PackedLayout) => l.groups * texelsPerGroup(l);
/**
 * Whether two layouts put every value in the same texel and channel: the same groups, or groups
 * of a multiple of 4 columns each (then no group has padding, and the layout is the plain one:
 * the heads layout of q is the output layout of its projection, with no repacking).
 */
export const sameLayout = (a: PackedLayout, b: PackedLayout) =>
  a.rows === b.rows &&
  a.groupWidth * a.groups === b.groupWidth * b.groups &&
  ((a.groupWidth === b.groupWidth && a.groups === b.groups) || (a.groupWidth % 4 === 0 && b.groupWidth % 4 === 0));

/**
 * gpu.js flat texture [rows, G·gw] → packed [G·gw4, rows]. Uniforms: uGW, uGW4, uCols, and
 * uRowShift: target row y takes source row y − uRowShift (0 to pack a whole tensor; writeRows
 * draws a cache's new rows, from a smaller source, over just their target rows).
 */
export const PACK = `${PRELUDE}
uniform sampler2D uSrc; uniform vec2 uSrcSize;
uniform float uGW; uniform float uGW4; uniform float uCols; uniform float uRowShift;
void main() {
  float x = floor(gl_FragCoord.x);
  float r = floor(gl_FragCoord.y) - uRowShift;
  float g = floor((x + 0.5) / uGW4);
  float c = 4.0 * (x - g * uGW4);
  float base = r * uCols + g * uGW + c;
  vec4 o = vec4(0.0);
  if (c < uGW) o.x = flatAt(uSrc, uSrcSize, base);
  if (c + 1.0 < uGW) o.y = flatAt(uSrc, uSrcSize, base + 1.0);
  if (c + 2.0 < uGW) o.z = flatAt(uSrc, uSrcSize, base + 2.0);
  if (c + 3.0 < uGW) o.w = flatAt(uSrc, uSrcSize, base + 3.0);
  gl_FragColor = o;
}`;

/**
 * Packed → gpu.js flat texture (value in .r) of n values, for the gpu.js kernels downstream.
 * Uniforms: uGW, uGW4, uCols, uN, uDstW (the flat texture's width).
 */
export const UNPACK = `${PRELUDE}
uniform sampler2D uP; uniform vec2 uPSize;
uniform float uGW; uniform float uGW4; uniform float uCols; uniform float uN; uniform float uDstW;
void main() {
  float n = floor(gl_FragCoord.y) * uDstW + floor(gl_FragCoord.x);
  if (n >= uN) { gl_FragColor = vec4(0.0); return; }
  float r = floor((n + 0.5) / uCols);
  float col = n - r * uCols;
  float g = floor((col + 0.5) / uGW);
  float c = col - g * uGW;
  float x4 = floor((c + 0.5) / 4.0);
  float ch = c - 4.0 * x4;
  vec4 v = texel(uP, uPSize, g * uGW4 + x4, r);
  float val = ch < 0.5 ? v.x : (ch < 1.5 ? v.y : (ch < 2.5 ? v.z : v.w));
  gl_FragColor = vec4(val, 0.0, 0.0, 0.0);
}`;
