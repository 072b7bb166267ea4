import type { KernelSpec } from '../device.js';
import { divmod } from './common.js';

/**
 * out[t] = a[t] + b[t mod |b|]: b broadcasts over a's leading dims (PE [Lq, dModel] onto
 * E [B, Lq, dModel]; X onto ΔE of the same shape). a [n], b [nB] → out [n].
 */
export function addSpec(n: number, nB: number): KernelSpec {
  return {
    name: 'add',
    output: n,
    constants: { nB },
    source: `function add(a, b) {
  const t = this.thread.x;
  ${divmod('rep', 'tb', 't', 'nB')}
  return a[t] + b[tb];
}`,
  };
}
