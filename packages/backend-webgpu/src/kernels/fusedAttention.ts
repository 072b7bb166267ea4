import type { FusedAttentionAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare } from './common.js';
import { infinity, type MaskInputs, maskBuffers, maskFields, maskKey, visibleKeys, writeMask } from './mask.js';
import { headFields, writeHead } from './scores.js';

/** Query rows per workgroup (one thread each). */
export const BR = 32;
/** Largest head width the flash kernel keeps in registers (q row and accumulator). */
export const MAX_FUSED_HEAD_DIM = 1024;
/** Keys per K/V tile: the K and V tiles together stay within 16 KiB of workgroup memory. */
export function keyTile(hd: number): number {
  let bc = 32;
  while (bc > 1 && bc * Math.ceil(hd / 4) * 4 > 2048) bc /= 2;
  return bc;
}

/** `f(i)` for i = 0 … n−1, joined by `sep`: the per-channel work is unrolled in the source. */
const unroll = (n: number, f: (i: number) => string, sep = '\n') => Array.from({ length: n }, (_, i) => f(i)).join(sep);
/** vec4 number i of a row of hd floats at `base`, zero past hd. */
const load4 = (buf: string, base: string, i: number, hd: number) =>
  `vec4<f32>(${unroll(4, (t) => (4 * i + t < hd ? `${buf}[${base} + ${4 * i + t}u]` : '0.0'), ', ')})`;

/**
 * Flash attention (Dao et al. 2022) with online softmax (Milakov & Gimelshein 2018), fp32:
 * scores → scale → mask → softmax → weightedSum without an [Lq, Lk] buffer. One workgroup per
 * (b, h, tile of BR query rows), one thread per query row holding q_i and its accumulator as
 * ⌈hd/4⌉ vec4 registers each (the source is generated per head width and unrolled: software
 * Vulkan compilers such as SwiftShader's do not keep indexed private arrays in registers).
 * Per K/V tile of BC keys:
 *   pass 1: the threads stage k_j, v_j (and which keys padding hides) in workgroup memory;
 *           a tile whose keys are all padding is skipped by the whole workgroup;
 *   pass 2: each row, per visible key: s = q_i·k_j·scale − ALiBi + attnMask; when s raises the
 *           running max m, rescale l and acc by exp(m − s) (rare after the first keys);
 *           p = exp(s − m), l += p, acc += p·v_j.
 * Only tiles inside [visibleKeys(first row).start, visibleKeys(last row).end) are visited, so
 * causal and window tiles outside every row's range cost nothing. heads = acc / l, 0 when l = 0.
 * q [B, Lq, H·hd], k, v [B, Lk | keyCapacity, KVH·hd] → heads [B, Lq, H·hd].
 */
const wgsl = (hd: number, m: MaskInputs) => {
  const BC = keyTile(hd);
  const n4 = Math.ceil(hd / 4);
  return `${declare([...headFields, ...maskFields, 'scale: f32'], ['q', 'k', 'v', ...maskBuffers(m), 'out:rw'])}
${infinity}
${visibleKeys}
const HD4 = ${n4}u;
const BC = ${BC}u;
var<workgroup> kt: array<vec4<f32>, ${BC * n4}>;
var<workgroup> vt: array<vec4<f32>, ${BC * n4}>;
var<workgroup> live: array<u32, ${BC}>;
var<workgroup> tileLive: u32;

@compute @workgroup_size(${BR})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let i0 = wid.x * ${BR}u;
  let i = i0 + lid;
  let inRange = i < p.Lq;
  let kStart = visibleKeys(i0).x;
  let kEnd = visibleKeys(min(i0 + ${BR - 1}u, p.Lq - 1u)).y;
  let mine = visibleKeys(min(i, p.Lq - 1u));
  let stride = p.KVH * ${hd}u;
  let kvBase = b * p.cap * stride + (h / (p.H / p.KVH)) * ${hd}u;
  let qOff = (b * p.Lq + min(i, p.Lq - 1u)) * p.H * ${hd}u + h * ${hd}u;
${unroll(
  n4,
  (c) => `  let q${c} = ${load4('q', 'qOff', c, hd)};
  var acc${c} = vec4<f32>(0.0);`,
)}
  var m = -3.4028234e38;
  var l = 0.0;
  for (var j0 = kStart; j0 < kEnd; j0 += BC) {
    // Pass 1 (the barrier first: the previous tile may still be in use).
    workgroupBarrier();
    for (var e = lid; e < BC * HD4; e += ${BR}u) {
      let j = min(j0 + e / HD4, kEnd - 1u);
      let base = kvBase + j * stride + (e % HD4) * 4u;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
${unroll(4, (t) => `      if ((e % HD4) * 4u + ${t}u < ${hd}u) { kv[${t}] = k[base + ${t}u]; vv[${t}] = v[base + ${t}u]; }`)}
      kt[e] = kv;
      vt[e] = vv;
    }
    for (var jj = lid; jj < BC; jj += ${BR}u) {
      let j = j0 + jj;
      live[jj] = select(0u, 1u, j < kEnd${m.pad ? ' && pad[b * p.Lk + min(j, p.Lk - 1u)] == 0.0' : ''});
    }
    workgroupBarrier();
    if (lid == 0u) {
      var anyLive = 0u;
      for (var jj = 0u; jj < BC; jj++) { anyLive = anyLive | live[jj]; }
      tileLive = anyLive;
    }
    if (workgroupUniformLoad(&tileLive) == 0u) { continue; }
    // Pass 2 (rows past Lq only helped stage the tile; no barrier below).
    if (inRange) {
      for (var jj = 0u; jj < BC; jj++) {
        let j = j0 + jj;
        if (live[jj] == 0u || j < mine.x || j >= mine.y) { continue; }
        let t = jj * HD4;
        var s = (${unroll(n4, (c) => `dot(q${c}, kt[t + ${c}u])`, ' + ')}) * p.scale;
        ${m.alibi ? 's -= slopes[h] * abs(f32(p.qoff + i) - f32(j));' : ''}
        ${m.am ? 'let a = am[i * p.Lk + j]; if (isHidden(a)) { continue; } s += a;' : ''}
        if (s > m) {
          let corr = select(exp(m - s), 0.0, l == 0.0);
          l *= corr;
${unroll(n4, (c) => `          acc${c} *= corr;`)}
          m = s;
        }
        let pj = exp(s - m);
        l += pj;
${unroll(n4, (c) => `        acc${c} += pj * vt[t + ${c}u];`)}
      }
    }
  }
  if (!inRange) { return; }
  let inv = select(0.0, 1.0 / l, l > 0.0);
${unroll(hd, (c) => `  out[qOff + ${c}u] = acc${Math.floor(c / 4)}[${c % 4}] * inv;`)}
}`;
};

export function fusedAttention(
  rt: Runtime,
  q: WebGPUTensor,
  k: WebGPUTensor,
  v: WebGPUTensor,
  pad: WebGPUTensor | null,
  am: WebGPUTensor | null,
  slopes: WebGPUTensor | null,
  attrs: FusedAttentionAttrs,
): WebGPUTensor {
  const { batch: B, numHeads: H, queryLength: Lq, headDim: hd } = attrs;
  const m: MaskInputs = { pad: pad !== null, am: am !== null, alibi: slopes !== null };
  const out = rt.tensor([B, Lq, H * hd]);
  const params = writeMask(writeHead(new Params(headFields.length + maskFields.length + 1), attrs), attrs).f(
    attrs.scale,
  );
  const optional = [pad, am, slopes].filter((t): t is WebGPUTensor => t !== null).map((t) => t.buffer);
  rt.dispatch({
    key: `fusedAttention:${hd}:${maskKey(m)}`,
    wgsl: () => wgsl(hd, m),
    params,
    buffers: [q.buffer, k.buffer, v.buffer, ...optional, out.buffer],
    groups: [Math.ceil(Lq / BR), H, B],
  });
  return out;
}
