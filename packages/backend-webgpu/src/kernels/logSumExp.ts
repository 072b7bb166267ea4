import type { LogSumExpAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';
import { infinity } from './mask.js';

/**
 * lse[r] = log Σ_j exp(s[r, j]) over the visible (not −∞) entries of each row, one thread per
 * row as in softmax.ts: pass 1 the row max (subtracted only for numerical stability), pass 2 the
 * sum of exp(s − max); lse = max + log(sum), −∞ for a row with no visible entry.
 */
const wgsl = () => `${declare(['rows: u32', 'cols: u32'], ['s', 'out:rw'])}
${infinity}
${perOutput('p.rows')}
  let off = idx * p.cols;
  // Pass 1.
  var m = -3.4028234e38;
  var visible = false;
  for (var j = 0u; j < p.cols; j++) {
    let v = s[off + j];
    if (!isHidden(v)) { m = max(m, v); visible = true; }
  }
  if (!visible) { out[idx] = negInf(); return; }
  // Pass 2.
  var sum = 0.0;
  for (var j = 0u; j < p.cols; j++) {
    let v = s[off + j];
    if (!isHidden(v)) { sum += exp(v - m); }
  }
  out[idx] = m + log(sum);
}`;

export function logSumExp(rt: Runtime, s: WebGPUTensor, attrs: LogSumExpAttrs): WebGPUTensor {
  return elementwise(
    rt,
    'logSumExp',
    wgsl,
    new Params(2).u(attrs.rows).u(attrs.cols),
    [s],
    s.shape.slice(0, -1),
    attrs.rows,
  );
}
