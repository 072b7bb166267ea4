import { type ScoresAttrs, sizeOf } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';

/** The dims every per-head kernel reads, in this order (`writeHead` writes them). */
export const headFields = ['H: u32', 'KVH: u32', 'Lq: u32', 'Lk: u32', 'hd: u32', 'cap: u32'];
/**
 * raw_score[b, h, i, j] = Σ_c q[b, i, h·hd + c] · k[b, j, kvh·hd + c], kvh = h / (H / KVH)
 * (consecutive query heads share a KV head). One thread per score.
 * q [B, Lq, H·hd], k [B, Lk | keyCapacity, KVH·hd] → [B, H, Lq, Lk].
 */
const wgsl = () => `${declare(['n: u32', ...headFields], ['q', 'k', 'out:rw'])}
${perOutput('p.n')}
  let j = idx % p.Lk;
  let row = idx / p.Lk;
  let i = row % p.Lq;
  let h = (row / p.Lq) % p.H;
  let b = row / (p.Lq * p.H);
  let qOff = (b * p.Lq + i) * p.H * p.hd + h * p.hd;
  let kOff = (b * p.cap + j) * p.KVH * p.hd + (h / (p.H / p.KVH)) * p.hd;
  var dot = 0.0;
  for (var c = 0u; c < p.hd; c++) { dot += q[qOff + c] * k[kOff + c]; }
  out[idx] = dot;
}`;

export function scores(rt: Runtime, q: WebGPUTensor, k: WebGPUTensor, attrs: ScoresAttrs): WebGPUTensor {
  const shape = [attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength];
  const params = new Params(1 + headFields.length).u(sizeOf(shape));
  writeHead(params, attrs);
  return elementwise(rt, 'scores', wgsl, params, [q, k], shape);
}

/** Appends the `headFields` values. */
export function writeHead(params: Params, attrs: ScoresAttrs): Params {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
  // A KV cache [B, maxLength, KVH·hd] holds Lk valid rows per batch at stride keyCapacity.
  return params
    .u(H)
    .u(KVH)
    .u(Lq)
    .u(Lk)
    .u(hd)
    .u(attrs.keyCapacity ?? Lk);
}
