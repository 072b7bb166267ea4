import type { FusedAttentionAttrs } from '@qkv/core';
import { decodeKernel } from './arena.js';
import { FUSED_KEYS, onlyKnown } from './attrs.js';

/**
 * Decode attention in place on KV caches held in a shared arena (arena.ts): the step's few query
 * rows against all Lk cached keys, the cache read once, nothing of it copied.
 *
 * Per batch b every KV head's nq = group·Lq query rows (row r = g·Lq + i of KV head kvh is head
 * kvh·group + g, step token i) go through the kernel together, keys in chunks of KEY_CHUNK. Each
 * chunk yields a partial (o, m, l) per row, base 2 (scale·log₂e is folded into q):
 *   o = Σ_j 2^(s_j − m)·v_j,  m = max_j s_j,  l = Σ_j 2^(s_j − m)
 * and partials over disjoint keys merge exactly (`mergePartial`), which is also how worker threads
 * split one step's keys (the workers backend's split-KV decode). Finally heads = o / l and
 * lse = m·ln 2 + ln l (0 and −∞ for a row that sees no key).
 *
 * A partial record is nq rows of [o (hd), m, l]: PARTIAL_EXTRA floats after o.
 */

/** The kernel's longest key range per call: its score scratch is KVH · nqp · KEY_CHUNK floats. */
export const KEY_CHUNK = 1024;
/** Most query rows per KV head (group · Lq) the decode path takes; more go to the flash kernel. */
export const DECODE_MAX_ROWS = 64;
export const PARTIAL_EXTRA = 2;

/** Where a cache tensor lives in an arena: its memory, the arena's id and the byte offset. */
export interface ArenaRef {
  readonly memory: WebAssembly.Memory;
  readonly id: number;
  readonly ptr: number;
}

/** Whether a fused call can take the decode kernel (masks and score modifiers go elsewhere). */
export function decodeApplies(attrs: FusedAttentionAttrs, hasMasks: boolean): boolean {
  if (hasMasks || attrs.headDim % 4 !== 0) return false;
  if ((attrs.numHeads / attrs.numKVHeads) * attrs.queryLength > DECODE_MAX_ROWS) return false;
  return onlyKnown(attrs, FUSED_KEYS);
}

const up4 = (n: number) => (n + 3) & ~3;

/** Rows of one (b, kvh) and the floats of its partial record. */
export function partialFloats(attrs: FusedAttentionAttrs): number {
  const nq = (attrs.numHeads / attrs.numKVHeads) * attrs.queryLength;
  return nq * (attrs.headDim + PARTIAL_EXTRA);
}

/**
 * The partials of every KV head of batch b over keys [j0, j1) into `rec` from `at`: KVH records
 * one after another (see above), each overwritten. q [B, Lq, H·hd] is any array.
 * One kernel call per chunk of keys covers every KV head: a cache row holds all of them side by
 * side ([B, capacity, KVH·hd]), and the kernel reads each row whole, front to back (one head at
 * a time over the range would stride KVH·hd floats per key and stream the cache KVH times).
 */
export function decodePartial(
  k: ArenaRef,
  v: ArenaRef,
  q: Float32Array,
  attrs: FusedAttentionAttrs,
  b: number,
  j0: number,
  j1: number,
  rec: Float32Array,
  at: number,
): void {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd, scale, causal } = attrs;
  const cap = attrs.keyCapacity ?? Lk;
  const group = H / KVH;
  const nq = group * Lq;
  // The kernel's rows per head: one, or a multiple of 4 (its four-row pass).
  const nqp = nq === 1 ? 1 : up4(nq);
  const rows = KVH * nqp;
  const size = partialFloats(attrs);
  const chunk = Math.min(KEY_CHUNK, up4(j1 - j0));
  // Scratch: q [rows, hd], count [nqp], s [rows, chunk], o [rows, hd], m [rows], l [rows].
  const floats = rows * (2 * hd + chunk + 2) + nqp;
  const { kernel, scratch } = decodeKernel(k.memory, k.id, floats * 4);
  const f32 = new Float32Array(k.memory.buffer);
  const i32 = new Int32Array(k.memory.buffer);
  const qP = scratch;
  const countP = qP + rows * hd * 4;
  const sP = countP + nqp * 4;
  const oP = sP + rows * chunk * 4;
  const mP = oP + rows * hd * 4;
  const lP = mP + rows * 4;
  const factor = scale * Math.LOG2E;
  for (let kvh = 0; kvh < KVH; kvh++) {
    for (let r = 0; r < nq; r++) {
      const g = Math.floor(r / Lq);
      const i = r - g * Lq;
      const src = (b * Lq + i) * H * hd + (kvh * group + g) * hd;
      const dst = (qP >> 2) + (kvh * nqp + r) * hd;
      for (let c = 0; c < hd; c++) f32[dst + c] = (q[src + c] as number) * factor;
    }
  }
  const rowStride = KVH * hd * 4;
  const base = b * cap * rowStride;
  for (let c0 = j0; c0 < j1; c0 += chunk) {
    const n = Math.min(chunk, j1 - c0);
    for (let r = 0; r < nqp; r++) {
      // Causal, bottom-right aligned: step token i sees keys j ≤ i + Lk − Lq.
      const last = r < nq ? (causal ? (r % Lq) + Lk - Lq : Lk - 1) : -1;
      i32[(countP >> 2) + r] = Math.max(0, Math.min(n, last - c0 + 1));
    }
    const off = base + c0 * rowStride;
    kernel.decode(qP, nq, KVH, hd, k.ptr + off, v.ptr + off, rowStride, n, countP, sP, oP, mP, lP);
    for (let kvh = 0; kvh < KVH; kvh++) {
      const kr = kvh * nqp;
      mergeKernelOutput(
        f32,
        (oP >> 2) + kr * hd,
        (mP >> 2) + kr,
        (lP >> 2) + kr,
        nq,
        hd,
        rec,
        at + kvh * size,
        c0 !== j0,
      );
    }
  }
  // An empty key range: nothing seen (o = 0, m = −∞, l = 0).
  for (let r = 0; j1 <= j0 && r < KVH * nq; r++) {
    const d = at + r * (hd + PARTIAL_EXTRA);
    rec.fill(0, d, d + hd + PARTIAL_EXTRA);
    rec[d + hd] = Number.NEGATIVE_INFINITY;
  }
}

/** Copies (merge = false) or merges the kernel's o, m, l into a record. */
function mergeKernelOutput(
  f32: Float32Array,
  o: number,
  m: number,
  l: number,
  nq: number,
  hd: number,
  rec: Float32Array,
  at: number,
  merge: boolean,
): void {
  for (let r = 0; r < nq; r++) {
    const dst = at + r * (hd + PARTIAL_EXTRA);
    const mNew = f32[m + r] as number;
    const lNew = f32[l + r] as number;
    if (!merge) {
      rec.set(f32.subarray(o + r * hd, o + (r + 1) * hd), dst);
      rec[dst + hd] = mNew;
      rec[dst + hd + 1] = lNew;
      continue;
    }
    mergeRow(rec, dst, f32, o + r * hd, mNew, lNew, hd);
  }
}

/**
 * Record row at `dst` ⊕ (o at `src` of `from`, m, l): both rescaled to the larger max, so
 * o = o_a·2^(m_a − M) + o_b·2^(m_b − M), l likewise (the exact online-softmax merge).
 */
function mergeRow(
  rec: Float32Array,
  dst: number,
  from: Float32Array,
  src: number,
  m: number,
  l: number,
  hd: number,
): void {
  const mOld = rec[dst + hd] as number;
  if (l === 0) return;
  const M = Math.max(mOld, m);
  const a = mOld === Number.NEGATIVE_INFINITY ? 0 : 2 ** (mOld - M);
  const bw = 2 ** (m - M);
  for (let c = 0; c < hd; c++) rec[dst + c] = (rec[dst + c] as number) * a + (from[src + c] as number) * bw;
  rec[dst + hd] = M;
  rec[dst + hd + 1] = (rec[dst + hd + 1] as number) * a + l * bw;
}

/**
 * Merges `parts` records of (b, kvh) (from `at`, `stride` floats apart: the KVH records of one
 * key range lie between them) and writes heads rows and lse of its heads.
 */
export function finishPartials(
  rec: Float32Array,
  at: number,
  parts: number,
  stride: number,
  attrs: FusedAttentionAttrs,
  b: number,
  kvh: number,
  out: Float32Array,
  lse: Float32Array | null,
): void {
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, headDim: hd } = attrs;
  const group = H / KVH;
  for (let p = 1; p < parts; p++) {
    for (let r = 0; r < group * Lq; r++) {
      const src = at + p * stride + r * (hd + PARTIAL_EXTRA);
      mergeRow(rec, at + r * (hd + PARTIAL_EXTRA), rec, src, rec[src + hd] as number, rec[src + hd + 1] as number, hd);
    }
  }
  for (let r = 0; r < group * Lq; r++) {
    const g = Math.floor(r / Lq);
    const i = r - g * Lq;
    const h = kvh * group + g;
    const row = at + r * (hd + PARTIAL_EXTRA);
    const l = rec[row + hd + 1] as number;
    const inv = l > 0 ? 1 / l : 0;
    const dst = (b * Lq + i) * H * hd + h * hd;
    for (let c = 0; c < hd; c++) out[dst + c] = (rec[row + c] as number) * inv;
    if (lse)
      lse[(b * H + h) * Lq + i] = l > 0 ? (rec[row + hd] as number) * Math.LN2 + Math.log(l) : Number.NEGATIVE_INFINITY;
  }
}

/** The whole decode on this thread (the cpu backend): every batch, all keys; `rec` holds KVH records. */
export function decodeAttention(
  k: ArenaRef,
  v: ArenaRef,
  q: Float32Array,
  out: Float32Array,
  lse: Float32Array | null,
  attrs: FusedAttentionAttrs,
  rec: Float32Array,
): void {
  const size = partialFloats(attrs);
  for (let b = 0; b < attrs.batch; b++) {
    decodePartial(k, v, q, attrs, b, 0, attrs.keyLength, rec, 0);
    for (let kvh = 0; kvh < attrs.numKVHeads; kvh++) finishPartials(rec, kvh * size, 1, size, attrs, b, kvh, out, lse);
  }
}

/**
 * Reads `bytes` (a multiple of 64) of the arena from a cache's start once and returns their sum:
 * the decode bench's floor, on whichever thread calls it.
 */
export function readArena(ref: ArenaRef, bytes: number): number {
  return decodeKernel(ref.memory, ref.id, 64).kernel.streamSum(ref.ptr, bytes);
}
