import type { MaskAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import { divmod, headConstants, rowToBHI } from './common.js';

export interface MaskVariant {
  readonly causal: boolean;
  readonly hasPadding: boolean;
  readonly hasAttnMask: boolean;
}

/**
 * The GLSL lines that set `hidden` for key j of row (b, i): the causal future
 * j > i + (Lk − Lq) (bottom-right aligned, so the last query sees every key) and padding keys
 * (keyPaddingMask[b, j] nonzero). Shared by `mask` and the fused scores pass.
 */
export function hiddenLines(v: MaskVariant): string {
  const lines = ['let hidden = 0.0;'];
  if (v.causal) lines.push('if (j > i + this.constants.Lk - this.constants.Lq) { hidden = 1.0; }');
  if (v.hasPadding) lines.push('if (pad[b * this.constants.Lk + j] !== 0.0) { hidden = 1.0; }');
  return lines.join('\n  ');
}

export function maskArgs(v: MaskVariant): string {
  return `${v.hasPadding ? ', pad' : ''}${v.hasAttnMask ? ', am' : ''}`;
}

export function variantName(base: string, v: MaskVariant): string {
  return `${base}${v.causal ? '+causal' : ''}${v.hasPadding ? '+pad' : ''}${v.hasAttnMask ? '+am' : ''}`;
}

/**
 * masked[b, h, i, j] = −∞ where key j is hidden from query i, else scaled (+ attnMask[i, j]).
 * scaled [B, H, Lq, Lk], keyPaddingMask [B, Lk], attnMask [Lq, Lk] → [B, H, Lq, Lk].
 * `negInf` is a uniform holding −Infinity: GLSL has no infinity literal (gpu.js writes FLT_MAX
 * for `Infinity`, which would not read back as −∞).
 */
export function maskSpec(attrs: MaskAttrs, v: MaskVariant): KernelSpec {
  return {
    name: variantName('mask', v),
    output: attrs.batch * attrs.numHeads * attrs.queryLength * attrs.keyLength,
    constants: headConstants(attrs),
    source: `function mask(s${maskArgs(v)}, negInf) {
  const t = this.thread.x;
  ${divmod('row', 'j', 't', 'Lk')}
  ${rowToBHI('row')}
  ${hiddenLines(v)}
  if (hidden > 0.5) {
    return negInf;
  }
  return s[t]${v.hasAttnMask ? ' + am[i * this.constants.Lk + j]' : ''};
}`,
  };
}
