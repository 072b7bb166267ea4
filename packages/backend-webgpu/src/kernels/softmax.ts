import type { SoftmaxAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';
import { infinity } from './mask.js';

/**
 * Passes 1 and 2 of a row at `off` (shared with logSumExp.ts): the max m over visible entries and
 * the sink (when `sinks`), then sum = Σ exp(s − m) (+ exp(sink − m)); `empty` runs (and must
 * return) for a row with no visible entry. Row idx is head (idx / Lq) mod H.
 */
export const rowStats = (sinks: boolean, empty: string) => `
  // Pass 1.
  var m = -3.4028234e38;
  var visible = false;
  for (var j = 0u; j < p.cols; j++) {
    let v = s[off + j];
    if (!isHidden(v)) { m = max(m, v); visible = true; }
  }
  ${sinks ? 'let sink = sinks[(idx / p.Lq) % p.H];' : ''}
  if (!visible) { ${empty} }
  ${sinks ? 'm = max(m, sink);' : ''}
  // Pass 2.
  var sum = ${sinks ? 'exp(sink - m)' : '0.0'};
  for (var j = 0u; j < p.cols; j++) {
    let v = s[off + j];
    if (!isHidden(v)) { sum += exp(v - m); }
  }`;

/** The uniforms and bindings of softmax and logSumExp. */
export const rowDeclarations = (sinks: boolean) =>
  declare(['rows: u32', 'cols: u32', 'Lq: u32', 'H: u32'], ['s', ...(sinks ? ['sinks'] : []), 'out:rw']);

/** Their params: rows, cols, Lq, H (the number of sink logits). */
export function rowParams(attrs: SoftmaxAttrs, sinks: WebGPUTensor | null): Params {
  return new Params(4)
    .u(attrs.rows)
    .u(attrs.cols)
    .u(attrs.queryLength ?? 1)
    .u(sinks === null ? 1 : (sinks.shape[0] as number));
}

/**
 * Row softmax over the last axis, one thread per row, in three passes:
 * pass 1: the row max over visible entries (subtracted only for numerical stability);
 * pass 2: the sum of exp(s − max);
 * pass 3: write exp(s − max) / sum, and 0 for hidden (−∞) entries.
 * A row with no visible entry (a query that sees no key) is all zeros.
 * With sink logits (config.sinks, [H]) the row's head sink joins the max of pass 1 and the sum
 * of pass 2 and carries no value, so the row sums to < 1; row r is head (r / Lq) mod H.
 * A thread per row, not a workgroup reduction: this kernel only runs when weights or score
 * captures are asked for, and software Vulkan (SwiftShader, as in CI) pays ~6 ms per barrier
 * round of a 256-thread workgroup (measured: 350 ms for 56 rows of 7), far more than the loop.
 */
const wgsl = (sinks: boolean) => `${rowDeclarations(sinks)}
${infinity}
${perOutput('p.rows')}
  let off = idx * p.cols;
  ${rowStats(sinks, 'for (var j = 0u; j < p.cols; j++) { out[off + j] = 0.0; } return;')}
  // Pass 3.
  let inv = 1.0 / sum;
  for (var j = 0u; j < p.cols; j++) {
    let v = s[off + j];
    var w = 0.0;
    if (!isHidden(v)) { w = exp(v - m) * inv; }
    out[off + j] = w;
  }
}`;

export function softmax(rt: Runtime, s: WebGPUTensor, sinks: WebGPUTensor | null, attrs: SoftmaxAttrs): WebGPUTensor {
  const key = sinks === null ? 'softmax' : 'softmax:sinks';
  return elementwise(rt, key, () => wgsl(sinks !== null), rowParams(attrs, sinks), [s, sinks], s.shape, attrs.rows);
}
