import type { MaskAttrs, ScoreModifiers } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod, headConstants, rowToBHI } from './common.js';

export interface MaskVariant {
  readonly causal: boolean;
  readonly hasPadding: boolean;
  readonly hasAttnMask: boolean;
  /** Packed sequences: the ids [B, Lk] are the argument `ids`. */
  readonly sequenceIds: boolean;
  /** A sliding window (its width is the runtime argument `win`). */
  readonly window: boolean;
  /** ALiBi: the per-head slopes [H] are the argument `slopes`. */
  readonly alibi: boolean;
  /** Softcapping (c is the runtime argument `softc`). */
  readonly softcap: boolean;
  /** Sink tokens next to the window (their count is the runtime argument `nSink`). */
  readonly sinkTokens: boolean;
}

type VariantAttrs = Pick<ScoreModifiers, 'window' | 'alibiSlopes' | 'softcap' | 'sinkTokens'> & { causal: boolean };

/** The variant of a mask/fused call: which inputs and ScoreModifiers it has. */
export function maskVariant(
  attrs: VariantAttrs,
  hasPadding: boolean,
  hasAttnMask: boolean,
  hasSequenceIds: boolean,
): MaskVariant {
  return {
    causal: attrs.causal,
    hasPadding,
    hasAttnMask,
    sequenceIds: hasSequenceIds,
    window: attrs.window !== undefined,
    alibi: attrs.alibiSlopes !== undefined,
    softcap: attrs.softcap !== undefined,
    sinkTokens: attrs.sinkTokens !== undefined,
  };
}

/**
 * The runtime arguments after the masks, in order: negInf, qPos (queryOffset: query row 0's
 * position), kOff (keyOffset: a window cache's row j ≥ sinkTokens is position j + kOff), nSink (sinkTokens), win (window width), softc (softcap), rSplit and rSize (a
 * wrapped window ring's keyRing: rows j < rSplit past the sinks are rSize further on); 0 where
 * unused. Uniforms, so a session's steps at different offsets share one compiled kernel.
 */
export function modifierArgs(attrs: ScoreModifiers): number[] {
  return [
    Number.NEGATIVE_INFINITY,
    attrs.queryOffset ?? 0,
    attrs.keyOffset ?? 0,
    attrs.sinkTokens ?? 0,
    attrs.window ?? 0,
    attrs.softcap ?? 0,
    attrs.keyRing?.split ?? 0,
    attrs.keyRing?.size ?? 0,
  ];
}

/**
 * The GLSL lines that set `hidden` for key j of row (b, i): the causal future
 * j > i + (Lk − Lq) (bottom-right aligned, so the last query sees every key), keys outside the
 * window (compared in rows: p − kOff, p = qPos + i) unless they are sink tokens (j < nSink),
 * padding keys (keyPaddingMask[b, j] nonzero) and keys of another sequence (ids[b, j] ≠ the
 * query row's id ids[b, i + Lk − Lq]). Shared by `mask` and the gpu.js fused scores pass.
 */
export function hiddenLines(v: MaskVariant): string {
  const lines = ['let hidden = 0.0;', 'const p = qPos + i;'];
  if (v.causal) lines.push('if (j > i + this.constants.Lk - this.constants.Lq) { hidden = 1.0; }');
  // Window w (core/ops.ts ScoreModifiers): keys p−w+1 … p when causal, |p − j| < w otherwise.
  if (v.window) {
    lines.push('const pr = p - kOff;', 'let outside = 0.0;', 'if (j < pr - win + 1.0) { outside = 1.0; }');
    lines.push(v.causal ? 'if (j > pr) { outside = 1.0; }' : 'if (j >= pr + win) { outside = 1.0; }');
    if (v.sinkTokens) lines.push('if (j < nSink) { outside = 0.0; }');
    lines.push('if (outside > 0.5) { hidden = 1.0; }');
  }
  if (v.hasPadding) lines.push('if (pad[b * this.constants.Lk + j] !== 0.0) { hidden = 1.0; }');
  if (v.sequenceIds) {
    lines.push(
      'if (ids[b * this.constants.Lk + j] !== ids[b * this.constants.Lk + i + this.constants.Lk - this.constants.Lq]) { hidden = 1.0; }',
    );
  }
  return lines.join('\n  ');
}

export function maskArgs(v: MaskVariant): string {
  return `${v.hasPadding ? ', pad' : ''}${v.hasAttnMask ? ', am' : ''}${v.sequenceIds ? ', ids' : ''}${v.alibi ? ', slopes' : ''}`;
}

/** The runtime arguments' names, after `maskArgs` (see `modifierArgs`). */
export const MODIFIER_ARGS = 'negInf, qPos, kOff, nSink, win, softc, rSplit, rSize';

export function variantName(base: string, v: MaskVariant): string {
  const flags: [boolean, string][] = [
    [v.causal, 'causal'],
    [v.hasPadding, 'pad'],
    [v.hasAttnMask, 'am'],
    [v.sequenceIds, 'ids'],
    [v.window, 'window'],
    [v.alibi, 'alibi'],
    [v.softcap, 'softcap'],
    [v.sinkTokens, 'sinkTokens'],
  ];
  return base + flags.map(([on, name]) => (on ? `+${name}` : '')).join('');
}

/**
 * Lines that set `ms` to `sc` (the scaled score of a visible key) after softcap, ALiBi and
 * attnMask, in the reference's order: c·tanh(sc/c), − slope_h·|p − pj| (pj the key's position),
 * + attnMask[i, j]. tanh as in the packed pass 1: (1 − e^(−2|x|)) / (1 + e^(−2|x|)) with the
 * sign put back, which never overflows, and its series below |x| = 0.125.
 */
export function modifiedScoreLines(v: MaskVariant, sc: string): string {
  const lines = [`let ms = ${sc};`];
  if (v.softcap) {
    lines.push(
      'const sx = ms / softc;',
      'const ax = Math.abs(sx);',
      'let th = 0.0;',
      'if (ax < 0.125) {',
      '  const x2 = sx * sx;',
      '  th = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));',
      '} else {',
      '  const e = Math.exp(-2.0 * ax);',
      '  th = (1.0 - e) / (1.0 + e);',
      '}',
      'if (sx < 0.0) { th = -th; }',
      'ms = softc * th;',
    );
  }
  if (v.alibi) {
    lines.push('let pj = j + kOff;', 'if (j < rSplit) { pj = pj + rSize; }');
    if (v.sinkTokens) lines.push('if (j < nSink) { pj = j; }');
    lines.push('ms = ms - slopes[h] * Math.abs(p - pj);');
  }
  if (v.hasAttnMask) lines.push('ms = ms + am[i * this.constants.Lk + j];');
  return lines.join('\n  ');
}

/**
 * masked[b, h, i, j] = −∞ where key j is hidden from query i (causal, window outside the sink
 * tokens, padding, another sequence), else the scaled score after softcap, ALiBi and attnMask
 * (`modifiedScoreLines`), p = queryOffset + i.
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk], attnMask [Lq, Lk], sequenceIds [B, Lk] → [B, H, Lq, Lk].
 * `negInf` is a uniform holding −Infinity: GLSL has no infinity literal (gpu.js writes FLT_MAX
 * for `Infinity`, which would not read back as −∞).
 */
export function maskSpec(attrs: MaskAttrs, v: MaskVariant): KernelSpec {
  return {
    name: variantName('mask', v),
    output: attrs.batch * attrs.numHeads * attrs.queryLength * attrs.keyLength,
    constants: headConstants(attrs),
    source: `function mask(s${maskArgs(v)}, ${MODIFIER_ARGS}) {
  const t = this.thread.x;
  ${divmod('row', 'j', 't', 'Lk')}
  ${rowToBHI('row')}
  ${hiddenLines(v)}
  if (hidden > 0.5) {
    return negInf;
  }
  ${modifiedScoreLines(v, 's[t]')}
  return ms;
}`,
  };
}

/** scaled [B, H, Lq, Lk] (+ masks, ids, score modifiers) → masked (gpu.js). */
export function mask(
  ctx: Textures,
  s: WebGLTensor,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: MaskAttrs,
  ids: WebGLTensor | null,
): WebGLTensor {
  const v = maskVariant(attrs, pad !== null, am !== null, ids !== null);
  return ctx.run(maskSpec(attrs, v), s.shape, [ctx.tex(s), ...maskInputs(ctx, pad, am, ids, attrs)]);
}

/**
 * The kernel arguments after the scores that the masking code (`hiddenLines`,
 * `modifiedScoreLines`) reads, in `maskArgs` order: the masks and ids present, the ALiBi
 * slopes, then `modifierArgs`. Shared by `mask` and the gpu.js fused scores.
 */
export function maskInputs(
  ctx: Textures,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  ids: WebGLTensor | null,
  attrs: ScoreModifiers,
): unknown[] {
  const args: unknown[] = [];
  if (pad) args.push(ctx.tex(pad));
  if (am) args.push(ctx.tex(am));
  if (ids) args.push(ctx.tex(ids));
  if (attrs.alibiSlopes) args.push(Float32Array.from(attrs.alibiSlopes));
  args.push(...modifierArgs(attrs));
  return args;
}
