import type { LinearAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare } from './common.js';

/** Output tile of one workgroup: TM rows × TN columns, 16 × 16 threads each owning 4 × 4 outputs. */
export const TM = 64;
export const TN = 64;
/** Depth of the x and w tiles staged through workgroup memory per step. */
const TK = 16;

/**
 * out [M, N] = x [M, K] · w [K, N] (+ bias [N]), row-vector weights. Each step stages a
 * TM × TK tile of x and a TK × TN tile of w in workgroup memory (each value read from the
 * storage buffer once per workgroup instead of once per output), then every thread accumulates
 * its 4 × 4 outputs in registers, fp32. Rows r = lid.y + 16·a, columns c = lid.x + 16·b, so
 * neighbouring threads write neighbouring columns.
 */
const wgsl = (
  bias: boolean,
) => `${declare(['M: u32', 'K: u32', 'N: u32'], bias ? ['x', 'w', 'bias', 'out:rw'] : ['x', 'w', 'out:rw'])}
var<workgroup> xs: array<f32, ${TM * TK}>;
var<workgroup> ws: array<f32, ${TK * TN}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * ${TM}u;
  let col0 = wid.x * ${TN}u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += ${TK}u) {
    for (var e = li; e < ${TM * TK}u; e += 256u) {
      let r = row0 + e / ${TK}u;
      let c = k0 + e % ${TK}u;
      var v = 0.0;
      if (r < p.M && c < p.K) { v = x[r * p.K + c]; }
      xs[e] = v;
    }
    for (var e = li; e < ${TK * TN}u; e += 256u) {
      let r = k0 + e / ${TN}u;
      let c = col0 + e % ${TN}u;
      var v = 0.0;
      if (r < p.K && c < p.N) { v = w[r * p.N + c]; }
      ws[e] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var t = 0u; t < 4u; t++) {
        a[t] = xs[(lid.y + 16u * t) * ${TK}u + kk];
        b[t] = ws[kk * ${TN}u + lid.x + 16u * t];
      }
      for (var s = 0u; s < 4u; s++) {
        for (var t = 0u; t < 4u; t++) { acc[s * 4u + t] += a[s] * b[t]; }
      }
    }
    workgroupBarrier();
  }
  for (var s = 0u; s < 4u; s++) {
    let r = row0 + lid.y + 16u * s;
    for (var t = 0u; t < 4u; t++) {
      let c = col0 + lid.x + 16u * t;
      if (r < p.M && c < p.N) { out[r * p.N + c] = acc[s * 4u + t]${bias ? ' + bias[c]' : ''}; }
    }
  }
}`;

export function linear(
  rt: Runtime,
  x: WebGPUTensor,
  w: WebGPUTensor,
  bias: WebGPUTensor | null,
  attrs: LinearAttrs,
): WebGPUTensor {
  const { rows: M, inFeatures: K, outFeatures: N } = attrs;
  const out = rt.tensor([...x.shape.slice(0, -1), N]);
  const buffers = bias ? [x.buffer, w.buffer, bias.buffer, out.buffer] : [x.buffer, w.buffer, out.buffer];
  rt.dispatch({
    key: `linear:${bias !== null}`,
    wgsl: () => wgsl(bias !== null),
    params: new Params(3).u(M).u(K).u(N),
    buffers,
    groups: [Math.ceil(N / TN), Math.ceil(M / TM)],
  });
  return out;
}
