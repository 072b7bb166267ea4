import { type KernelBuild, cpuKernels as k } from '@qkv/backend-cpu';
import type { LinearAttrs } from '@qkv/core';
import type { WorkersTensor } from './tensor.js';

/**
 * Projection weights packed once per thread (the cpu backend's `PreparedWeight`, resident in
 * that thread's WebAssembly module), so a linear reads W packed instead of copying and
 * re-packing it into the module on every call: for a decode step (one row) the copy and the
 * packing were nearly all of a projection's time.
 *
 * A weight is named by the backend tensor it lives in, never by the caller's array (upload made
 * a private copy): `id` is unique to that tensor for the life of the process (a recycled buffer
 * gets a new tensor, so a new id), and `version` changes whenever the tensor's data is written
 * in place (writeRows), so a thread never reads a stale packing. A thread keeps one packing per
 * weight tensor; the main thread broadcasts `dropPrepared` when the tensor is released (disposed
 * and no queue uses it any more) or its backend is destroyed, so resident bytes per thread stay
 * bounded by the live weight tensors.
 */
export interface WeightRef {
  /** The weight tensor's id (`WorkersTensor.weightId`). */
  readonly id: number;
  /** W's version, the bias's id and version: a packing is reused only when all match. */
  readonly key: string;
}

/** How a linear names an uploaded W (and bias) for the threads to keep packed; marks W for the drop. */
export function weightRef(w: WorkersTensor, bias: WorkersTensor | null): WeightRef | null {
  if (w.weightId === 0 || (bias !== null && bias.weightId === 0)) return null;
  w.packed = true;
  const b = bias === null ? '-' : `${bias.weightId}.${bias.version}`;
  return { id: w.weightId, key: `${w.version}/${b}` };
}

/**
 * Most rows of a `linear` that threads split by W's columns instead of by rows: a decode step's
 * projections (one row per token). Split by rows, one row is one block, so one thread read all of
 * W while the other waited (W, not x, is what such a projection reads: 16 MiB for d = 2048).
 */
export const LINEAR_COLUMN_MAX_ROWS = 16;

/**
 * Whether a linear splits by columns: few rows, and W packed per thread (a prepared weight: its
 * 8-column panels lie one after another, so a range of them is one contiguous read).
 */
export function splitsColumns(kernels: KernelBuild, weight: WeightRef | null, attrs: LinearAttrs): boolean {
  return weight !== null && kernels !== 'reference' && k.linearIsFast(attrs) && attrs.rows <= LINEAR_COLUMN_MAX_ROWS;
}

interface Held {
  readonly build: KernelBuild;
  readonly key: string;
  readonly weight: k.PreparedWeight;
}

/** This thread's packings by weight id (one module-level map per thread: each imports this file). */
const held = new Map<number, Held>();

/**
 * W (and bias) packed in this thread's module for `build`, made on first use and kept until
 * `dropPrepared`; null where the SIMD path does not take these attrs (the caller runs the plain
 * kernel). w [in, out], bias [out] or null.
 */
export function preparedWeight(
  build: KernelBuild,
  ref: WeightRef,
  w: Float32Array,
  bias: Float32Array | null,
  attrs: LinearAttrs,
): k.PreparedWeight | null {
  if (build === 'reference' || !k.linearIsFast(attrs)) return null;
  const have = held.get(ref.id);
  if (
    have !== undefined &&
    have.build === build &&
    have.key === ref.key &&
    have.weight.inFeatures === attrs.inFeatures &&
    have.weight.outFeatures === attrs.outFeatures
  )
    return have.weight;
  dropPrepared([ref.id]);
  const weight = k.fastKernels(build).prepareWeight(w, bias, attrs);
  held.set(ref.id, { build, key: ref.key, weight });
  return weight;
}

/** Frees this thread's packings of these weight tensors (ids never packed here are ignored). */
export function dropPrepared(ids: readonly number[]): void {
  for (const id of ids) {
    held.get(id)?.weight.release();
    held.delete(id);
  }
}

/** Weight tensors packed on this thread and the resident bytes of this thread's modules. */
export function preparedStats(): { weights: number; residentBytes: number } {
  return { weights: held.size, residentBytes: k.residentBytes() };
}
