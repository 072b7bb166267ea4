import { cpuKernels } from '@qkv/backend-cpu';
import type {
  FusedAttentionAttrs,
  LinearAttrs,
  MaskAttrs,
  RotaryAttrs,
  ScaleAttrs,
  ScoresAttrs,
  SoftmaxAttrs,
  WeightedSumAttrs,
  WriteRowsAttrs,
} from '@qkv/core';

/**
 * One op over shared memory, as it travels to a worker: typed-array views over
 * SharedArrayBuffers (structured clone shares them, it never copies the data) plus the op's attrs.
 * `rows` is the op's parallel axis; each worker computes a contiguous block of it.
 *
 * Dimension names as in @qkv/core's graph: B batch, H query heads, KVH key/value heads, hd head
 * width, Lq / Lk query / key lengths, dModel residual width.
 */
export type SliceTask =
  /** a [n] + b broadcast → out [n]; rows = elements. */
  | { op: 'add'; a: Float32Array; b: Float32Array; out: Float32Array }
  /** s [n] · scale → out [n]; rows = elements. */
  | { op: 'scale'; s: Float32Array; out: Float32Array; attrs: ScaleAttrs }
  /** x [rows, in] · w [in, out] + bias [out] → out [rows, out]; rows = attrs.rows. */
  | {
      op: 'linear';
      x: Float32Array;
      w: Float32Array;
      bias: Float32Array | null;
      out: Float32Array;
      attrs: LinearAttrs;
    }
  /** q [B, Lq, H·hd], k [B, Lk, KVH·hd] → out [B, H, Lq, Lk]; rows = B·H·Lq. */
  | { op: 'scores'; q: Float32Array; k: Float32Array; out: Float32Array; attrs: ScoresAttrs }
  /** scaled [B, H, Lq, Lk] (+ masks) → out [B, H, Lq, Lk]; rows = B·H·Lq. */
  | {
      op: 'mask';
      s: Float32Array;
      keyPaddingMask: Float32Array | null;
      attnMask: Float32Array | null;
      out: Float32Array;
      attrs: MaskAttrs;
    }
  /** s [rows, cols] → out [rows, cols]; rows = attrs.rows = B·H·Lq. */
  | { op: 'softmax'; s: Float32Array; out: Float32Array; attrs: SoftmaxAttrs }
  /** weights [B, H, Lq, Lk], v [B, Lk, KVH·hd] → out [B, Lq, H·hd]; rows = B·H·Lq. */
  | {
      op: 'weightedSum';
      weights: Float32Array;
      v: Float32Array;
      out: Float32Array;
      attrs: WeightedSumAttrs;
    }
  /** RoPE on x [B, L, heads·hd] → out, same shape; rows = B·L. */
  | { op: 'rotary'; x: Float32Array; out: Float32Array; attrs: RotaryAttrs }
  /** KV-cache append: rows [B, t, width] into cache [B, capacity, width] in place; rows = B. */
  | { op: 'writeRows'; cache: Float32Array; rows: Float32Array; attrs: WriteRowsAttrs }
  /** q, k, v (+ masks) → heads [B, Lq, H·hd]; rows = B·H·Lq. */
  | {
      op: 'fusedAttention';
      q: Float32Array;
      k: Float32Array;
      v: Float32Array;
      keyPaddingMask: Float32Array | null;
      attnMask: Float32Array | null;
      out: Float32Array;
      attrs: FusedAttentionAttrs;
    };

/**
 * The cpu backend's kernel set. Versions of @qkv/backend-cpu that ship WebAssembly SIMD variants
 * of `linear` and `fusedAttention` (`linearFast`, `fusedAttentionFast`: same arguments, same row
 * range, their own fallback to the reference) get them used here too, so each thread runs exactly
 * what the cpu backend runs; older versions have only the reference kernels.
 */
const k = cpuKernels as typeof cpuKernels & {
  linearFast?: typeof cpuKernels.linear;
  fusedAttentionFast?: typeof cpuKernels.fusedAttention;
  fastKernelsAvailable?: () => boolean;
  fusedAttentionIsFast?: (attrs: FusedAttentionAttrs) => boolean;
};
const linear = k.linearFast ?? k.linear;
const fusedAttention = k.fusedAttentionFast ?? k.fusedAttention;

export type SliceOp = SliceTask['op'];

/**
 * Computes rows [from, to) of a task with the cpu backend's kernels: the math exists once, in
 * @qkv/backend-cpu; this is only the dispatch from a task descriptor to that function.
 * Rows of different blocks write disjoint ranges of `out`, so blocks need no locking.
 */
export function runSlice(t: SliceTask, from: number, to: number): void {
  switch (t.op) {
    case 'add':
      k.add(t.a, t.b, t.out, from, to);
      return;
    case 'scale':
      k.scale(t.s, t.out, t.attrs, from, to);
      return;
    case 'linear':
      linear(t.x, t.w, t.bias, t.out, t.attrs, from, to);
      return;
    case 'scores':
      k.scores(t.q, t.k, t.out, t.attrs, from, to);
      return;
    case 'mask':
      k.mask(t.s, t.keyPaddingMask, t.attnMask, t.out, t.attrs, from, to);
      return;
    case 'softmax':
      k.softmax(t.s, t.out, t.attrs, from, to);
      return;
    case 'weightedSum':
      k.weightedSum(t.weights, t.v, t.out, t.attrs, from, to);
      return;
    case 'fusedAttention':
      fusedAttention(t.q, t.k, t.v, t.keyPaddingMask, t.attnMask, t.out, t.attrs, from, to);
      return;
    case 'rotary':
      k.rotary(t.x, t.out, t.attrs, from, to);
      return;
    case 'writeRows':
      k.writeRows(t.cache, t.rows, t.attrs, from, to);
      return;
  }
}

/** Length of a task's parallel axis (what `runSlice` ranges over). */
export function rowsOfTask(t: SliceTask): number {
  switch (t.op) {
    case 'add':
      return t.a.length;
    case 'scale':
      return t.s.length;
    case 'linear':
    case 'softmax':
      return t.attrs.rows;
    case 'rotary':
      return t.attrs.batch * t.attrs.length;
    case 'writeRows':
      return t.attrs.batch;
    default:
      return k.rowsOf(t.attrs);
  }
}

/**
 * Work of one row in "work units": roughly one multiply-add, or one elementwise step; an exp
 * counts as 4. Only ratios matter: the units compare a task with the measured dispatch threshold
 * and size blocks, they are never reported as FLOPs.
 */
export function workPerRow(t: SliceTask): number {
  switch (t.op) {
    case 'add':
    case 'scale':
      return 1;
    case 'linear':
      return t.attrs.inFeatures * t.attrs.outFeatures;
    case 'scores':
    case 'weightedSum':
      return t.attrs.keyLength * t.attrs.headDim;
    case 'mask':
      return t.attrs.keyLength;
    case 'softmax':
      return 6 * t.attrs.cols; // max pass, exp pass (4), normalise pass
    case 'fusedAttention':
      // q·k and p·v per key, plus one exp.
      return t.attrs.keyLength * (2 * t.attrs.headDim + 4);
    case 'rotary':
      // A cos and a sin per channel pair, then 4 multiply-adds per pair and head.
      return t.attrs.headDim * (4 + 2 * t.attrs.heads);
    case 'writeRows':
      return t.attrs.rows * t.attrs.width;
  }
}

/**
 * How many multiply-adds of the WebAssembly kernels make one work unit when an op is compared
 * with the inline threshold. The threshold is measured on the reference kernels (softmax, add:
 * the pool wins from ~2^18 units); the SIMD `linear` and `fusedAttention` do the same units
 * 10–40× faster, so the pool only wins from ~2^21 (fused, hd 16) to ~2^24 (linear 64 × 64)
 * multiply-adds (`pnpm bench:threshold`, README). 16 puts them at 2^22: one knob for both kinds.
 */
export const FAST_WORK_DIVISOR = 16;

/**
 * Work of a whole task as the inline threshold sees it: `rows · workPerRow`, divided by
 * FAST_WORK_DIVISOR where the WebAssembly kernels will run it. Call `preloadFastKernels()` first
 * in browsers: the availability check would otherwise compile synchronously on the main thread.
 */
export function dispatchWork(t: SliceTask): number {
  const work = rowsOfTask(t) * workPerRow(t);
  const fast =
    (t.op === 'linear' && k.linearFast !== undefined) ||
    (t.op === 'fusedAttention' && k.fusedAttentionFast !== undefined && k.fusedAttentionIsFast?.(t.attrs) === true);
  return fast && k.fastKernelsAvailable?.() === true ? work / FAST_WORK_DIVISOR : work;
}

export interface BlockPlan {
  /** Rows per block (the last block may be shorter). */
  readonly blockRows: number;
  readonly blocks: number;
}

/**
 * Blocks a worker claims one at a time (an `Atomics.add` on the job's counter, so claiming costs
 * nanoseconds, not a message). Small blocks balance uneven rows and let a second thread help even
 * on a short op; the floor on block work keeps the per-block kernel call negligible. This is the
 * plan for the cheap, evenly-costed ops (elementwise, softmax, the unfused attention chain);
 * `planTask` gives `linear` and `fusedAttention` their own, because their WebAssembly kernels pay
 * a copy per call.
 */
export const MIN_BLOCK_WORK = 2 ** 14;
/** Blocks per thread when rows allow: enough that dynamic claiming evens out uneven rows. */
export const BLOCKS_PER_THREAD = 16;

export function planBlocks(rows: number, rowWork: number, threads: number): BlockPlan {
  const byWork = Math.max(1, Math.floor((rows * rowWork) / MIN_BLOCK_WORK));
  // At least one block per thread (so every thread gets rows), at most one row per block.
  const blocks = Math.min(rows, Math.max(threads, Math.min(byWork, threads * BLOCKS_PER_THREAD)));
  const blockRows = Math.ceil(rows / blocks);
  return { blockRows, blocks: Math.ceil(rows / blockRows) };
}

/**
 * A job's split: rows form segments of `segmentRows` (one (batch, head) of the fused kernel;
 * the whole row range otherwise), each cut into blocks of `blockRows`; no block crosses a
 * segment. `blocks` counts them all; `blockRange` maps a claimed index to its rows.
 */
export interface TaskPlan extends BlockPlan {
  readonly segmentRows: number;
}

/**
 * Fused attention blocks per thread. A thread packs a head's K and V (~Lk·hd·2 floats) once per
 * step of a lease and reuses them for every block of that head it claims (`beginPackScope` in
 * the worker), and its lane is a contiguous run of blocks (whole heads where there are enough),
 * so splitting heads finely costs little. Many blocks per thread let dynamic claiming absorb a
 * thread that starts late or shares its core with other load, and keep the wait at the barrier
 * after the op (the output projection needs every head) to a fraction of a small block:
 * 16 measured ~8% faster than 8 at L = 512, d = 512 and the same at L = 1024 (interleaved A/B in
 * one process, 25–40 runs each).
 */
export const FUSED_BLOCKS_PER_THREAD = 16;
/**
 * Fewest query rows in a fused block when the head is split: two of the kernel's 64-row query
 * blocks, so that the per-call setup (key bias, Q scaling, pack checks) stays a few percent of the
 * block's Q·Kᵀ and P·V. Smaller only where it takes that for every thread to get a block (a
 * single short head).
 */
export const MIN_FUSED_BLOCK_ROWS = 128;

/**
 * Fewest rows in a `linear` block beyond the first one per thread (see `planTask`): eight of the
 * gemm's 4-row quads. 32 measured 2–7% faster per layer than 64 at L = 512 and 1024 (interleaved
 * A/B in one process, 20–30 runs each, 2026-11-28), from shorter waits at the barriers.
 */
export const MIN_LINEAR_BLOCK_ROWS = 32;
/** Most `linear` blocks per thread. */
export const LINEAR_BLOCKS_PER_THREAD = 16;

/** The split of a task for `threads` threads (see `TaskPlan`). */
export function planTask(t: SliceTask, threads: number): TaskPlan {
  const rows = rowsOfTask(t);
  if (rows === 0) return { blockRows: 1, blocks: 0, segmentRows: 1 };
  if (t.op === 'linear') {
    // `linearFast` packs all of W once per step of a lease (~0.3 ms at d = 512, 0.5 ms at 768,
    // measured), not per block, so blocks can be small (MIN_LINEAR_BLOCK_ROWS). Up to
    // LINEAR_BLOCKS_PER_THREAD per thread when rows allow, because on a shared machine a thread
    // whose core is busy elsewhere, or that wakes late, must be able to take fewer blocks
    // (exactly rows ÷ threads would make every op as slow as the slowest core), and because the
    // step after the last projection before attention (and the residual after the output
    // projection) waits for every block: the smaller the last blocks, the shorter that wait.
    const blocks = Math.max(
      Math.min(rows, threads),
      Math.min(threads * LINEAR_BLOCKS_PER_THREAD, Math.floor(rows / MIN_LINEAR_BLOCK_ROWS)),
    );
    const blockRows = Math.ceil(rows / blocks);
    return { blockRows, blocks: Math.ceil(rows / blockRows), segmentRows: rows };
  }
  if (t.op === 'fusedAttention') {
    const Lq = t.attrs.queryLength;
    const segments = rows / Lq;
    const perSegment = Math.ceil((threads * FUSED_BLOCKS_PER_THREAD) / segments);
    let blockRows = Math.min(Lq, Math.max(MIN_FUSED_BLOCK_ROWS, Math.ceil(Math.ceil(Lq / perSegment) / 64) * 64));
    // Too few segments and rows to give every thread a block at that size: split finer.
    if (segments * Math.ceil(Lq / blockRows) < threads) blockRows = Math.ceil(Lq / Math.ceil(threads / segments));
    return { blockRows, blocks: segments * Math.ceil(Lq / blockRows), segmentRows: Lq };
  }
  return { ...planBlocks(rows, workPerRow(t), threads), segmentRows: rows };
}

/** Rows [from, to) of block `b` of a plan over `rows` rows. */
export function blockRange(plan: TaskPlan, rows: number, b: number): [number, number] {
  const perSegment = Math.ceil(plan.segmentRows / plan.blockRows);
  const segment = Math.floor(b / perSegment);
  const segmentEnd = Math.min(rows, (segment + 1) * plan.segmentRows);
  const from = segment * plan.segmentRows + (b % perSegment) * plan.blockRows;
  return [from, Math.min(segmentEnd, from + plan.blockRows)];
}
