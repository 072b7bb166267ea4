import type { ScoresAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod, headConstants, rowToBHI } from './common.js';

/**
 * Raw scores, one thread per (b, h, i, j):
 *   out[b, h, i, j] = Σ_c q[b, i, h·hd + c] · k[b, j, kvh·hd + c],  kvh = floor(h / (H / KVH))
 * q [B, Lq, H·hd], k [B, Lk, KVH·hd] (or a KV cache [B, keyCapacity, KVH·hd]) → out [B, H, Lq, Lk].
 */
export function scoresSpec(attrs: ScoresAttrs): KernelSpec {
  return {
    name: 'scores',
    output: attrs.batch * attrs.numHeads * attrs.queryLength * attrs.keyLength,
    constants: headConstants(attrs),
    source: `function scores(q, k) {
  const t = this.thread.x;
  ${divmod('row', 'j', 't', 'Lk')}
  ${rowToBHI('row')}
  const qOff = (b * this.constants.Lq + i) * this.constants.H * this.constants.hd + h * this.constants.hd;
  const kOff = (b * this.constants.cap + j) * this.constants.KVH * this.constants.hd + kvh * this.constants.hd;
  let dot = 0.0;
  for (let c = 0; c < this.constants.hd; c++) {
    dot += q[qOff + c] * k[kOff + c];
  }
  return dot;
}`,
  };
}

/** q [B, Lq, H·hd], k [B, Lk, KVH·hd] → [B, H, Lq, Lk] (gpu.js). */
export function scores(ctx: Textures, q: WebGLTensor, k: WebGLTensor, attrs: ScoresAttrs): WebGLTensor {
  const shape = [attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength];
  return ctx.run(scoresSpec(attrs), shape, [ctx.tex(q), ctx.tex(k)]);
}
