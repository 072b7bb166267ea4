import type { LogSumExpAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';
import { infinity } from './mask.js';

/**
 * lse[r] = log(Σ_j exp(s[r, j]) + exp(sink_h)) over the visible (not −∞) entries of each row, the
 * sink term only with sink logits: the log of softmax.ts's denominator, one thread per row as
 * there. Pass 1: the row max, the sink included (subtracted only for numerical stability);
 * pass 2: the sum of exp(s − max); lse = max + log(sum). A row with no visible entry gives −∞,
 * or sink_h with sinks (the sink alone is then the denominator). Row r is head (r / Lq) mod H.
 */
const wgsl = (
  sinks: boolean,
) => `${declare(['rows: u32', 'cols: u32', 'Lq: u32', 'H: u32'], ['s', ...(sinks ? ['sinks'] : []), 'out:rw'])}
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
  ${sinks ? 'let sink = sinks[(idx / p.Lq) % p.H]; if (!visible) { out[idx] = sink; return; } m = max(m, sink);' : 'if (!visible) { out[idx] = negInf(); return; }'}
  // Pass 2.
  var sum = ${sinks ? 'exp(sink - m)' : '0.0'};
  for (var j = 0u; j < p.cols; j++) {
    let v = s[off + j];
    if (!isHidden(v)) { sum += exp(v - m); }
  }
  out[idx] = m + log(sum);
}`;

export function logSumExp(
  rt: Runtime,
  s: WebGPUTensor,
  sinks: WebGPUTensor | null,
  attrs: LogSumExpAttrs,
): WebGPUTensor {
  const params = new Params(4)
    .u(attrs.rows)
    .u(attrs.cols)
    .u(attrs.queryLength ?? 1)
    .u(sinks === null ? 1 : (sinks.shape[0] as number));
  const key = sinks === null ? 'logSumExp' : 'logSumExp:sinks';
  return elementwise(rt, key, () => wgsl(sinks !== null), params, [s, sinks], s.shape.slice(0, -1), attrs.rows);
}
