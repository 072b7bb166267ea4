/**
 * How a step's rows are cut into the blocks that threads claim one at a time (an `Atomics.add` on
 * the job's counter, so claiming costs nanoseconds, not a message). Each op's record (ops.ts)
 * picks its plan: `planBlocks` for the cheap, evenly-costed ops, `planLinear` and `planFused`
 * for the two whose WebAssembly kernels pay a copy per call.
 */

export interface BlockPlan {
  /** Rows per block (the last block may be shorter). */
  readonly blockRows: number;
  readonly blocks: number;
}

/**
 * Small blocks balance uneven rows and let a second thread help even
 * on a short op; the floor on block work keeps the per-block kernel call negligible. This is the
 * plan for the cheap, evenly-costed ops (elementwise, softmax, the unfused attention chain);
 * `planLinear` and `planFused` give `linear` and `fusedAttention` their own, because their WebAssembly kernels pay
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
 * after the op (the output projection needs every head) to a fraction of a small block
 * (measurements: bench/README.md, "Workers block sizes").
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
 * Fewest rows in a `linear` block beyond the first one per thread (see `planLinear`): eight of the
 * gemm's 4-row quads; small blocks shorten the waits at the barriers after the projections
 * (measurements: bench/README.md, "Workers block sizes").
 */
export const MIN_LINEAR_BLOCK_ROWS = 32;
/** Most `linear` blocks per thread. */
export const LINEAR_BLOCKS_PER_THREAD = 16;

/**
 * `linear`'s split. `linearFast` packs all of W once per step of a lease (~0.3 ms at d = 512,
 * 0.5 ms at 768, measured), not per block, so blocks can be small (MIN_LINEAR_BLOCK_ROWS). Up to
 * LINEAR_BLOCKS_PER_THREAD per thread when rows allow, because on a shared machine a thread whose
 * core is busy elsewhere, or that wakes late, must be able to take fewer blocks (exactly
 * rows ÷ threads would make every op as slow as the slowest core), and because the step after the
 * last projection before attention (and the residual after the output projection) waits for
 * every block: the smaller the last blocks, the shorter that wait.
 */
export function planLinear(rows: number, threads: number): TaskPlan {
  const blocks = Math.max(
    Math.min(rows, threads),
    Math.min(threads * LINEAR_BLOCKS_PER_THREAD, Math.floor(rows / MIN_LINEAR_BLOCK_ROWS)),
  );
  const blockRows = Math.ceil(rows / blocks);
  return { blockRows, blocks: Math.ceil(rows / blockRows), segmentRows: rows };
}

/** Columns of one panel of a packed W (the gemm's micro-kernel width): a column split's unit. */
export const LINEAR_PANEL = 8;
/** Most column blocks per thread of a `linear` split by columns. */
export const LINEAR_COLUMN_BLOCKS_PER_THREAD = 4;
/**
 * Fewest multiply-adds in a column block: a block is one gemm call whose setup (x copied in, the
 * scratch views) costs a few µs, about what 2^16 multiply-adds take (16 blocks of a d = 512
 * one-row projection took 6 µs each, 0.1 ms together, vs 0.07 ms for the whole one).
 */
export const MIN_COLUMN_BLOCK_WORK = 2 ** 16;

/**
 * A few-row `linear`'s split over W's `panels` 8-column panels (ops.ts, `splitsColumns`) of
 * `panelWork` multiply-adds each: each block all rows × a run of panels; at least one block per
 * thread, more (up to LINEAR_COLUMN_BLOCKS_PER_THREAD) where each keeps MIN_COLUMN_BLOCK_WORK,
 * so that a late or slowed thread can take fewer.
 */
export function planColumns(panels: number, panelWork: number, threads: number): TaskPlan {
  const byWork = Math.floor((panels * panelWork) / MIN_COLUMN_BLOCK_WORK);
  const blocks = Math.min(panels, Math.max(threads, Math.min(byWork, threads * LINEAR_COLUMN_BLOCKS_PER_THREAD)));
  const blockRows = Math.ceil(panels / blocks);
  return { blockRows, blocks: Math.ceil(panels / blockRows), segmentRows: panels };
}

/** Fused attention's split: segments of one (batch, head), Lq rows each, cut into query blocks. */
export function planFused(rows: number, Lq: number, threads: number): TaskPlan {
  const segments = rows / Lq;
  const perSegment = Math.ceil((threads * FUSED_BLOCKS_PER_THREAD) / segments);
  let blockRows = Math.min(Lq, Math.max(MIN_FUSED_BLOCK_ROWS, Math.ceil(Math.ceil(Lq / perSegment) / 64) * 64));
  // Too few segments and rows to give every thread a block at that size: split finer.
  if (segments * Math.ceil(Lq / blockRows) < threads) blockRows = Math.ceil(Lq / Math.ceil(threads / segments));
  return { blockRows, blocks: segments * Math.ceil(Lq / blockRows), segmentRows: Lq };
}

/** Rows [from, to) of block `b` of a plan over `rows` rows. */
export function blockRange(plan: TaskPlan, rows: number, b: number): [number, number] {
  const perSegment = Math.ceil(plan.segmentRows / plan.blockRows);
  const segment = Math.floor(b / perSegment);
  const segmentEnd = Math.min(rows, (segment + 1) * plan.segmentRows);
  const from = segment * plan.segmentRows + (b % perSegment) * plan.blockRows;
  return [from, Math.min(segmentEnd, from + plan.blockRows)];
}
