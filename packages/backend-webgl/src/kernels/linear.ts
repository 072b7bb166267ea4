import type { LinearAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import { divmod } from './common.js';

/**
 * out[r, o] = Σ_i x[r, i] · w[i, o] + bias[o], one thread per output element.
 * x [rows, nIn], w [nIn, nOut] (row-vector weights), bias [nOut] | absent → out [rows, nOut].
 * Accumulates in float32 in the order i = 0…nIn−1.
 */
export function linearSpec(attrs: LinearAttrs, hasBias: boolean): KernelSpec {
  const { rows, inFeatures: nIn, outFeatures: nOut } = attrs;
  return {
    name: hasBias ? 'linear' : 'linearNoBias',
    output: rows * nOut,
    constants: { nIn, nOut },
    source: `function linear(x, w${hasBias ? ', bias' : ''}) {
  const t = this.thread.x;
  ${divmod('r', 'o', 't', 'nOut')}
  const xRow = r * this.constants.nIn;
  let acc = 0.0;
  for (let i = 0; i < this.constants.nIn; i++) {
    acc += x[xRow + i] * w[i * this.constants.nOut + o];
  }
  return acc${hasBias ? ' + bias[o]' : ''};
}`,
  };
}
