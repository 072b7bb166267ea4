import type { FusedAttentionAttrs } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare } from './common.js';
import {
  infinity,
  type MaskInputs,
  maskBuffers,
  maskFields,
  maskInputs,
  maskKey,
  servingFns,
  visibleKeys,
  writeMask,
} from './mask.js';
import { headFields, writeHead } from './scores.js';
import { sequenceBlocks } from './sequenceBlocks.js';

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
 * The keys are visited in two segments, the sink tokens [0, sinkEnd(last row)) and the
 * causal/window range [visibleKeys(first row).start, visibleKeys(last row).end) past them, so
 * causal and window tiles outside every row's range cost nothing. Per K/V tile of BC keys:
 *   pass 0 (packed sequences): a tile whose id range (sequenceBlocks) misses the range of the
 *           workgroup's query ids is skipped before anything is staged;
 *   pass 1: the threads stage k_j, v_j (and which keys padding or the ids hide) in workgroup
 *           memory; a tile with no live key is skipped by the whole workgroup;
 *   pass 2: each row, per visible key: s = softcap(q_i·k_j·scale) − ALiBi + attnMask; when s
 *           raises the running max m, rescale l and acc by exp(m − s) (rare after the first
 *           keys); p = exp(s − m), l += p, acc += p·v_j.
 * heads = acc / l, 0 when l = 0. With sink logits each row starts at m = sink_h, l = 1 (the
 * sink's own exp(sink_h − m)), acc = 0: it joins the denominator and adds no value. With `withLse`
 * (returnLse) the row's lse = m + log l goes to lse [B, H, Lq] too: the log of the whole
 * denominator, sink included; −∞ when l = 0.
 * q [B, Lq, H·hd], k, v [B, Lk | keyCapacity, KVH·hd], sequenceIds [B, Lk] → heads [B, Lq, H·hd].
 */
const wgsl = (hd: number, m: MaskInputs, sinks: boolean, withLse: boolean) => {
  const BC = keyTile(hd);
  const n4 = Math.ceil(hd / 4);
  const buffers = ['q', 'k', 'v', ...maskBuffers(m), ...(m.seq ? ['blocks'] : []), ...(sinks ? ['sinks'] : [])];
  return `${declare([...headFields, ...maskFields, 'scale: f32', 'nb: u32'], [...buffers, 'out:rw', ...(withLse ? ['lse:rw'] : [])])}
${infinity}
${visibleKeys}
${servingFns}
const HD4 = ${n4}u;
const BC = ${BC}u;
var<workgroup> kt: array<vec4<f32>, ${BC * n4}>;
var<workgroup> vt: array<vec4<f32>, ${BC * n4}>;
var<workgroup> live: array<u32, ${BC}>;
${m.seq ? `var<workgroup> kid: array<f32, ${BC}>;` : ''}
var<workgroup> tileLive: u32;

@compute @workgroup_size(${BR})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let i0 = wid.x * ${BR}u;
  let i = i0 + lid;
  let inRange = i < p.Lq;
  let row = min(i, p.Lq - 1u);
  let iLast = min(i0 + ${BR - 1}u, p.Lq - 1u);
  let kStart = visibleKeys(i0).x;
  let kEnd = visibleKeys(iLast).y;
  let sEnd = sinkEnd(iLast);
  let mine = visibleKeys(row);
  let mineSink = sinkEnd(row);
  let stride = p.KVH * ${hd}u;
  let kvBase = b * p.cap * stride + (h / (p.H / p.KVH)) * ${hd}u;
  let qOff = (b * p.Lq + row) * p.H * ${hd}u + h * ${hd}u;
${
  m.seq
    ? `  // The queries are key rows i + Lk − Lq; [qLo, qHi] is the range of this workgroup's ids.
  let idBase = b * p.Lk + p.Lk - p.Lq;
  let myId = ids[idBase + row];
  var qLo = ids[idBase + i0];
  var qHi = qLo;
  for (var r = i0 + 1u; r <= iLast; r++) { qLo = min(qLo, ids[idBase + r]); qHi = max(qHi, ids[idBase + r]); }`
    : ''
}
${unroll(
  n4,
  (c) => `  let q${c} = ${load4('q', 'qOff', c, hd)};
  var acc${c} = vec4<f32>(0.0);`,
)}
  var m = ${sinks ? 'sinks[h]' : '-3.4028234e38'};
  var l = ${sinks ? '1.0' : '0.0'};
  for (var seg = 0u; seg < 2u; seg++) {
    let lo = select(max(kStart, sEnd), 0u, seg == 0u);
    let hi = select(kEnd, sEnd, seg == 0u);
    for (var j0 = lo; j0 < hi; j0 += BC) {
${
  m.seq
    ? `      // Pass 0: the tile spans at most two blocks of BC keys.
      let b0 = b * p.nb + j0 / BC;
      let b1 = b * p.nb + (min(j0 + BC, hi) - 1u) / BC;
      if (max(blocks[2u * b0 + 1u], blocks[2u * b1 + 1u]) < qLo || min(blocks[2u * b0], blocks[2u * b1]) > qHi) {
        continue;
      }`
    : ''
}
      // Pass 1 (the barrier first: the previous tile may still be in use).
      workgroupBarrier();
      for (var e = lid; e < BC * HD4; e += ${BR}u) {
        let j = min(j0 + e / HD4, hi - 1u);
        let base = kvBase + j * stride + (e % HD4) * 4u;
        var kv = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
${unroll(4, (t) => `        if ((e % HD4) * 4u + ${t}u < ${hd}u) { kv[${t}] = k[base + ${t}u]; vv[${t}] = v[base + ${t}u]; }`)}
        kt[e] = kv;
        vt[e] = vv;
      }
      for (var jj = lid; jj < BC; jj += ${BR}u) {
        let j = j0 + jj;
        let jc = min(j, p.Lk - 1u);
        var on = j < hi;
        ${m.pad ? 'on = on && pad[b * p.Lk + jc] == 0.0;' : ''}
        ${m.seq ? 'let id = ids[b * p.Lk + jc]; kid[jj] = id; on = on && id >= qLo && id <= qHi;' : ''}
        live[jj] = select(0u, 1u, on);
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
          if (live[jj] == 0u || (j >= mineSink && (j < mine.x || j >= mine.y))) { continue; }
          ${m.seq ? 'if (kid[jj] != myId) { continue; }' : ''}
          let t = jj * HD4;
          var s = (${unroll(n4, (c) => `dot(q${c}, kt[t + ${c}u])`, ' + ')}) * p.scale;
          ${m.softcap ? 's = softcapped(s);' : ''}
          ${m.alibi ? 's -= slopes[h] * alibiDistance(i, j);' : ''}
          ${m.am ? 'let a = am[i * p.Lk + j]; if (isHidden(a)) { continue; } s += a;' : ''}
          if (s > m) {
            let corr = select(exp(m - s), 0.0, l == 0.0);
            l *= corr;
${unroll(n4, (c) => `            acc${c} *= corr;`)}
            m = s;
          }
          let pj = exp(s - m);
          l += pj;
${unroll(n4, (c) => `          acc${c} += pj * vt[t + ${c}u];`)}
        }
      }
    }
  }
  if (!inRange) { return; }
  let inv = select(0.0, 1.0 / l, l > 0.0);
${unroll(hd, (c) => `  out[qOff + ${c}u] = acc${Math.floor(c / 4)}[${c % 4}] * inv;`)}
${withLse ? '  lse[(b * p.H + h) * p.Lq + row] = select(negInf(), m + log(l), l > 0.0);' : ''}
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
  ids: WebGPUTensor | null,
  sinks: WebGPUTensor | null,
  attrs: FusedAttentionAttrs,
  lse: WebGPUTensor | null = null,
): WebGPUTensor {
  const { batch: B, numHeads: H, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
  const m = maskInputs(pad, am, slopes, ids, attrs);
  const BC = keyTile(hd);
  const blocks = ids === null ? null : sequenceBlocks(rt, ids, B, Lk, BC);
  const out = rt.tensor([B, Lq, H * hd]);
  const params = writeMask(writeHead(new Params(headFields.length + maskFields.length + 2), attrs), attrs)
    .f(attrs.scale)
    .u(Math.ceil(Lk / BC));
  const optional = [pad, am, slopes, ids, blocks, sinks]
    .filter((t): t is WebGPUTensor => t !== null)
    .map((t) => t.buffer);
  rt.dispatch({
    key: `fusedAttention:${hd}:${maskKey(m)}${sinks === null ? '' : 's'}${lse === null ? '' : 'l'}`,
    wgsl: () => wgsl(hd, m, sinks !== null, lse !== null),
    params,
    buffers: [q.buffer, k.buffer, v.buffer, ...optional, out.buffer, ...(lse === null ? [] : [lse.buffer])],
    groups: [Math.ceil(Lq / BR), H, B],
  });
  if (blocks !== null) rt.destroyBuffer(blocks.buffer);
  return out;
}
