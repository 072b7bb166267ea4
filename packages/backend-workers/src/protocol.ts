/**
 * What the main thread and the workers say to each other. Messages are small descriptors:
 * tensors travel as views over SharedArrayBuffers, which structured clone shares, never copies.
 */
import type { SliceTask } from './ops.js';

/** Indices into a job's shared Int32Array control block. */
export const NEXT_BLOCK = 0;
export const DONE_BLOCKS = 1;
export const CONTROL_SLOTS = 2;

/** main → worker: work on this job until its blocks run out or the time slice ends. */
export interface Lease {
  readonly type: 'lease';
  readonly job: number;
  readonly task: SliceTask;
  /** [NEXT_BLOCK, DONE_BLOCKS] on a SharedArrayBuffer. */
  readonly ctrl: Int32Array;
  readonly rows: number;
  readonly blockRows: number;
  /** Rows per segment; blocks never cross one (`blockRange` in ops.ts). */
  readonly segmentRows: number;
  readonly blocks: number;
  /** Stop claiming after this long if other jobs wait, so that they get a turn (fairness). */
  readonly sliceMs: number;
  /**
   * [jobs in the pool's queue], on a SharedArrayBuffer the pool keeps current: a lease whose
   * slice is over only ends early when another job waits (> 1), so a lone run pays no lease
   * round trips through the main thread.
   */
  readonly queue: Int32Array;
  /**
   * Fault injection for the pool's recovery tests (`WorkerPool.injectFault`): set on every lease
   * of the one job that was armed; the thread that claims that job's block 0 crashes right after
   * the claim instead of computing it. Absent on every other lease.
   */
  readonly fault?: 'throw' | 'exit';
}

/** worker → main. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'done'; readonly job: number; readonly blocks: number };
