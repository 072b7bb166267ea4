import { sizeOf } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';

/** out = a + b, b [n] repeating over a's leading dims (PE [Lq, dModel] onto E [B, Lq, dModel]). */
const wgsl = () => `${declare(['n: u32', 'nb: u32'], ['a', 'b', 'out:rw'])}
${perOutput('p.n')}
  out[idx] = a[idx] + b[idx % p.nb];
}`;

export function add(rt: Runtime, a: WebGPUTensor, b: WebGPUTensor): WebGPUTensor {
  const params = new Params(2).u(sizeOf(a.shape)).u(sizeOf(b.shape));
  return elementwise(rt, 'add', wgsl, params, [a, b], a.shape);
}
