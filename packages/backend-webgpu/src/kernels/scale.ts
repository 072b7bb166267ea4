import { type ScaleAttrs, sizeOf } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';

/** scaled = raw_score · scale, elementwise. */
const wgsl = () => `${declare(['n: u32', 'scale: f32'], ['s', 'out:rw'])}
${perOutput('p.n')}
  out[idx] = s[idx] * p.scale;
}`;

export function scale(rt: Runtime, s: WebGPUTensor, attrs: ScaleAttrs): WebGPUTensor {
  return elementwise(rt, 'scale', wgsl, new Params(2).u(sizeOf(s.shape)).f(attrs.scale), [s], s.shape);
}
