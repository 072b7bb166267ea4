import type { ScaleAttrs } from '@qkv/core';
import { sizeOf } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';

/**
 * out[t] = s[t] · scale. `scale` is a runtime argument (a uniform), not a constant, so one
 * compiled kernel serves every config of the same size.
 */
export function scaleSpec(n: number): KernelSpec {
  return {
    name: 'scale',
    output: n,
    constants: {},
    source: `function scale(s, factor) {
  return s[this.thread.x] * factor;
}`,
  };
}

/** scaled = s · scale, elementwise (gpu.js). */
export function scale(ctx: Textures, s: WebGLTensor, attrs: ScaleAttrs): WebGLTensor {
  return ctx.run(scaleSpec(sizeOf(s.shape)), s.shape, [ctx.tex(s), attrs.scale]);
}
