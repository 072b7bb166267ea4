import type { LinearAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare } from './common.js';

/** Output tile of one workgroup: TM rows × TN columns, 16 × 16 threads each owning 4 × 4 outputs. */
export const TM = 64;
export const TN = 64;
/** Depth of the x and w tiles staged through workgroup memory per step. */
const TK = 16;

/** `f(i)` for i = 0 … n−1, joined: the kernel is unrolled in the generated source. */
const unroll = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join('\n');

/**
 * out [M, N] = x [M, K] · w [K, N] (+ bias [N]), row-vector weights. Each step stages a
 * TM × TK tile of x and a TK × TN tile of w in workgroup memory (each value read from the
 * storage buffer once per workgroup instead of once per output), then thread (tx, ty)
 * accumulates rows 4·ty … 4·ty+3 × columns 4·tx … 4·tx+3 as four vec4 registers, fp32.
 * The source is unrolled by hand (no private arrays, no index arithmetic in the inner loop):
 * software Vulkan compilers (SwiftShader's Subzero, as in CI) do not unroll or keep dynamically
 * indexed private arrays in registers.
 */
const wgsl = (
  bias: boolean,
) => `${declare(['M: u32', 'K: u32', 'N: u32'], bias ? ['x', 'w', 'bias', 'out:rw'] : ['x', 'w', 'out:rw'])}
var<workgroup> xs: array<f32, ${TM * TK}>;
var<workgroup> ws: array<vec4<f32>, ${(TK * TN) / 4}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * ${TM}u;
  let col0 = wid.x * ${TN}u;
  let tx = lid.x;
  let ty = lid.y;
${unroll(4, (s) => `  var acc${s} = vec4<f32>(0.0);`)}
  for (var k0 = 0u; k0 < p.K; k0 += ${TK}u) {
    // Stage x: ${TM * TK} values, 4 per thread; w: ${TK} rows × ${TN / 4} vec4, one per thread.
${unroll(
  4,
  (e) => `    {
      let e = li + ${e * 256}u;
      let r = row0 + e / ${TK}u;
      let c = k0 + e % ${TK}u;
      var v = 0.0;
      if (r < p.M && c < p.K) { v = x[r * p.K + c]; }
      xs[e] = v;
    }`,
)}
    {
      let r = k0 + li / ${TN / 4}u;
      let c = col0 + (li % ${TN / 4}u) * 4u;
      var v = vec4<f32>(0.0);
      if (r < p.K) {
        let o = r * p.N + c;
${unroll(4, (t) => `        if (c + ${t}u < p.N) { v[${t}] = w[o + ${t}u]; }`)}
      }
      ws[li] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      let b = ws[kk * ${TN / 4}u + tx];
${unroll(4, (s) => `      acc${s} += xs[(ty * 4u + ${s}u) * ${TK}u + kk] * b;`)}
    }
    workgroupBarrier();
  }
  let c = col0 + tx * 4u;
${unroll(
  4,
  (s) => `  {
    let r = row0 + ty * 4u + ${s}u;
    if (r < p.M) {
${unroll(4, (t) => `      if (c + ${t}u < p.N) { out[r * p.N + c + ${t}u] = acc${s}[${t}]${bias ? ` + bias[c + ${t}u]` : ''}; }`)}
    }
  }`,
)}
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
