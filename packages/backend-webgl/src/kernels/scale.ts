import type { KernelSpec } from '../device.js';

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
