import { type MaskAttrs, type ScoreModifiers, sizeOf } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';
import { headFields, writeHead } from './scores.js';

/** The masking fields shared by `mask` and `fusedAttention` (window 0 = none). */
export const maskFields = ['causal: u32', 'window: u32', 'qoff: u32'];
export function writeMask(params: Params, attrs: ScoreModifiers & { causal: boolean }): Params {
  return params
    .u(attrs.causal ? 1 : 0)
    .u(attrs.window ?? 0)
    .u(rowQueryOffset(attrs));
}

/**
 * The query position the kernels compare key rows j with. A compacted window cache holds key
 * positions j + keyOffset (core's ScoreModifiers; webgpu refuses sinkTokens, so no row is exempt),
 * so pos − (j + keyOffset) = (pos − keyOffset) − j: the window and ALiBi read rows directly with
 * the query position shifted by keyOffset (causal is bottom-right aligned in rows already).
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

export interface MaskInputs {
  readonly pad: boolean;
  readonly am: boolean;
  readonly alibi: boolean;
}
export const maskKey = (m: MaskInputs) => `${m.pad ? 'p' : ''}${m.am ? 'm' : ''}${m.alibi ? 'a' : ''}`;
/** The optional buffers in binding order after the kernel's own inputs. */
export const maskBuffers = (m: MaskInputs) => [
  ...(m.pad ? ['pad'] : []),
  ...(m.am ? ['am'] : []),
  ...(m.alibi ? ['slopes'] : []),
];

/**
 * masked[b, h, i, j] = scaled − slope_h·|pos − j| (ALiBi) + attnMask[i, j], or −∞ where the key
 * is hidden: outside visibleKeys(i), keyPaddingMask[b, j] ≠ 0, or attnMask[i, j] = −∞.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk], attnMask [Lq, Lk], slopes [H]. One thread per score.
 */
const wgsl = (
  m: MaskInputs,
) => `${declare(['n: u32', ...headFields, ...maskFields], ['s', ...maskBuffers(m), 'out:rw'])}
${infinity}
${visibleKeys}
${perOutput('p.n')}
  let j = idx % p.Lk;
  let row = idx / p.Lk;
  let i = row % p.Lq;
  let h = (row / p.Lq) % p.H;
  let b = row / (p.Lq * p.H);
  let range = visibleKeys(i);
  var hidden = j < range.x || j >= range.y;
  ${m.pad ? 'hidden = hidden || pad[b * p.Lk + j] != 0.0;' : ''}
  ${m.am ? 'let amv = am[i * p.Lk + j]; hidden = hidden || isHidden(amv);' : ''}
  if (hidden) { out[idx] = negInf(); return; }
  var v = s[idx];
  ${m.alibi ? 'v -= slopes[h] * abs(f32(p.qoff + i) - f32(j));' : ''}
  ${m.am ? 'v += amv;' : ''}
  out[idx] = v;
}`;

export function mask(
  rt: Runtime,
  s: WebGPUTensor,
  pad: WebGPUTensor | null,
  am: WebGPUTensor | null,
  slopes: WebGPUTensor | null,
  attrs: MaskAttrs,
): WebGPUTensor {
  const m: MaskInputs = { pad: pad !== null, am: am !== null, alibi: slopes !== null };
  const params = new Params(1 + headFields.length + maskFields.length).u(sizeOf(s.shape));
  writeMask(writeHead(params, attrs), attrs);
  return elementwise(rt, `mask:${maskKey(m)}`, () => wgsl(m), params, [s, pad, am, slopes], s.shape);
}
