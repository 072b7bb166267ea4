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
  while (bc > 1 && bc * hd > 2048) bc /= 2;
  return bc;
}

/**
 * Flash attention (Dao et al. 2022) with online softmax (Milakov & Gimelshein 2018), fp32:
 * scores → scale → mask → softmax → weightedSum without an [Lq, Lk] buffer. One workgroup per
 * (b, h, tile of BR query rows), one thread per query row holding q_i and its accumulator in
 * registers. Per K/V tile of BC keys:
 *   pass 1: the threads stage k_j, v_j (and which keys padding hides) in workgroup memory;
 *           a tile whose keys are all padding is skipped by the whole workgroup;
 *   pass 2: each row scores its visible keys, s = q_i·k_j·scale − ALiBi + attnMask, and the
 *           tile's max m̃;
 *   pass 3: rescale l and acc by exp(m − max(m, m̃)) once, then l += p_j, acc += p_j·v_j.
 * Only tiles inside [visibleKeys(first row).start, visibleKeys(last row).end) are visited, so
 * causal and window tiles outside every row's range cost nothing. heads = acc / l, 0 when l = 0.
 * q [B, Lq, H·hd], k, v [B, Lk | keyCapacity, KVH·hd] → heads [B, Lq, H·hd].
 */
const wgsl = (hd: number, m: MaskInputs) => {
  const BC = keyTile(hd);
  return `${declare([...headFields, ...maskFields, 'scale: f32'], ['q', 'k', 'v', ...maskBuffers(m), 'out:rw'])}
${infinity}
${visibleKeys}
const HD = ${hd}u;
const BC = ${BC}u;
var<workgroup> kt: array<f32, ${BC * hd}>;
var<workgroup> vt: array<f32, ${BC * hd}>;
var<workgroup> live: array<u32, ${BC}>;
var<workgroup> tileLive: u32;

/** Passes 2 and 3 for one query row over the staged tile (no barriers: rows may skip it). */
fn scoreTile(j0: u32, i: u32, h: u32, mine: vec2u, m: ptr<function, f32>, l: ptr<function, f32>,
             acc: ptr<function, array<f32, ${hd}>>, qv: ptr<function, array<f32, ${hd}>>) {
  // Pass 2.
  var sc: array<f32, ${BC}>;
  var vis: array<bool, ${BC}>;
  var tileMax = -3.4028234e38;
  var seen = false;
  for (var jj = 0u; jj < BC; jj++) {
    let j = j0 + jj;
    var visible = live[jj] != 0u && j >= mine.x && j < mine.y;
    var s = 0.0;
    if (visible) {
      var dot = 0.0;
      for (var c = 0u; c < HD; c++) { dot += (*qv)[c] * kt[jj * HD + c]; }
      s = dot * p.scale;
      ${m.alibi ? 's -= slopes[h] * abs(f32(p.qoff + i) - f32(j));' : ''}
      ${m.am ? 'let a = am[i * p.Lk + j]; if (isHidden(a)) { visible = false; } else { s += a; }' : ''}
    }
    vis[jj] = visible;
    sc[jj] = s;
    if (visible) { tileMax = max(tileMax, s); seen = true; }
  }
  if (!seen) { return; }
  // Pass 3: the first visible key sets m (l = 0 until then: nothing to rescale).
  let mNew = select(tileMax, max(*m, tileMax), *l > 0.0);
  let corr = select(0.0, exp(*m - mNew), *l > 0.0);
  *l *= corr;
  for (var c = 0u; c < HD; c++) { (*acc)[c] *= corr; }
  for (var jj = 0u; jj < BC; jj++) {
    if (!vis[jj]) { continue; }
    let pj = exp(sc[jj] - mNew);
    *l += pj;
    for (var c = 0u; c < HD; c++) { (*acc)[c] += pj * vt[jj * HD + c]; }
  }
  *m = mNew;
}

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
  let stride = p.KVH * HD;
  let kvBase = b * p.cap * stride + (h / (p.H / p.KVH)) * HD;
  let qOff = (b * p.Lq + i) * p.H * HD + h * HD;
  var qv: array<f32, ${hd}>;
  var acc: array<f32, ${hd}>;
  if (inRange) { for (var c = 0u; c < HD; c++) { qv[c] = q[qOff + c]; } }
  var m = 0.0;
  var l = 0.0;
  for (var j0 = kStart; j0 < kEnd; j0 += BC) {
    // Pass 1 (the barrier first: the previous tile may still be in use).
    workgroupBarrier();
    for (var e = lid; e < BC * HD; e += ${BR}u) {
      let j = j0 + e / HD;
      var kv = 0.0;
      var vv = 0.0;
      if (j < kEnd) { kv = k[kvBase + j * stride + e % HD]; vv = v[kvBase + j * stride + e % HD]; }
      kt[e] = kv;
      vt[e] = vv;
    }
    for (var jj = lid; jj < BC; jj += ${BR}u) {
      let j = j0 + jj;
      live[jj] = select(0u, 1u, j < kEnd${m.pad ? ' && pad[b * p.Lk + j] == 0.0' : ''});
    }
    workgroupBarrier();
    if (lid == 0u) {
      var anyLive = 0u;
      for (var jj = 0u; jj < BC; jj++) { anyLive = anyLive | live[jj]; }
      tileLive = anyLive;
    }
    if (workgroupUniformLoad(&tileLive) == 0u) { continue; }
    // Rows past Lq only helped stage the tile.
    if (inRange) { scoreTile(j0, i, h, mine, &m, &l, &acc, &qv); }
  }
  if (!inRange) { return; }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var c = 0u; c < HD; c++) { out[qOff + c] = acc[c] * inv; }
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
