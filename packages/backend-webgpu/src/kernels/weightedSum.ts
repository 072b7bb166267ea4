import { sizeOf, type WeightedSumAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';
import { headFields, writeHead } from './scores.js';

/**
 * heads[b, i, h·hd + c] = Σ_j weights[b, h, i, j] · v[b, j, kvh·hd + c], kvh = h / (H / KVH).
 * weights [B, H, Lq, Lk], v [B, Lk | keyCapacity, KVH·hd] → heads [B, Lq, H·hd]. One thread per output.
 */
const wgsl = () => `${declare(['n: u32', ...headFields], ['w', 'v', 'out:rw'])}
${perOutput('p.n')}
  let c = idx % p.hd;
  let t = idx / p.hd;
  let h = t % p.H;
  let i = (t / p.H) % p.Lq;
  let b = t / (p.H * p.Lq);
  let wOff = ((b * p.H + h) * p.Lq + i) * p.Lk;
  let stride = p.KVH * p.hd;
  let vOff = b * p.cap * stride + (h / (p.H / p.KVH)) * p.hd + c;
  var acc = 0.0;
  for (var j = 0u; j < p.Lk; j++) { acc += w[wOff + j] * v[vOff + j * stride]; }
  out[idx] = acc;
}`;

export function weightedSum(rt: Runtime, w: WebGPUTensor, v: WebGPUTensor, attrs: WeightedSumAttrs): WebGPUTensor {
  const shape = [attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim];
  const params = writeHead(new Params(1 + headFields.length).u(sizeOf(shape)), attrs);
  return elementwise(rt, 'weightedSum', wgsl, params, [w, v], shape);
}
