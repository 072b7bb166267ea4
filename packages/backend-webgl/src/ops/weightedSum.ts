import type { WeightedSumAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod, headConstants } from './common.js';

/**
 * The GLSL lines that decompose a heads index t = ((b·Lq + i)·H + h)·hd + c and locate the
 * score row (b, h, i) and the first element of V's column c for that head.
 */
export function headsIndexLines(): string {
  return [
    divmod('bih', 'c', 't', 'hd'),
    divmod('bi', 'h', 'bih', 'H'),
    divmod('b', 'i', 'bi', 'Lq'),
    'const row = (b * this.constants.H + h) * this.constants.Lq + i;',
    'const kvh = Math.floor((h + 0.5) / this.constants.group);',
    'const vStride = this.constants.KVH * this.constants.hd;',
    'const vBase = b * this.constants.cap * vStride + kvh * this.constants.hd + c;',
  ].join('\n  ');
}

/**
 * ΔE per head (v may be a KV cache [B, keyCapacity, KVH·hd]: batch b starts at row b·cap), one thread per (b, i, h, c):
 *   heads[b, i, h·hd + c] = Σ_j weights[b, h, i, j] · v[b, j, kvh·hd + c]
 * weights [B, H, Lq, Lk], v [B, Lk, KVH·hd] → heads [B, Lq, H·hd] (concat(heads)).
 */
export function weightedSumSpec(attrs: WeightedSumAttrs): KernelSpec {
  return {
    name: 'weightedSum',
    output: attrs.batch * attrs.queryLength * attrs.numHeads * attrs.headDim,
    constants: headConstants(attrs),
    source: `function weightedSum(w, v) {
  const t = this.thread.x;
  ${headsIndexLines()}
  const wOff = row * this.constants.Lk;
  let acc = 0.0;
  for (let j = 0; j < this.constants.Lk; j++) {
    acc += w[wOff + j] * v[vBase + j * vStride];
  }
  return acc;
}`,
  };
}

/** weights [B, H, Lq, Lk] · v [B, Lk, KVH·hd] → heads [B, Lq, H·hd] (gpu.js). */
export function weightedSum(ctx: Textures, w: WebGLTensor, v: WebGLTensor, attrs: WeightedSumAttrs): WebGLTensor {
  const shape = [attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim];
  return ctx.run(weightedSumSpec(attrs), shape, [ctx.tex(w), ctx.tex(v)]);
}
