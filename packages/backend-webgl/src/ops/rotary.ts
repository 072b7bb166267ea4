import { type RotaryAttrs, rotaryTables } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod } from './common.js';

/**
 * RoPE on x [B, L, heads·hd] → same shape, one thread per value (core/graph.ts RotaryAttrs):
 *   x1' = x1·cos(p·θ_c) − x2·sin(p·θ_c),  x2' = x2·cos(p·θ_c) + x1·sin(p·θ_c),  p = offset + l.
 * 'half' pairs channel c with c + hd/2, 'interleaved' pairs 2c with 2c + 1.
 * cos, sin [L, hd/2] are tables the host computes in float64 (`rotaryTables`) and rounds once:
 * GLSL float32 angles p·θ_c lose ~1e-5 absolute at p ≈ 500, the tables lose nothing, and the
 * offset lives only in the table data, so one kernel serves every session step of L tokens.
 * With explicit positions (positionIds) the tables have one row per (b, l): [B·L, hd/2].
 */
export function rotarySpec(attrs: RotaryAttrs): KernelSpec {
  const { batch: B, length: L, heads, headDim: hd, pairing } = attrs;
  // The table row: l (positions offset + l, shared by every batch) or b·L + l (positionIds).
  const perRow = attrs.positions !== undefined;
  const half = hd / 2;
  // Partner channel and the angle index cc for channel c of a head, per pairing.
  const pairLines =
    pairing === 'half'
      ? `const first = c < this.constants.half ? 1.0 : 0.0;
  const cc = first > 0.5 ? c : c - this.constants.half;
  const partner = first > 0.5 ? t + this.constants.half : t - this.constants.half;`
      : `${divmod('cc', 'odd', 'c', 'two')}
  const first = odd < 0.5 ? 1.0 : 0.0;
  const partner = first > 0.5 ? t + 1.0 : t - 1.0;`;
  return {
    name: `rotary.${pairing}${perRow ? '.ids' : ''}`,
    output: B * L * heads * hd,
    constants: { L, hd, half, width: heads * hd, two: 2 },
    source: `function rotary(x, cosT, sinT) {
  const t = this.thread.x;
  ${divmod('row', 'within', 't', 'width')}
  ${divmod('bb', 'l', 'row', 'L')}
  ${divmod('head', 'c', 'within', 'hd')}
  ${pairLines}
  const a = ${perRow ? 'row' : 'l'} * this.constants.half + cc;
  const co = cosT[a];
  const si = sinT[a];
  if (first > 0.5) {
    return x[t] * co - x[partner] * si;
  }
  return x[t] * co + x[partner] * si;
}`,
  };
}

/** RoPE on x [B, L, heads·hd] (gpu.js; the cos/sin tables are computed on the host). */
export function rotary(ctx: Textures, x: WebGLTensor, attrs: RotaryAttrs): WebGLTensor {
  const { cos, sin } = rotaryTables(attrs);
  return ctx.run(rotarySpec(attrs), x.shape, [ctx.tex(x), cos, sin]);
}
