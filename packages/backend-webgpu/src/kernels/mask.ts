import { type MaskAttrs, type ScoreModifiers, sizeOf } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';
import { headFields, writeHead } from './scores.js';

/**
 * The masking fields shared by `mask` and `fusedAttention`: window 0 = none, sinkN the sink
 * tokens (0 = none), koff a window cache's keyOffset, rSplit and rSize a wrapped ring's
 * `keyRing` (size 0 = none), softcap c (read only by the pipelines built with it).
 */
export const maskFields = [
  'causal: u32',
  'window: u32',
  'qoff: u32',
  'sinkN: u32',
  'koff: u32',
  'rSplit: u32',
  'rSize: u32',
  'softcap: f32',
];
export function writeMask(params: Params, attrs: ScoreModifiers & { causal: boolean }): Params {
  return params
    .u(attrs.causal ? 1 : 0)
    .u(attrs.window ?? 0)
    .u(rowQueryOffset(attrs))
    .u(attrs.sinkTokens ?? 0)
    .u(attrs.keyOffset ?? 0)
    .u(attrs.keyRing?.split ?? 0)
    .u(attrs.keyRing?.size ?? 0)
    .f(attrs.softcap ?? 0);
}

/**
 * The query position the kernels compare key rows j with. A window cache holds key positions
 * j + keyOffset past its sink rows (core's ScoreModifiers), so pos − (j + keyOffset) =
 * (pos − keyOffset) − j: ALiBi reads those rows with the query position shifted by keyOffset;
 * the sink rows keep positions j and a wrapped ring's newer rows are w further (`keyShift`).
 * Never negative: it is the query's own row index.
 */
export function rowQueryOffset(attrs: ScoreModifiers): number {
  return (attrs.queryOffset ?? 0) - (attrs.keyOffset ?? 0);
}

/**
 * −∞ is stored and tested by its bit pattern: WGSL lets implementations assume float
 * arithmetic never meets infinities, so no shader computes with one.
 */
export const infinity = `
const NEG_INF = 0xff800000u;
fn isHidden(v: f32) -> bool { return bitcast<u32>(v) == NEG_INF; }
// A var, not a const: a constant −∞ is a shader compile error.
fn negInf() -> f32 { var bits = NEG_INF; return bitcast<f32>(bits); }`;

/**
 * The keys query row i may see before padding: [start, end). Causal keys stop at i + (Lk − Lq)
 * (bottom-right aligned); a window w keeps pos−w+1 … pos when causal, |pos − j| < w otherwise,
 * pos = qoff + i. Both ends grow with i, which is what lets the fused kernel bound a whole tile.
 */
export const visibleKeys = `
fn visibleKeys(i: u32) -> vec2u {
  var end = i32(p.Lk);
  if (p.causal != 0u) { end = clamp(i32(i) + i32(p.Lk) - i32(p.Lq) + 1, 0, i32(p.Lk)); }
  var start = 0;
  if (p.window != 0u) {
    let pos = i32(p.qoff + i);
    start = max(0, pos - i32(p.window) + 1);
    end = min(end, select(pos + i32(p.window), pos + 1, p.causal != 0u));
  }
  return vec2u(u32(start), u32(max(start, end)));
}`;

/**
 * The serving modifiers (issue #18), as in core's ScoreModifiers:
 * sinkEnd(i): with sinkTokens s, key rows [0, sinkEnd) stay visible to query row i besides its
 *   window (causal permitting); 0 without sink tokens.
 * keyShift(j): key row j's position minus keyOffset (the sink rows sit at their own positions,
 *   a wrapped ring's rows before rSplit rSize further), so |qoff + i − keyShift(j)| is ALiBi's
 *   |p − pj|.
 * softcapped(s): c·tanh(s/c) as c·sign(x)·(1 − e)/(1 + e), e = exp(−2|x|) ≤ 1, which never
 *   overflows (tanh's own e^{2x} form does for |x| > 44 on some drivers).
 */
export const servingFns = `
fn sinkEnd(i: u32) -> u32 {
  var e = i32(min(p.sinkN, p.Lk));
  if (p.causal != 0u) { e = clamp(i32(i) + i32(p.Lk) - i32(p.Lq) + 1, 0, e); }
  return u32(e);
}
fn keyShift(j: u32) -> i32 {
  return select(i32(j) + select(0, i32(p.rSize), j < p.rSplit), i32(j) - i32(p.koff), j < p.sinkN);
}
fn alibiDistance(i: u32, j: u32) -> f32 { return abs(f32(i32(p.qoff + i) - keyShift(j))); }
fn softcapped(s: f32) -> f32 {
  let x = s / p.softcap;
  let e = exp(-2.0 * abs(x));
  return p.softcap * sign(x) * (1.0 - e) / (1.0 + e);
}`;

/** Which optional inputs and modifiers a pipeline is built with (its cache key says which). */
export interface MaskInputs {
  readonly pad: boolean;
  readonly am: boolean;
  readonly alibi: boolean;
  /** sequenceIds [B, Lk]: packed sequences. */
  readonly seq: boolean;
  readonly softcap: boolean;
}
export const maskInputs = (
  pad: WebGPUTensor | null,
  am: WebGPUTensor | null,
  slopes: WebGPUTensor | null,
  ids: WebGPUTensor | null,
  attrs: ScoreModifiers,
): MaskInputs => ({
  pad: pad !== null,
  am: am !== null,
  alibi: slopes !== null,
  seq: ids !== null,
  softcap: attrs.softcap !== undefined,
});
export const maskKey = (m: MaskInputs) =>
  `${m.pad ? 'p' : ''}${m.am ? 'm' : ''}${m.alibi ? 'a' : ''}${m.seq ? 'i' : ''}${m.softcap ? 'c' : ''}`;
/** The optional buffers in binding order after the kernel's own inputs (pad, am, slopes, ids). */
export const maskBuffers = (m: MaskInputs) => [
  ...(m.pad ? ['pad'] : []),
  ...(m.am ? ['am'] : []),
  ...(m.alibi ? ['slopes'] : []),
  ...(m.seq ? ['ids'] : []),
];

/**
 * masked[b, h, i, j] = softcap(scaled) − slope_h·|pos − pos_j| (ALiBi) + attnMask[i, j], or −∞
 * where the key is hidden: outside visibleKeys(i) and the sink tokens, keyPaddingMask[b, j] ≠ 0,
 * sequenceIds[b, j] ≠ the query's id (row i + Lk − Lq), or attnMask[i, j] = −∞.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk], attnMask [Lq, Lk], slopes [H], sequenceIds
 * [B, Lk]. One thread per score.
 */
const wgsl = (
  m: MaskInputs,
) => `${declare(['n: u32', ...headFields, ...maskFields], ['s', ...maskBuffers(m), 'out:rw'])}
${infinity}
${visibleKeys}
${servingFns}
${perOutput('p.n')}
  let j = idx % p.Lk;
  let row = idx / p.Lk;
  let i = row % p.Lq;
  let h = (row / p.Lq) % p.H;
  let b = row / (p.Lq * p.H);
  let range = visibleKeys(i);
  var hidden = j >= sinkEnd(i) && (j < range.x || j >= range.y);
  ${m.pad ? 'hidden = hidden || pad[b * p.Lk + j] != 0.0;' : ''}
  ${m.seq ? 'hidden = hidden || ids[b * p.Lk + j] != ids[b * p.Lk + i + p.Lk - p.Lq];' : ''}
  ${m.am ? 'let amv = am[i * p.Lk + j]; hidden = hidden || isHidden(amv);' : ''}
  if (hidden) { out[idx] = negInf(); return; }
  var v = s[idx];
  ${m.softcap ? 'v = softcapped(v);' : ''}
  ${m.alibi ? 'v -= slopes[h] * alibiDistance(i, j);' : ''}
  ${m.am ? 'v += amv;' : ''}
  out[idx] = v;
}`;

export function mask(
  rt: Runtime,
  s: WebGPUTensor,
  pad: WebGPUTensor | null,
  am: WebGPUTensor | null,
  slopes: WebGPUTensor | null,
  ids: WebGPUTensor | null,
  attrs: MaskAttrs,
): WebGPUTensor {
  const m = maskInputs(pad, am, slopes, ids, attrs);
  const params = new Params(1 + headFields.length + maskFields.length).u(sizeOf(s.shape));
  writeMask(writeHead(params, attrs), attrs);
  return elementwise(rt, `mask:${maskKey(m)}`, () => wgsl(m), params, [s, pad, am, slopes, ids], s.shape);
}
