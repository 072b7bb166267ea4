import type { KernelBuild, cpuKernels as k } from '@qkv/backend-cpu';
import type {
  FusedAttentionAttrs,
  FusedKernels,
  Kernels,
  LinearAttrs,
  LogSumExpAttrs,
  MaskAttrs,
  RotaryAttrs,
  ScaleAttrs,
  ScoresAttrs,
  SoftmaxAttrs,
  WeightedSumAttrs,
  WriteRowsAttrs,
} from '@qkv/core';
import type { TaskPlan } from './plan.js';
import type { WeightRef } from './prepared.js';
import type { WorkersTensor } from './tensor.js';

/**
 * The types of the workers backend's ops (ops.ts holds their records): each op's task as it
 * travels to a thread, and what a record must provide. Dimension names as in @qkv/core's graph.
 */

export type F32 = Float32Array;

/**
 * Each op's task as it travels to a worker: typed-array views over SharedArrayBuffers
 * (structured clone shares them, it never copies the data) plus the op's attrs.
 */
export interface Tasks {
  /** a [n] + b broadcast → out [n]; rows = elements. */
  add: { a: F32; b: F32; out: F32 };
  /** s [n] · scale → out [n]; rows = elements. */
  scale: { s: F32; out: F32; attrs: ScaleAttrs };
  /** x [rows, in] · w [in, out] + bias [out] → out [rows, out]; rows = attrs.rows. */
  /** `kernels`: the cpu kernel build that runs it, the backend's one choice, on every thread. */
  /** `weight`: names W (+ bias) for the threads to keep packed (prepared.ts); null: pack per call. */
  /** `byColumns`: the parallel axis is W's 8-column panels, not rows (`splitsColumns`). */
  linear: {
    x: F32;
    w: F32;
    bias: F32 | null;
    out: F32;
    attrs: LinearAttrs;
    kernels: KernelBuild;
    weight: WeightRef | null;
    byColumns: boolean;
  };
  /** q [B, Lq, H·hd], k [B, Lk, KVH·hd] → out [B, H, Lq, Lk]; rows = B·H·Lq. */
  scores: { q: F32; k: F32; out: F32; attrs: ScoresAttrs };
  /** scaled [B, H, Lq, Lk] (+ masks, sequenceIds [B, Lk]) → out [B, H, Lq, Lk]; rows = B·H·Lq. */
  mask: {
    s: F32;
    keyPaddingMask: F32 | null;
    attnMask: F32 | null;
    sequenceIds: F32 | null;
    out: F32;
    attrs: MaskAttrs;
  };
  /** s [rows, cols] → out [rows, cols]; rows = attrs.rows = B·H·Lq. */
  softmax: { s: F32; out: F32; attrs: SoftmaxAttrs };
  /** masked [rows, cols] → lse [rows]; rows = attrs.rows = B·H·Lq. */
  logSumExp: { s: F32; out: F32; attrs: LogSumExpAttrs };
  /** weights [B, H, Lq, Lk], v [B, Lk, KVH·hd] → out [B, Lq, H·hd]; rows = B·H·Lq. */
  weightedSum: { weights: F32; v: F32; out: F32; attrs: WeightedSumAttrs };
  /** RoPE on x [B, L, heads·hd] → out, same shape; rows = B·L. */
  rotary: { x: F32; out: F32; attrs: RotaryAttrs };
  /** KV-cache append: rows [B, t, width] into cache [B, capacity, width] in place; rows = B. */
  writeRows: { cache: F32; rows: F32; attrs: WriteRowsAttrs };
  /**
   * q, k, v (+ masks, sequenceIds [B, Lk]) → heads [B, Lq, H·hd] (and lse [B, H, Lq] when given);
   * rows = B·H·Lq. With ids each thread's slice of rows skips the keys of other sequences, as on
   * cpu (`packedFusedAttention`).
   */
  fusedAttention: {
    q: F32;
    k: F32;
    v: F32;
    keyPaddingMask: F32 | null;
    attnMask: F32 | null;
    sequenceIds: F32 | null;
    out: F32;
    lse: F32 | null;
    attrs: FusedAttentionAttrs;
    kernels: KernelBuild;
  };
  /**
   * Split-KV decode, pass 1 (decode.ts): per (b, split) the partials (o, m, l) of every KV head's
   * query rows over the split's keys, read in place from caches in the decode arena; rows = B·splits.
   */
  decodePartial: {
    q: F32;
    k: k.ArenaRef;
    v: k.ArenaRef;
    partial: F32;
    splits: number;
    attrs: FusedAttentionAttrs;
  };
  /** Split-KV decode, pass 2: each (b, kvh)'s partials merged → heads [B, Lq, H·hd] (+ lse); rows = B·KVH. */
  decodeMerge: { partial: F32; out: F32; lse: F32 | null; splits: number; attrs: FusedAttentionAttrs };
}
export type SliceOp = keyof Tasks;
export type TaskOf<K extends SliceOp> = { readonly op: K } & Tasks[K];
/** One op over shared memory, as it travels to a worker. */
export type SliceTask = { [K in SliceOp]: TaskOf<K> }[SliceOp];

/**
 * Queues one task and returns its output tensor at once (the backend's `#enqueue`): `shape` of a
 * new output, or `inPlace`, the tensor the op writes instead (the KV cache); `build` makes the
 * task from the output's data once the inputs are checked.
 */
export type Enqueue = (
  shape: readonly number[] | null,
  inputs: readonly (WorkersTensor | null)[],
  build: (out: F32) => SliceTask,
  inPlace?: WorkersTensor | null,
) => WorkersTensor;

export type WorkersKernels = Required<Kernels<WorkersTensor>> & FusedKernels<WorkersTensor>;
/** Ops that are a backend kernel of the same name (the decode passes are queued by decode.ts). */
export type KernelOp = SliceOp & keyof WorkersKernels;

export interface OpRecord<K extends SliceOp> extends TaskRecord<K> {
  /**
   * The backend's kernel for this op: queues the task through `enqueue`; ops that have
   * WebAssembly kernels name `build` (the backend's resolved `kernels` option) in their task.
   */
  kernel(enqueue: Enqueue, build: KernelBuild): WorkersKernels[K & KernelOp];
}

/** What a thread needs of an op: its block computation, rows, work and split. */
export interface TaskRecord<K extends SliceOp> {
  /** Computes rows [from, to); blocks write disjoint ranges of the output, so they need no locking. */
  run(t: TaskOf<K>, from: number, to: number): void;
  /** Length of the parallel axis (what `run` ranges over). */
  rows(t: TaskOf<K>): number;
  /**
   * Work of one row in "work units": roughly one multiply-add, or one elementwise step; an exp
   * counts as 4. Only ratios matter: the units compare a task with the measured dispatch
   * threshold and size blocks, they are never reported as FLOPs.
   */
  workPerRow(t: TaskOf<K>): number;
  /** The split for `threads` threads; absent: `planBlocks` by rows and work. */
  plan?(t: TaskOf<K>, rows: number, threads: number): TaskPlan;
  /** Whether the WebAssembly kernels will run it (see `dispatchWork`); absent: never. */
  fast?(t: TaskOf<K>): boolean;
}
