import type { cpuKernels } from '@qkv/backend-cpu';
import { type BackendTensor, QkvError, sizeOf } from '@qkv/core';
import type { OpQueue } from './queue.js';

/**
 * A tensor on a SharedArrayBuffer, so every thread reads and writes it in place. After
 * `dispose` its buffer may back another tensor of the same backend (see `BufferRecycler`), so
 * `data` must not be read once `disposed` is set; the kernels' accessors refuse with DISPOSED.
 *
 * Ops are queued, not run at once (see queue.ts): until its queue has run, `data` holds
 * nothing meaningful; `download` waits for it.
 */
export class WorkersTensor implements BackendTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  disposed = false;
  /** The queued step that writes this tensor, while it has not run. */
  writer: { readonly queue: OpQueue; readonly step: number } | null = null;
  /** Queues not yet done whose steps read or write this tensor, with those steps. */
  readonly uses = new Map<OpQueue, number[]>();
  /** Why the data is garbage: the queue that was to write it failed. */
  error: unknown = null;
  /** Its buffer went back for reuse (or was dropped); set once. */
  released = false;
  /**
   * Nonzero for a tensor made by `upload` (the handle's weights): its id as a weight that threads
   * may keep packed (prepared.ts), unique for the life of the process. 0: never packed.
   */
  weightId = 0;
  /** Bumped by every in-place write (writeRows): a packing of an older version is stale. */
  version = 0;
  /** A linear was queued with it as W: its release must drop the packings on every thread. */
  packed = false;
  /** A KV cache in the decode arena (`data` is a view of its shared memory), else null. */
  readonly arena: cpuKernels.ArenaRef | null;
  constructor(
    shape: readonly number[],
    buffer: SharedArrayBuffer | Float32Array,
    arena: cpuKernels.ArenaRef | null = null,
  ) {
    this.shape = shape;
    this.data = buffer instanceof Float32Array ? buffer : new Float32Array(buffer, 0, sizeOf(shape));
    this.arena = arena;
  }
}

/** A tensor's data, refusing a disposed one; null stays null (an absent optional input). */
export function data(t: WorkersTensor | null): Float32Array | null {
  if (t === null) return null;
  if (t.disposed) throw new QkvError('DISPOSED', 'workers backend: a tensor was used after it was disposed');
  return t.data;
}
/** A required tensor's data (see `data`). */
export const d = (t: WorkersTensor): Float32Array => data(t) as Float32Array;
