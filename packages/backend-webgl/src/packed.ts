/**
 * The packed programs (see raw.ts): projections and fused attention on RGBA textures.
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

/** gpu.js flat texture [rows, G·gw] → packed [G·gw4, rows]. Uniforms: uGW, uGW4, uCols. */
export const PACK = `${PRELUDE}
uniform sampler2D uSrc; uniform vec2 uSrcSize;
uniform float uGW; uniform float uGW4; uniform float uCols;
void main() {
  float x = floor(gl_FragCoord.x);
  float r = floor(gl_FragCoord.y);
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

/**
 * linear, 4 outputs per fragment: out[r, 4o4 … 4o4+3] = Σ_i x[r, i] · w[i, 4o4 …] + bias.
 * x packed [nIn4, rows], w packed [nOut4, nIn], bias packed [nOut4, 1] → out packed [nOut4, rows].
 * Accumulates in float32 in the order i = 0…nIn−1 (as the gpu.js and cpu kernels do). Rows of w
 * past nIn (when nIn % 4 ≠ 0) clamp to the last row and meet x's zero padding.
 */
export function linearSource(nIn4: number, hasBias: boolean): string {
  return `${PRELUDE}
#define NIN4 ${nIn4}
uniform sampler2D uX; uniform vec2 uXSize;
uniform sampler2D uW; uniform vec2 uWSize;
${hasBias ? 'uniform sampler2D uB; uniform vec2 uBSize;' : ''}
void main() {
  float o4 = floor(gl_FragCoord.x);
  float xv0 = (floor(gl_FragCoord.y) + 0.5) / uXSize.y;
  float wu = (o4 + 0.5) / uWSize.x;
  float dy = 1.0 / uWSize.y;
  vec4 acc = vec4(0.0);
  for (int i4 = 0; i4 < NIN4; i4++) {
    float fi = float(i4);
    vec4 xv = texture2D(uX, vec2((fi + 0.5) / uXSize.x, xv0));
    float wv = (4.0 * fi + 0.5) * dy;
    acc += xv.x * texture2D(uW, vec2(wu, wv));
    acc += xv.y * texture2D(uW, vec2(wu, wv + dy));
    acc += xv.z * texture2D(uW, vec2(wu, wv + 2.0 * dy));
    acc += xv.w * texture2D(uW, vec2(wu, wv + 3.0 * dy));
  }
  gl_FragColor = acc${hasBias ? ' + texel(uB, uBSize, o4, 0.0)' : ''};
}`;
}

/** What the fused programs compile in; everything else (Lk, offsets, scale) is a uniform. */
export interface FusedVariant {
  readonly H: number;
  readonly group: number;
  readonly Lq: number;
  /** hd4 = ceil(hd / 4) texels per head. */
  readonly hd4: number;
  readonly causal: boolean;
  readonly hasPadding: boolean;
  readonly hasAttnMask: boolean;
  readonly window: boolean;
  readonly alibi: boolean;
  /** Loop bound of the key loops: ceil(keyCapacity / 4). */
  readonly maxKeys4: number;
}

export const fusedKey = (name: string, v: FusedVariant) => `${name}|${JSON.stringify(v)}`;

const rowLines = `
  float bh = floor((row + 0.5) / float(LQ));
  float i = row - bh * float(LQ);
  float b = floor((bh + 0.5) / float(H));
  float h = bh - b * float(H);
  float kvh = floor((h + 0.5) / float(GROUP));`;

function defines(v: FusedVariant): string {
  return [
    `#define H ${v.H}`,
    `#define GROUP ${v.group}`,
    `#define LQ ${v.Lq}`,
    `#define HD4 ${v.hd4}`,
    `#define MAXK4 ${v.maxKeys4}`,
  ].join('\n');
}

/**
 * Fused pass 1: S [ceil(Lk/4), tileRows], 4 keys per fragment, tile row `local` = score row
 * rowStart + local = (b·H + h)·Lq + i. S = scale·q·k − slope_h·|p − j| (+ attnMask[i, j]),
 * −∞ where causal / padding / the window hide key j or j ≥ Lk; p = queryOffset + i.
 * q packed [H·hd4, B·Lq], k packed [KVH·hd4, B·keyCapacity], pad flat [B, Lk], am flat [Lq, Lk].
 */
export function fusedScoresSource(v: FusedVariant): string {
  return `${PRELUDE}
${defines(v)}
uniform sampler2D uQ; uniform vec2 uQSize;
uniform sampler2D uK; uniform vec2 uKSize;
${v.hasPadding ? 'uniform sampler2D uPad; uniform vec2 uPadSize;' : ''}
${v.hasAttnMask ? 'uniform sampler2D uAm; uniform vec2 uAmSize;' : ''}
uniform float uRowStart; uniform float uRows; uniform float uLk; uniform float uCap;
uniform float uScale; uniform float uNegInf; uniform float uQueryOffset; uniform float uWindow;
${v.alibi ? 'uniform float uSlopes[H];' : ''}
float dot4(vec4 a, vec4 b, float acc) {
  acc += a.x * b.x; acc += a.y * b.y; acc += a.z * b.z; acc += a.w * b.w;
  return acc;
}
void main() {
  float j4 = floor(gl_FragCoord.x);
  float row = uRowStart + floor(gl_FragCoord.y);
  if (row >= uRows) { gl_FragColor = vec4(uNegInf); return; }
  ${rowLines}
  float p = uQueryOffset + i;
  // Visible keys [start, end): causal is bottom-right aligned (the last query sees every key).
  float start = 0.0;
  float end = ${v.causal ? 'min(uLk, max(0.0, i + uLk - float(LQ) + 1.0))' : 'uLk'};
  ${v.window ? `start = max(0.0, p - uWindow + 1.0);\n  end = min(end, ${v.causal ? 'p + 1.0' : 'p + uWindow'});` : ''}
  float j0 = 4.0 * j4;
  vec4 j = vec4(j0) + vec4(0.0, 1.0, 2.0, 3.0);
  // 1.0 where key j is hidden, componentwise (vector compares: no per-key branches).
  vec4 hidden = max(vec4(lessThan(j, vec4(start))), vec4(greaterThanEqual(j, vec4(end))));
  ${
    v.hasPadding
      ? `for (int m = 0; m < 4; m++) {
    float jm = j0 + float(m);
    if (jm < uLk && flatAt(uPad, uPadSize, b * uLk + jm) != 0.0) {
      if (m == 0) hidden.x = 1.0; else if (m == 1) hidden.y = 1.0; else if (m == 2) hidden.z = 1.0; else hidden.w = 1.0;
    }
  }`
      : ''
  }
  if (min(min(hidden.x, hidden.y), min(hidden.z, hidden.w)) > 0.5) { gl_FragColor = vec4(uNegInf); return; }
  // Coordinates are base + index · step: no per-read division, and no drift from summing steps.
  vec2 qc = vec2((h * float(HD4) + 0.5) / uQSize.x, (b * float(LQ) + i + 0.5) / uQSize.y);
  float du = 1.0 / uQSize.x;
  float ku = (kvh * float(HD4) + 0.5) / uKSize.x;
  float dku = 1.0 / uKSize.x;
  float dkv = 1.0 / uKSize.y;
  float kv = (b * uCap + j0 + 0.5) * dkv;
  vec4 d = vec4(0.0);
  for (int c4 = 0; c4 < HD4; c4++) {
    float fc = float(c4);
    vec4 qv = texture2D(uQ, vec2(qc.x + fc * du, qc.y));
    float u = ku + fc * dku;
    d.x = dot4(qv, texture2D(uK, vec2(u, kv)), d.x);
    d.y = dot4(qv, texture2D(uK, vec2(u, kv + dkv)), d.y);
    d.z = dot4(qv, texture2D(uK, vec2(u, kv + 2.0 * dkv)), d.z);
    d.w = dot4(qv, texture2D(uK, vec2(u, kv + 3.0 * dkv)), d.w);
  }
  vec4 s = d * uScale;
  ${
    v.alibi
      ? `float slope = 0.0;
  for (int hh = 0; hh < H; hh++) { if (float(hh) == h) slope = uSlopes[hh]; }
  s -= slope * abs(vec4(p) - j);`
      : ''
  }
  ${
    v.hasAttnMask
      ? `float amBase = i * uLk + j0;
  s += vec4(flatAt(uAm, uAmSize, amBase), j0 + 1.0 < uLk ? flatAt(uAm, uAmSize, amBase + 1.0) : 0.0,
            j0 + 2.0 < uLk ? flatAt(uAm, uAmSize, amBase + 2.0) : 0.0, j0 + 3.0 < uLk ? flatAt(uAm, uAmSize, amBase + 3.0) : 0.0);`
      : ''
  }
  gl_FragColor = vec4(hidden.x > 0.5 ? uNegInf : s.x, hidden.y > 0.5 ? uNegInf : s.y,
                      hidden.z > 0.5 ? uNegInf : s.z, hidden.w > 0.5 ? uNegInf : s.w);
}`;
}

/**
 * Fused pass 2: per tile row, (m, l) = (max_j S, Σ_j exp(S − m)); (−∞, 0) for a row with no
 * visible key. Sums in key order, as the row softmax does. Written to stats [2, tileRows/2]
 * (tile row = 2y + x): a 1-texel-wide target would leave half of every 2×2 fragment quad idle.
 */
export const STATS_WIDTH = 2;
export function fusedStatsSource(v: FusedVariant): string {
  return `${PRELUDE}
#define MAXK4 ${v.maxKeys4}
uniform sampler2D uS; uniform vec2 uSSize;
uniform float uLk4; uniform float uNegInf;
void main() {
  float y = floor(gl_FragCoord.y) * ${STATS_WIDTH}.0 + floor(gl_FragCoord.x);
  float m = uNegInf;
  for (int j4 = 0; j4 < MAXK4; j4++) {
    if (float(j4) >= uLk4) break;
    vec4 s = texel(uS, uSSize, float(j4), y);
    m = max(m, max(max(s.x, s.y), max(s.z, s.w)));
  }
  float l = 0.0;
  if (m > -3.0e38) {
    for (int j4 = 0; j4 < MAXK4; j4++) {
      if (float(j4) >= uLk4) break;
      vec4 e = exp(texel(uS, uSSize, float(j4), y) - m);
      l += e.x; l += e.y; l += e.z; l += e.w;
    }
  }
  gl_FragColor = vec4(m, l, 0.0, 0.0);
}`;
}

/** Fused pass 3: P = exp(S − m) / l, 0 where l = 0 (no visible key) → P [ceil(Lk/4), tileRows]. */
export const FUSED_PROBS = `${PRELUDE}
uniform sampler2D uS; uniform vec2 uSSize;
uniform sampler2D uStats; uniform vec2 uStatsSize;
void main() {
  float y = floor(gl_FragCoord.y);
  float sy = floor((y + 0.5) / ${STATS_WIDTH}.0);
  vec4 st = texel(uStats, uStatsSize, y - sy * ${STATS_WIDTH}.0, sy);
  if (st.y <= 0.0) { gl_FragColor = vec4(0.0); return; }
  gl_FragColor = exp(texel(uS, uSSize, floor(gl_FragCoord.x), y) - st.x) / st.y;
}`;

/**
 * Fused pass 4: heads packed [H·hd4, B·Lq], drawn per (b, h) segment of the tile (a rectangle
 * of that head's hd4 columns and its rows i0 … i1−1): heads[b, i, h, 4c4 …] = Σ_j P[row, j]·v[b, j, kvh, 4c4 …]
 * with v packed [KVH·hd4, B·keyCapacity]. Keys in order; P is 0 past Lk, so the padding of the
 * last texel adds 0 times a finite value.
 */
export function fusedOutputSource(v: FusedVariant): string {
  return `${PRELUDE}
${defines(v)}
uniform sampler2D uP; uniform vec2 uPSize;
uniform sampler2D uV; uniform vec2 uVSize;
uniform float uRowStart; uniform float uLk4; uniform float uCap;
void main() {
  float x = floor(gl_FragCoord.x);
  float y = floor(gl_FragCoord.y);
  float b = floor((y + 0.5) / float(LQ));
  float i = y - b * float(LQ);
  float h = floor((x + 0.5) / float(HD4));
  float c4 = x - h * float(HD4);
  float kvh = floor((h + 0.5) / float(GROUP));
  float local = (b * float(H) + h) * float(LQ) + i - uRowStart;
  // Coordinates are base + index · step: no per-read division, and no drift from summing steps.
  vec2 pc = vec2(0.5 / uPSize.x, (local + 0.5) / uPSize.y);
  float dpu = 1.0 / uPSize.x;
  float vu = (kvh * float(HD4) + c4 + 0.5) / uVSize.x;
  float dvv = 1.0 / uVSize.y;
  float vv = (b * uCap + 0.5) * dvv;
  vec4 acc = vec4(0.0);
  for (int j4 = 0; j4 < MAXK4; j4++) {
    float fj = float(j4);
    if (fj >= uLk4) break;
    vec4 pv = texture2D(uP, vec2(pc.x + fj * dpu, pc.y));
    float v0 = vv + 4.0 * fj * dvv;
    acc += pv.x * texture2D(uV, vec2(vu, v0));
    acc += pv.y * texture2D(uV, vec2(vu, v0 + dvv));
    acc += pv.z * texture2D(uV, vec2(vu, v0 + 2.0 * dvv));
    acc += pv.w * texture2D(uV, vec2(vu, v0 + 3.0 * dvv));
  }
  gl_FragColor = acc;
}`;
}
