import type { FusedAttentionAttrs } from '@qkv/core';
import { hasScoreModifiers, modifiedScore, sinkKeysEnd, visibleKeys } from './mask.js';
import { rowsOf } from './scores.js';
import { contiguousRuns, SEQUENCE_BLOCK, sequenceBlocks } from './sequences.js';

/**
 * scores → scale → mask → softmax → weightedSum for rows (b, h, i) in [from, to), holding one
 * query row's running state instead of the [Lq, Lk] score matrix (online softmax, Milakov &
 * Gimelshein 2018): memory is O(hd) per row whatever the sequence length.
 *
 * For each visible key j (causal rows stop at the diagonal, a window starts at p−w+1 and stops
 * at its far edge, sink tokens add keys 0 … s−1, so keys outside these ranges are never visited;
 * padding keys are skipped, and with sequenceIds whole blocks of SEQUENCE_BLOCK keys whose id
 * range misses the query's id are skipped before their scores are computed):
 *   s = q_i·k_j · scale, then softcap, ALiBi, scoreMod, + attnMask[i, j], maskMod (as in mask.ts)
 *   if s > m: rescale the running sum l and accumulator acc by exp(m − s); m = s
 *   p = exp(s − m); l += p; acc += p · v_j
 * heads[b, i, h, :] = acc / l, or 0 when no key was visible (l = 0). With sink logits the state
 * starts at m = sink_h, l = 1 (the sink's exp(sink_h − m)), acc = 0: the sink joins the
 * denominator and adds no value. When an `lse` array is given, lse[b, h, i] = m + log l: the log
 * of the whole denominator (sink included), −∞ when no key was visible and there is no sink.
 * q [B, Lq, H·hd], k, v [B, Lk, KVH·hd] (or caches [B, keyCapacity, KVH·hd]) → heads [B, Lq, H·hd],
 * lse [B, H, Lq] (row index = (b·H + h)·Lq + i, the same numbering as `from`/`to`).
 */
export function fusedAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  keyPaddingMask: Float32Array | null,
  attnMask: Float32Array | null,
  out: Float32Array,
  attrs: FusedAttentionAttrs,
  from = 0,
  to = rowsOf(attrs),
  lse: Float32Array | null = null,
  sequenceIds: Float32Array | null = null,
): void {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd, scale, sinks } = attrs;
  const cap = attrs.keyCapacity ?? Lk;
  const modified = hasScoreModifiers(attrs);
  const group = H / KVH;
  const qStride = H * hd;
  const kvStride = KVH * hd;
  const acc = new Float64Array(hd);
  const blocks = sequenceIds === null ? null : sequenceBlocks(sequenceIds, attrs.batch, Lk);
  const nBlocks = Math.ceil(Lk / SEQUENCE_BLOCK);
  for (let row = from; row < to; row++) {
    const i = row % Lq;
    const bh = (row - i) / Lq;
    const h = bh % H;
    const b = (bh - h) / H;
    const qOff = (b * Lq + i) * qStride + h * hd;
    const kvBase = b * cap * kvStride + Math.floor(h / group) * hd;
    const [start, end] = visibleKeys(i, attrs);
    const sinkEnd = sinkKeysEnd(i, attrs);
    const id = sequenceIds === null ? 0 : (sequenceIds[b * Lk + i + Lk - Lq] as number);
    let m = sinks === undefined ? Number.NEGATIVE_INFINITY : (sinks[h] as number);
    let l = sinks === undefined ? 0 : 1;
    acc.fill(0);
    // Two ranges of keys: the sink tokens [0, sinkEnd), then the causal/window range.
    for (let range = 0; range < 2; range++) {
      const j0 = range === 0 ? 0 : Math.max(start, sinkEnd);
      const j1 = range === 0 ? sinkEnd : end;
      for (let j = j0; j < j1; j++) {
        if (blocks !== null) {
          // Entering a block: skip it whole when no key in it can share the query's id.
          if (j === j0 || j % SEQUENCE_BLOCK === 0) {
            const blk = b * nBlocks + Math.floor(j / SEQUENCE_BLOCK);
            if (id < (blocks.min[blk] as number) || id > (blocks.max[blk] as number)) {
              j = Math.min(j1, (Math.floor(j / SEQUENCE_BLOCK) + 1) * SEQUENCE_BLOCK) - 1;
              continue;
            }
          }
          if ((sequenceIds as Float32Array)[b * Lk + j] !== id) continue;
        }
        if (keyPaddingMask !== null && keyPaddingMask[b * Lk + j] !== 0) continue;
        const kOff = kvBase + j * kvStride;
        let dot = 0;
        for (let c = 0; c < hd; c++) dot += (q[qOff + c] as number) * (k[kOff + c] as number);
        // Round like the unfused chain does (scores, scaled, masked are float32 tensors there).
        let s = Math.fround(Math.fround(dot) * scale);
        if (modified) s = modifiedScore(s, b, h, i, j, attnMask === null ? 0 : (attnMask[i * Lk + j] as number), attrs);
        else if (attnMask !== null) s = Math.fround(s + (attnMask[i * Lk + j] as number));
        if (s === Number.NEGATIVE_INFINITY) continue;
        if (s > m) {
          const corr = Math.exp(m - s);
          l *= corr;
          for (let c = 0; c < hd; c++) acc[c] = (acc[c] as number) * corr;
          m = s;
        }
        const p = Math.exp(s - m);
        l += p;
        for (let c = 0; c < hd; c++) acc[c] = (acc[c] as number) + p * (v[kOff + c] as number);
      }
    }
    const outOff = ((b * Lq + i) * H + h) * hd;
    const inv = l > 0 ? 1 / l : 0;
    for (let c = 0; c < hd; c++) out[outOff + c] = l > 0 ? (acc[c] as number) * inv : l !== l ? Number.NaN : 0;
    if (lse !== null) lse[row] = l > 0 ? m + Math.log(l) : l !== l ? Number.NaN : Number.NEGATIVE_INFINITY;
  }
}

/** A fused kernel of this contract (the SIMD one stops at lse: it never gets sequenceIds). */
type FusedKernel = typeof fusedAttention;

/**
 * Whether a packed run can be split into one problem per sequence: a run() layout (Lq = Lk, no
 * cache), no attnMask, and only modifiers that depend on p − j, not on absolute positions
 * (sinkTokens, maskMod and scoreMod do).
 */
function splittable(attrs: FusedAttentionAttrs, attnMask: Float32Array | null): boolean {
  return (
    attnMask === null &&
    attrs.queryLength === attrs.keyLength &&
    (attrs.keyCapacity ?? attrs.keyLength) === attrs.keyLength &&
    (attrs.queryOffset ?? 0) === 0 &&
    attrs.keyOffset === undefined &&
    attrs.sinkTokens === undefined &&
    attrs.maskMod === undefined &&
    attrs.scoreMod === undefined
  );
}

/**
 * Fused attention over packed sequences, rows (b, h, i) in [from, to) as every fused kernel.
 * Where each batch's ids form contiguous runs (the usual packing), every run [s, e) is its own
 * attention problem, handed to `kernel` on views of q, k, v, padding and out: keys of other
 * sequences are never visited, so the work is Σ n_s² instead of L² (what flash-attn's cu_seqlens
 * gives). Otherwise the reference kernel tests ids per key, skipping blocks whose id range
 * misses the query's.
 */
export function packedFusedAttention(
  kernel: FusedKernel,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  keyPaddingMask: Float32Array | null,
  attnMask: Float32Array | null,
  out: Float32Array,
  attrs: FusedAttentionAttrs,
  from: number,
  to: number,
  lse: Float32Array | null,
  sequenceIds: Float32Array,
): void {
  const { batch: B, numHeads: H, queryLength: L, headDim: hd } = attrs;
  const runs: (number[] | null)[] = [];
  if (splittable(attrs, attnMask)) for (let b = 0; b < B; b++) runs.push(contiguousRuns(sequenceIds, b, L));
  if (runs.length === 0 || runs.some((r) => r === null)) {
    fusedAttention(q, k, v, keyPaddingMask, attnMask, out, attrs, from, to, lse, sequenceIds);
    return;
  }
  const qStride = H * hd;
  const kvStride = attrs.numKVHeads * hd;
  for (let row = from; row < to; ) {
    const i = row % L;
    const bh = (row - i) / L;
    const h = bh % H;
    const b = (bh - h) / H;
    const bRuns = runs[b] as number[];
    let r = 0;
    while ((bRuns[r + 1] as number) <= i) r += 2;
    const s = bRuns[r] as number;
    const e = bRuns[r + 1] as number;
    const n = e - s;
    const iEnd = Math.min(e, i + (to - row));
    // Sequence [s, e) of batch b as a batch of one: [1, n, ·] views, rows (h, i − s).
    kernel(
      q.subarray((b * L + s) * qStride, (b * L + e) * qStride),
      k.subarray((b * L + s) * kvStride, (b * L + e) * kvStride),
      v.subarray((b * L + s) * kvStride, (b * L + e) * kvStride),
      keyPaddingMask === null ? null : keyPaddingMask.subarray(b * L + s, b * L + e),
      null,
      out.subarray((b * L + s) * qStride, (b * L + e) * qStride),
      { ...attrs, batch: 1, queryLength: n, keyLength: n, keyCapacity: undefined },
      h * n + (i - s),
      h * n + (iEnd - s),
      // The view's row h·n + (i − s) is row (b·H + h)·L + i of the whole lse [B, H, L].
      lse === null ? null : lse.subarray((b * H + h) * L + s - h * n),
    );
    row += iEnd - i;
  }
}
