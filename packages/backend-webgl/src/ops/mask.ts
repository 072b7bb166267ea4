import type { MaskAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod, headConstants, rowToBHI } from './common.js';

export interface MaskVariant {
  readonly causal: boolean;
  readonly hasPadding: boolean;
  readonly hasAttnMask: boolean;
  /** A sliding window (its width is the runtime argument `win`). */
  readonly window: boolean;
  /** ALiBi: the per-head slopes [H] are the argument `slopes`. */
  readonly alibi: boolean;
}

/** The variant of a mask/fused call: which inputs and ScoreModifiers it has. */
export function maskVariant(
  attrs: { causal: boolean; window?: number; alibiSlopes?: readonly number[] },
  hasPadding: boolean,
  hasAttnMask: boolean,
): MaskVariant {
  return {
    causal: attrs.causal,
    hasPadding,
    hasAttnMask,
    window: attrs.window !== undefined,
    alibi: attrs.alibiSlopes !== undefined,
  };
}

/**
 * The runtime arguments after the masks, in order: negInf, qPos (queryOffset: query row 0's
 * position), win (window width, unused without one). Uniforms, so a session's steps at different
 * offsets share one compiled kernel.
 */
export function modifierArgs(attrs: { queryOffset?: number; keyOffset?: number; window?: number }): number[] {
  return [Number.NEGATIVE_INFINITY, rowQueryOffset(attrs), attrs.window ?? 0];
}

/**
 * The query position the programs compare key rows j with. A compacted window cache holds key
 * positions j + keyOffset (core's ScoreModifiers; webgl refuses sinkTokens, so no row is exempt),
 * so p − (j + keyOffset) = (p − keyOffset) − j: the window and ALiBi read rows directly with the
 * query position shifted by keyOffset (causal is bottom-right aligned in rows already).
 */
export function rowQueryOffset(attrs: { queryOffset?: number; keyOffset?: number }): number {
  return (attrs.queryOffset ?? 0) - (attrs.keyOffset ?? 0);
}

/**
 * The GLSL lines that set `hidden` for key j of row (b, i): the causal future
 * j > i + (Lk − Lq) (bottom-right aligned, so the last query sees every key) and padding keys
 * (keyPaddingMask[b, j] nonzero), and keys outside the window. Shared by `mask` and the fused scores pass.
 */
export function hiddenLines(v: MaskVariant): string {
  const lines = ['let hidden = 0.0;', 'const p = qPos + i;'];
  if (v.causal) lines.push('if (j > i + this.constants.Lk - this.constants.Lq) { hidden = 1.0; }');
  // Window w (core/graph.ts ScoreModifiers): keys p−w+1 … p when causal, |p − j| < w otherwise.
  if (v.window) {
    lines.push('if (j < p - win + 1.0) { hidden = 1.0; }');
    lines.push(v.causal ? 'if (j > p) { hidden = 1.0; }' : 'if (j >= p + win) { hidden = 1.0; }');
  }
  if (v.hasPadding) lines.push('if (pad[b * this.constants.Lk + j] !== 0.0) { hidden = 1.0; }');
  return lines.join('\n  ');
}

export function maskArgs(v: MaskVariant): string {
  return `${v.hasPadding ? ', pad' : ''}${v.hasAttnMask ? ', am' : ''}${v.alibi ? ', slopes' : ''}`;
}

export function variantName(base: string, v: MaskVariant): string {
  return `${base}${v.causal ? '+causal' : ''}${v.hasPadding ? '+pad' : ''}${v.hasAttnMask ? '+am' : ''}${v.window ? '+window' : ''}${v.alibi ? '+alibi' : ''}`;
}

/**
 * `sc` (the scaled score of a visible key) after ALiBi and attnMask, in the reference's order:
 * sc − slope_h·|p − j|, then + attnMask[i, j].
 */
export function modifiedScoreExpr(v: MaskVariant, sc: string): string {
  let e = sc;
  if (v.alibi) e = `(${e} - slopes[h] * Math.abs(p - j))`;
  if (v.hasAttnMask) e = `${e} + am[i * this.constants.Lk + j]`;
  return e;
}

/**
 * masked[b, h, i, j] = −∞ where key j is hidden from query i (causal, padding, window), else
 * scaled (− ALiBi slope_h·|p − j|) (+ attnMask[i, j]), p = queryOffset + i.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk], attnMask [Lq, Lk] → [B, H, Lq, Lk].
 * `negInf` is a uniform holding −Infinity: GLSL has no infinity literal (gpu.js writes FLT_MAX
 * for `Infinity`, which would not read back as −∞).
 */
export function maskSpec(attrs: MaskAttrs, v: MaskVariant): KernelSpec {
  return {
    name: variantName('mask', v),
    output: attrs.batch * attrs.numHeads * attrs.queryLength * attrs.keyLength,
    constants: headConstants(attrs),
    source: `function mask(s${maskArgs(v)}, negInf, qPos, win) {
  const t = this.thread.x;
  ${divmod('row', 'j', 't', 'Lk')}
  ${rowToBHI('row')}
  ${hiddenLines(v)}
  if (hidden > 0.5) {
    return negInf;
  }
  return ${modifiedScoreExpr(v, 's[t]')};
}`,
  };
}

/** scaled [B, H, Lq, Lk] (+ masks, ALiBi, window) → masked (gpu.js). */
export function mask(
  ctx: Textures,
  s: WebGLTensor,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: MaskAttrs,
): WebGLTensor {
  const v = maskVariant(attrs, pad !== null, am !== null);
  return ctx.run(maskSpec(attrs, v), s.shape, [ctx.tex(s), ...maskInputs(ctx, pad, am, attrs)]);
}

/**
 * The kernel arguments after the scores that the masking code (`hiddenLines`,
 * `modifiedScoreExpr`) reads, in `maskArgs` order: the masks present, the ALiBi slopes, then
 * the query offset and window. Shared by `mask` and the gpu.js fused scores.
 */
export function maskInputs(
  ctx: Textures,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: { alibiSlopes?: readonly number[]; queryOffset?: number; keyOffset?: number; window?: number },
): unknown[] {
  const args: unknown[] = [];
  if (pad) args.push(ctx.tex(pad));
  if (am) args.push(ctx.tex(am));
  if (attrs.alibiSlopes) args.push(Float32Array.from(attrs.alibiSlopes));
  args.push(...modifierArgs(attrs));
  return args;
}
