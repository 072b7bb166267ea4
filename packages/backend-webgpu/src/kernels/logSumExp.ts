import type { LogSumExpAttrs } from '@qkv/core';
import type { Runtime, WebGPUTensor } from '../runtime.js';
import { elementwise, perOutput } from './common.js';
import { infinity } from './mask.js';
import { rowDeclarations, rowParams, rowStats } from './softmax.js';

/**
 * lse[r] = log(Σ_j exp(s[r, j]) + exp(sink_h)) over the visible (not −∞) entries of each row, the
 * sink term only with sink logits: the log of softmax.ts's denominator, from the same passes 1–2
 * (`rowStats`), one thread per row as there; lse = max + log(sum). A row with no visible entry
 * gives −∞, or sink_h with sinks (the sink alone is then the denominator).
 */
const wgsl = (sinks: boolean) => `${rowDeclarations(sinks)}
${infinity}
${perOutput('p.rows')}
  let off = idx * p.cols;
  ${rowStats(sinks, `out[idx] = ${sinks ? 'sink' : 'negInf()'}; return;`)}
  out[idx] = m + log(sum);
}`;

export function logSumExp(
  rt: Runtime,
  s: WebGPUTensor,
  sinks: WebGPUTensor | null,
  attrs: LogSumExpAttrs,
): WebGPUTensor {
  const key = sinks === null ? 'logSumExp' : 'logSumExp:sinks';
  const shape = s.shape.slice(0, -1);
  return elementwise(rt, key, () => wgsl(sinks !== null), rowParams(attrs, sinks), [s, sinks], shape, attrs.rows);
}
