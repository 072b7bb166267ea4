import { type KernelBuild, cpuKernels as k } from '@qkv/backend-cpu';
import type { ScoresAttrs, WeightedSumAttrs } from '@qkv/core';
import { LINEAR_PANEL, planBlocks, planColumns, planFused, planLinear, type TaskPlan } from './plan.js';
import { preparedWeight, splitsColumns, weightRef } from './prepared.js';
import type { KernelOp, OpRecord, SliceOp, SliceTask, TaskOf, TaskRecord } from './tasks.js';
import { d, data } from './tensor.js';

export type { Enqueue, OpRecord, SliceOp, SliceTask, TaskOf, TaskRecord, Tasks } from './tasks.js';

/**
 * The workers backend's ops, one record each: how a kernel call queues the op (`kernel`), how a
 * thread computes a block of its rows with the cpu backend's kernels (`run`: the math exists
 * once, in @qkv/backend-cpu), the length of its parallel axis (`rows`), the work of one row
 * (`workPerRow`) and how the pool splits it into blocks (`plan`). Adding an op = one task type in
 * `Tasks` (tasks.ts) and one record in `OPS`, plus its line in the backend's kernel table.
 *
 * Dimension names as in @qkv/core's graph: B batch, H query heads, KVH key/value heads, hd head
 * width, Lq / Lk query / key lengths, dModel residual width.
 */

/**
 * `linear` and `fusedAttention` of one kernel build: the cpu backend's own (`fastKernels(build)`;
 * they fall back to the reference kernels themselves for attrs they do not implement), or the
 * reference kernels. So each thread runs exactly what the cpu backend runs with that build.
 */
function kernelsOf(build: KernelBuild): Pick<typeof k, 'linear' | 'fusedAttention'> {
  return build === 'reference' ? k : k.fastKernels(build);
}

/** [B, H, Lq, Lk]: the shape of every score-shaped output. */
const scoreShape = (a: ScoresAttrs): number[] => [a.batch, a.numHeads, a.queryLength, a.keyLength];
/** [B, Lq, H·hd]: the heads. */
const headsShape = (a: WeightedSumAttrs): number[] => [a.batch, a.queryLength, a.numHeads * a.headDim];

export const OPS: { readonly [K in SliceOp]: K extends KernelOp ? OpRecord<K> : TaskRecord<K> } = {
  add: {
    kernel: (q) => (a, b) => q(a.shape, [a, b], (out) => ({ op: 'add', a: d(a), b: d(b), out })),
    run: (t, from, to) => k.add(t.a, t.b, t.out, from, to),
    rows: (t) => t.a.length,
    workPerRow: () => 1,
  },
  scale: {
    kernel: (q) => (s, attrs) => q(s.shape, [s], (out) => ({ op: 'scale', s: d(s), out, attrs })),
    run: (t, from, to) => k.scale(t.s, t.out, t.attrs, from, to),
    rows: (t) => t.s.length,
    workPerRow: () => 1,
  },
  linear: {
    kernel: (q, kernels) => (x, w, bias, attrs) =>
      q([...x.shape.slice(0, -1), attrs.outFeatures], [x, w, bias], (out) => {
        const weight = weightRef(w, bias);
        return {
          op: 'linear',
          x: d(x),
          w: d(w),
          bias: data(bias),
          out,
          attrs,
          kernels,
          weight,
          byColumns: splitsColumns(kernels, weight, attrs),
        };
      }),
    run: (t, from, to) => {
      const prepared = t.weight && preparedWeight(t.kernels, t.weight, t.w, t.bias, t.attrs);
      if (t.byColumns) {
        // from/to are panels. `splitsColumns` marks only what preparedWeight packs.
        if (!prepared) throw new Error('workers linear: a column split without a packed W');
        const N = t.attrs.outFeatures;
        prepared.linearColumns(t.x, t.out, t.attrs.rows, from * LINEAR_PANEL, Math.min(N, to * LINEAR_PANEL));
      } else if (prepared) prepared.linear(t.x, t.out, t.attrs.rows, from, to);
      else kernelsOf(t.kernels).linear(t.x, t.w, t.bias, t.out, t.attrs, from, to);
    },
    rows: (t) => (t.byColumns ? Math.ceil(t.attrs.outFeatures / LINEAR_PANEL) : t.attrs.rows),
    workPerRow: (t) =>
      t.byColumns ? t.attrs.rows * t.attrs.inFeatures * LINEAR_PANEL : t.attrs.inFeatures * t.attrs.outFeatures,
    plan: (t, rows, threads) =>
      t.byColumns
        ? planColumns(rows, t.attrs.rows * t.attrs.inFeatures * LINEAR_PANEL, threads)
        : planLinear(rows, threads),
    fast: (t) => t.kernels !== 'reference',
  },
  scores: {
    kernel: (q) => (qt, kt, attrs) =>
      q(scoreShape(attrs), [qt, kt], (out) => ({ op: 'scores', q: d(qt), k: d(kt), out, attrs })),
    run: (t, from, to) => k.scores(t.q, t.k, t.out, t.attrs, from, to),
    rows: (t) => k.rowsOf(t.attrs),
    workPerRow: (t) => t.attrs.keyLength * t.attrs.headDim,
  },
  mask: {
    kernel: (q) => (s, pad, am, attrs, ids) =>
      q(s.shape, [s, pad, am, ids ?? null], (out) => ({
        op: 'mask',
        s: d(s),
        keyPaddingMask: data(pad),
        attnMask: data(am),
        sequenceIds: data(ids ?? null),
        out,
        attrs,
      })),
    run: (t, from, to) => k.mask(t.s, t.keyPaddingMask, t.attnMask, t.out, t.attrs, from, to, t.sequenceIds),
    rows: (t) => k.rowsOf(t.attrs),
    workPerRow: (t) => t.attrs.keyLength,
  },
  softmax: {
    kernel: (q) => (s, attrs) => q(s.shape, [s], (out) => ({ op: 'softmax', s: d(s), out, attrs })),
    run: (t, from, to) => k.softmax(t.s, t.out, t.attrs, from, to),
    rows: (t) => t.attrs.rows,
    // max pass, exp pass (4), normalise pass
    workPerRow: (t) => 6 * t.attrs.cols,
  },
  logSumExp: {
    kernel: (q) => (s, attrs) => q(s.shape.slice(0, -1), [s], (out) => ({ op: 'logSumExp', s: d(s), out, attrs })),
    run: (t, from, to) => k.logSumExp(t.s, t.out, t.attrs, from, to),
    rows: (t) => t.attrs.rows,
    // max pass, exp pass (4)
    workPerRow: (t) => 5 * t.attrs.cols,
  },
  weightedSum: {
    kernel: (q) => (w, v, attrs) =>
      q(headsShape(attrs), [w, v], (out) => ({ op: 'weightedSum', weights: d(w), v: d(v), out, attrs })),
    run: (t, from, to) => k.weightedSum(t.weights, t.v, t.out, t.attrs, from, to),
    rows: (t) => k.rowsOf(t.attrs),
    workPerRow: (t) => t.attrs.keyLength * t.attrs.headDim,
  },
  rotary: {
    kernel: (q) => (x, attrs) => q(x.shape, [x], (out) => ({ op: 'rotary', x: d(x), out, attrs })),
    run: (t, from, to) => k.rotary(t.x, t.out, t.attrs, from, to),
    rows: (t) => t.attrs.batch * t.attrs.length,
    // A cos and a sin per channel pair, then 4 multiply-adds per pair and head.
    workPerRow: (t) => t.attrs.headDim * (4 + 2 * t.attrs.heads),
  },
  writeRows: {
    // A copy of t rows into the session's shared cache, queued like any op (the rows are usually
    // a queued projection's output); the kernels read the cache at stride attrs.keyCapacity.
    kernel: (q) => (cache, rows, attrs) => {
      // Checked now, not in a thread: a bad offset is the caller's error, not a worker failure.
      if (attrs.offset + attrs.rows > attrs.capacity) {
        throw new RangeError(
          `writeRows: rows ${attrs.offset} … ${attrs.offset + attrs.rows - 1} do not fit a cache of ${attrs.capacity}`,
        );
      }
      const out = q(null, [rows], (c) => ({ op: 'writeRows', cache: c, rows: d(rows), attrs }), cache);
      // Written in place: linears queued from now on must not reuse a packing of the old data.
      cache.version++;
      return out;
    },
    run: (t, from, to) => k.writeRows(t.cache, t.rows, t.attrs, from, to),
    rows: (t) => t.attrs.batch,
    workPerRow: (t) => t.attrs.rows * t.attrs.width,
  },
  fusedAttention: {
    kernel: (q, kernels) => (qt, kt, v, pad, am, attrs, ids) =>
      q(headsShape(attrs), [qt, kt, v, pad, am, ids ?? null], (out) => ({
        op: 'fusedAttention',
        q: d(qt),
        k: d(kt),
        v: d(v),
        keyPaddingMask: data(pad),
        attnMask: data(am),
        sequenceIds: data(ids ?? null),
        out,
        lse: null,
        attrs,
        kernels,
      })),
    run: (t, from, to) => {
      const fused = kernelsOf(t.kernels).fusedAttention;
      const { q, k: kt, v, keyPaddingMask: pad, attnMask: am, out, attrs, lse, sequenceIds: ids } = t;
      if (ids === null) fused(q, kt, v, pad, am, out, attrs, from, to, lse);
      else k.packedFusedAttention(fused, q, kt, v, pad, am, out, attrs, from, to, lse, ids);
    },
    rows: (t) => k.rowsOf(t.attrs),
    // q·k and p·v per key, plus one exp.
    workPerRow: (t) => t.attrs.keyLength * (2 * t.attrs.headDim + 4),
    plan: (t, rows, threads) => planFused(rows, t.attrs.queryLength, threads),
    fast: (t) => t.kernels !== 'reference' && k.fusedAttentionIsFast(t.attrs),
  },
  decodePartial: {
    // Row (b, split): every KV head of batch b over the split's keys, KVH records at row·KVH·size.
    run: (t, from, to) => {
      const range = t.attrs.numKVHeads * k.partialFloats(t.attrs);
      for (let row = from; row < to; row++) {
        const [j0, j1] = splitRange(t.attrs.keyLength, t.splits, row % t.splits);
        k.decodePartial(t.k, t.v, t.q, t.attrs, Math.floor(row / t.splits), j0, j1, t.partial, row * range);
      }
    },
    rows: (t) => t.attrs.batch * t.splits,
    // q·k and p·v for each query row over the split's keys, plus one exp.
    workPerRow: (t) =>
      Math.ceil(t.attrs.keyLength / t.splits) * t.attrs.numHeads * t.attrs.queryLength * (2 * t.attrs.headDim + 4),
    fast: () => true,
  },
  decodeMerge: {
    run: (t, from, to) => {
      const size = k.partialFloats(t.attrs);
      const KVH = t.attrs.numKVHeads;
      for (let row = from; row < to; row++) {
        const kvh = row % KVH;
        const b = (row - kvh) / KVH;
        // (b, kvh)'s record of split p is at ((b·splits + p)·KVH + kvh)·size.
        k.finishPartials(
          t.partial,
          (b * t.splits * KVH + kvh) * size,
          t.splits,
          KVH * size,
          t.attrs,
          b,
          kvh,
          t.out,
          t.lse,
        );
      }
    },
    rows: (t) => t.attrs.batch * t.attrs.numKVHeads,
    workPerRow: (t) => 2 * t.splits * k.partialFloats(t.attrs),
  },
};

/** Keys [j0, j1) of split `p` of `splits` over Lk keys (whole multiples of 4). */
export function splitRange(Lk: number, splits: number, p: number): [number, number] {
  const span = Math.ceil(Lk / splits / 4) * 4;
  return [Math.min(Lk, p * span), Math.min(Lk, (p + 1) * span)];
}

/** The record of a task's op (typed by that op). */
function recordOf<K extends SliceOp>(t: TaskOf<K>): TaskRecord<K> {
  return OPS[t.op] as TaskRecord<K>;
}

/** Computes rows [from, to) of a task (see `OpRecord.run`). */
export function runSlice(t: SliceTask, from: number, to: number): void {
  recordOf(t).run(t, from, to);
}

/** Length of a task's parallel axis. */
export function rowsOfTask(t: SliceTask): number {
  return recordOf(t).rows(t);
}

/** Work of one row of a task (see `OpRecord.workPerRow`). */
export function workPerRow(t: SliceTask): number {
  return recordOf(t).workPerRow(t);
}

/** The split of a task for `threads` threads (see `TaskPlan`). */
export function planTask(t: SliceTask, threads: number): TaskPlan {
  const r = recordOf(t);
  const rows = r.rows(t);
  if (rows === 0) return { blockRows: 1, blocks: 0, segmentRows: 1 };
  return r.plan?.(t, rows, threads) ?? { ...planBlocks(rows, r.workPerRow(t), threads), segmentRows: rows };
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
 * FAST_WORK_DIVISOR where a WebAssembly build will run it.
 */
export function dispatchWork(t: SliceTask): number {
  const r = recordOf(t);
  const work = r.rows(t) * r.workPerRow(t);
  return r.fast?.(t) === true ? work / FAST_WORK_DIVISOR : work;
}
