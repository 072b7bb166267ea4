/**
 * The packed programs of fused attention (raw.ts runs them; ops/fusedAttention.ts draws them):
 * pass 0 transposes v, passes 1–4 compute scores, row stats, probabilities and P·V per tile.
 * Layouts as in packed.ts; Lk, the offsets and the scale are uniforms under a compiled bound.
 * Which keys a row sees, and the loops over only those: fusedAttention.keys.glsl.ts.
 */
import { PRELUDE } from '../raw.js';
import {
  forVisibleTexels,
  type KeyVariant,
  keyDeclarations,
  keyFunctions,
  SEQ_BLOCK4,
  SPAN_DECLARATIONS,
} from './fusedAttention.keys.glsl.js';

export interface FusedVariant extends KeyVariant {
  readonly H: number;
  readonly group: number;
  /** hd4 = ceil(hd / 4) texels per head. */
  readonly hd4: number;
  readonly hasPadding: boolean;
  readonly hasAttnMask: boolean;
  readonly alibi: boolean;
  readonly softcap: boolean;
  readonly sinks: boolean;
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

/** Declarations and functions every pass after pass 0 starts with. */
function header(v: FusedVariant): string {
  return `${PRELUDE}
${defines(v)}
${keyDeclarations(v)}
uniform float uRowStart; uniform float uRows; uniform float uNegInf;
${keyFunctions(v)}
${SPAN_DECLARATIONS}`;
}

/** Element h of a uniform array [H] (GLSL ES 1.00 indexes uniform arrays by constants only). */
const perHead = (name: string) => `float ${name}Of(float h) {
  float r = 0.0;
  for (int hh = 0; hh < H; hh++) { if (float(hh) == h) r = ${name}[hh]; }
  return r;
}`;

/**
 * tanh in a form that never overflows for any finite x: (1 − e^(−2|x|)) / (1 + e^(−2|x|)) with
 * the sign put back, and its Taylor series below |x| = 0.125, where 1 − e^(−2|x|) would lose
 * digits to cancellation (the series' first omitted term is < 2e−9 relative there).
 */
const TANH = `vec4 tanhStable(vec4 x) {
  vec4 a = abs(x);
  vec4 e = exp(-2.0 * a);
  vec4 far = (1.0 - e) / (1.0 + e);
  // The series on |x| clamped to its range, so that the unused branch stays finite for mix().
  vec4 an = min(a, vec4(0.125));
  vec4 x2 = an * an;
  vec4 near = an * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
  return sign(x) * mix(far, near, vec4(lessThan(a, vec4(0.125))));
}`;

/** GLSL setting component m (an int 0…3) of vec4 `v` to `value`. */
const setComponent = (v: string, value: string) =>
  `if (m == 0) ${v}.x = ${value}; else if (m == 1) ${v}.y = ${value}; else if (m == 2) ${v}.z = ${value}; else ${v}.w = ${value};`;

/**
 * Fused pass 1: S [ceil(Lk/4), tileRows], 4 keys per fragment, tile row `local` = score row
 * rowStart + local = (b·H + h)·Lq + i. Per visible key, in the reference's order:
 *   s = scale·q·k,  s = c·tanh(s/c) (softcap),  s −= slope_h·|p − pj| (ALiBi),  s += attnMask[i, j]
 * with p = queryOffset + i and pj the key's position (keyOffset past the sink rows); −∞ where
 * causal / the window (sink tokens exempt) / padding / another sequence hide key j, or j ≥ Lk.
 * Drawn over the row's spans only (fusedAttention.keys.glsl.ts); a texel outside them (in the
 * whole-tile fallback) or in a block of other sequences, or whose 4 keys are all hidden, is
 * written −∞ without reading q or k.
 * q packed [H·hd4, B·Lq], k packed [KVH·hd4, B·keyCapacity], pad, ids flat [B, Lk], am flat [Lq, Lk].
 */
export function fusedScoresSource(v: FusedVariant): string {
  return `${header(v)}
uniform sampler2D uQ; uniform vec2 uQSize;
uniform sampler2D uK; uniform vec2 uKSize;
${v.hasPadding ? 'uniform sampler2D uPad; uniform vec2 uPadSize;' : ''}
${v.hasAttnMask ? 'uniform sampler2D uAm; uniform vec2 uAmSize;' : ''}
uniform float uCap; uniform float uScale;
${v.softcap ? `uniform float uSoftcap;\n${TANH}` : ''}
${v.alibi ? `uniform float uSlopes[H];\n${perHead('uSlopes')}` : ''}
float dot4(vec4 a, vec4 b, float acc) {
  acc += a.x * b.x; acc += a.y * b.y; acc += a.z * b.z; acc += a.w * b.w;
  return acc;
}
void main() {
  float j4 = floor(gl_FragCoord.x);
  float row = uRowStart + floor(gl_FragCoord.y);
  if (row >= uRows) { gl_FragColor = vec4(uNegInf); return; }
  ${rowLines}
  if (!inSpan(rowSpan(b, i), j4)) { gl_FragColor = vec4(uNegInf); return; }
  float sinkEnd; float start; float end;
  visibleKeys(i, sinkEnd, start, end);
  float j0 = 4.0 * j4;
  vec4 j = vec4(j0) + vec4(0.0, 1.0, 2.0, 3.0);
  // 1.0 where key j is hidden, componentwise (vector compares: no per-key branches).
  vec4 hidden = max(vec4(lessThan(j, vec4(start))), vec4(greaterThanEqual(j, vec4(end))))
              * vec4(greaterThanEqual(j, vec4(sinkEnd)));
  ${
    v.sequenceIds
      ? `float qid = queryId(b, i);
  if (blockHidden(b, floor(j4 / ${SEQ_BLOCK4}.0), qid)) { gl_FragColor = vec4(uNegInf); return; }
  for (int m = 0; m < 4; m++) {
    float jm = j0 + float(m);
    if (jm < uLk && flatAt(uIds, uIdsSize, b * uLk + jm) != qid) { ${setComponent('hidden', '1.0')} }
  }`
      : ''
  }
  ${
    v.hasPadding
      ? `for (int m = 0; m < 4; m++) {
    float jm = j0 + float(m);
    if (jm < uLk && flatAt(uPad, uPadSize, b * uLk + jm) != 0.0) { ${setComponent('hidden', '1.0')} }
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
  ${v.softcap ? 's = uSoftcap * tanhStable(s / uSoftcap);' : ''}
  ${
    v.alibi
      ? `// Key positions: row j past the sink rows of a window cache is position j + keyOffset, and
  // a wrapped ring's rows before uRingSplit are uRingSize further on.
  vec4 past = vec4(greaterThanEqual(j, vec4(uSinkTokens)));
  vec4 pj = j + past * (uKeyOffset + uRingSize * vec4(lessThan(j, vec4(uRingSplit))));
  s -= uSlopesOf(h) * abs(vec4(uQueryOffset + i) - pj);`
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
 * Fused pass 2: per tile row, (m, l) = (max_j S, Σ_j exp(S − m)) over the row's spans only; with sink logits the head's sink joins the max and adds exp(sink_h − m) to l (it carries
 * no value); (−∞, 0) for a row with no visible key. Sums in key order, as the row softmax does.
 * Written to stats [2, tileRows/2] (tile row = 2y + x): a 1-texel-wide target would leave half
 * of every 2×2 fragment quad idle.
 */
export const STATS_WIDTH = 2;
export function fusedStatsSource(v: FusedVariant): string {
  const qid = v.sequenceIds ? 'float qid = queryId(b, i);' : '';
  return `${header(v)}
uniform sampler2D uS; uniform vec2 uSSize;
${v.sinks ? `uniform float uSinks[H];\n${perHead('uSinks')}` : ''}
void main() {
  float y = floor(gl_FragCoord.y) * ${STATS_WIDTH}.0 + floor(gl_FragCoord.x);
  float row = uRowStart + y;
  if (row >= uRows) { gl_FragColor = vec4(uNegInf, 0.0, 0.0, 0.0); return; }
  ${rowLines}
  ${qid}
  float m = uNegInf;
  ${forVisibleTexels(v, 'vec4 s = texel(uS, uSSize, j4, y); m = max(m, max(max(s.x, s.y), max(s.z, s.w)));')}
  float l = 0.0;
  if (m > -3.0e38) {
    ${v.sinks ? 'float sink = uSinksOf(h);\n    m = max(m, sink);\n    l = exp(sink - m);' : ''}
    ${forVisibleTexels(v, 'vec4 e = exp(texel(uS, uSSize, j4, y) - m); l += e.x; l += e.y; l += e.z; l += e.w;')}
  }
  gl_FragColor = vec4(m, l, 0.0, 0.0);
}`;
}

/**
 * With returnLse, after pass 2: lse [B, H, Lq] as a flat texture (one row per texel, in .r), drawn
 * over the texels of this tile's rows: lse = m + log l, the log of the row's softmax denominator
 * (the sink logit included); a row with no visible key gets −∞, or sink_h with sink logits.
 */
export function fusedLseSource(v: FusedVariant): string {
  return `${PRELUDE}
${defines(v)}
uniform sampler2D uStats; uniform vec2 uStatsSize;
uniform float uRowStart; uniform float uDstW; uniform float uNegInf;
${v.sinks ? `uniform float uSinks[H];\n${perHead('uSinks')}` : ''}
void main() {
  float n = floor(gl_FragCoord.y) * uDstW + floor(gl_FragCoord.x);
  float local = n - uRowStart;
  float sy = floor((local + 0.5) / ${STATS_WIDTH}.0);
  vec4 st = texel(uStats, uStatsSize, local - sy * ${STATS_WIDTH}.0, sy);
  float bh = floor((n + 0.5) / float(LQ));
  float h = bh - floor((bh + 0.5) / float(H)) * float(H);
  float lse = st.y > 0.0 ? st.x + log(st.y) : ${v.sinks ? 'uSinksOf(h)' : 'uNegInf'};
  gl_FragColor = vec4(lse, 0.0, 0.0, 0.0);
}`;
}

/**
 * Fused pass 3: P = exp(S − m) / l → P [ceil(Lk/4), tileRows]; 0 where l = 0 (no visible key)
 * and, without reading S, on texels outside the row's spans or in blocks of other sequences
 * (pass 4 never reads them). Drawn like pass 1.
 */
export function fusedProbsSource(v: FusedVariant): string {
  return `${header(v)}
uniform sampler2D uS; uniform vec2 uSSize;
uniform sampler2D uStats; uniform vec2 uStatsSize;
void main() {
  float j4 = floor(gl_FragCoord.x);
  float y = floor(gl_FragCoord.y);
  float row = uRowStart + y;
  if (row >= uRows) { gl_FragColor = vec4(0.0); return; }
  ${rowLines}
  if (!inSpan(rowSpan(b, i), j4)) { gl_FragColor = vec4(0.0); return; }
  ${v.sequenceIds ? `if (blockHidden(b, floor(j4 / ${SEQ_BLOCK4}.0), queryId(b, i))) { gl_FragColor = vec4(0.0); return; }` : ''}
  float sy = floor((y + 0.5) / ${STATS_WIDTH}.0);
  vec4 st = texel(uStats, uStatsSize, y - sy * ${STATS_WIDTH}.0, sy);
  if (st.y <= 0.0) { gl_FragColor = vec4(0.0); return; }
  gl_FragColor = exp(texel(uS, uSSize, j4, y) - st.x) / st.y;
}`;
}

/**
 * Before pass 4, once per call: v packed [KVH·hd4, B·keyCapacity] → vT [ceil(keyCapacity/4), B·KVH·hd],
 * texel (j4, (b·KVH + kvh)·hd + c) = v[b, 4j4 … 4j4+3, kvh, c] (0 past keyCapacity), so pass 4
 * walks each value row along memory instead of striding down a column.
 */
export function transposeValuesSource(hd4: number, KVH: number, hd: number): string {
  return `${PRELUDE}
uniform sampler2D uV; uniform vec2 uVSize;
uniform float uCap;
void main() {
  float j0 = 4.0 * floor(gl_FragCoord.x);
  float row = floor(gl_FragCoord.y);
  float b = floor((row + 0.5) / ${KVH * hd}.0);
  float ch = row - b * ${KVH * hd}.0;
  float kvh = floor((ch + 0.5) / ${hd}.0);
  float c = ch - kvh * ${hd}.0;
  float x4 = floor((c + 0.5) / 4.0);
  float comp = c - 4.0 * x4;
  float x = kvh * ${hd4}.0 + x4;
  vec4 o = vec4(0.0);
  for (int m = 0; m < 4; m++) {
    float j = j0 + float(m);
    if (j < uCap) {
      vec4 t = texel(uV, uVSize, x, b * uCap + j);
      float val = comp < 0.5 ? t.x : (comp < 1.5 ? t.y : (comp < 2.5 ? t.z : t.w));
      if (m == 0) o.x = val; else if (m == 1) o.y = val; else if (m == 2) o.z = val; else o.w = val;
    }
  }
  gl_FragColor = o;
}`;
}

/**
 * Fused pass 4: heads packed [H·hd4, B·Lq], drawn per (b, h) segment of the tile (a rectangle
 * of that head's hd4 columns and its rows i0 … i1−1):
 *   heads[b, i, h, c] = Σ_j P[row, j]·v[b, j, kvh, c],  c = 4c4 … 4c4+3 (0 past hd)
 * over the row's visible texels only, with vT from transposeValuesSource. Keys in order; P is 0
 * at hidden keys, and vT is finite everywhere.
 */
export function fusedOutputSource(v: FusedVariant, hd: number, KVH: number): string {
  const outs = ['x', 'y', 'z', 'w'];
  const body = `vec4 pv = texture2D(uP, vec2((j4 + 0.5) * du, pv0));
    float u = (j4 + 0.5) * dvu;
    ${[0, 1, 2, 3]
      .map(
        (m) => `vec4 t${m} = texture2D(uVT, vec2(u, r${m}));
    acc.${outs[m]} += pv.x * t${m}.x; acc.${outs[m]} += pv.y * t${m}.y; acc.${outs[m]} += pv.z * t${m}.z; acc.${outs[m]} += pv.w * t${m}.w;`,
      )
      .join('\n    ')}`;
  return `${header(v)}
#define HD ${hd}.0
uniform sampler2D uP; uniform vec2 uPSize;
uniform sampler2D uVT; uniform vec2 uVTSize;
void main() {
  float x = floor(gl_FragCoord.x);
  float y = floor(gl_FragCoord.y);
  float b = floor((y + 0.5) / float(LQ));
  float i = y - b * float(LQ);
  float h = floor((x + 0.5) / float(HD4));
  float c0 = 4.0 * (x - h * float(HD4));
  float kvh = floor((h + 0.5) / float(GROUP));
  float local = (b * float(H) + h) * float(LQ) + i - uRowStart;
  ${v.sequenceIds ? 'float qid = queryId(b, i);' : ''}
  // Coordinates are base + index · step: no per-read division, and no drift from summing steps.
  float pv0 = (local + 0.5) / uPSize.y;
  float du = 1.0 / uPSize.x;
  float dvu = 1.0 / uVTSize.x;
  float vRow = (b * ${KVH}.0 + kvh) * HD + c0;
  ${[0, 1, 2, 3].map((m) => `float r${m} = (min(vRow + ${m}.0, (b * ${KVH}.0 + kvh) * HD + HD - 1.0) + 0.5) / uVTSize.y;`).join('\n  ')}
  vec4 acc = vec4(0.0);
  ${forVisibleTexels(v, body)}
  gl_FragColor = vec4(acc.x, c0 + 1.0 < HD ? acc.y : 0.0, c0 + 2.0 < HD ? acc.z : 0.0, c0 + 3.0 < HD ? acc.w : 0.0);
}`;
}
