/**
 * What the main thread and the workers say to each other. Messages are small descriptors:
 * tensors travel as views over SharedArrayBuffers, which structured clone shares, never copies.
 *
 * A job is a list of steps (ops) that the threads run in order without coming back to the main
 * thread between them: a step waits only for the earlier steps it reads from (`deps`), through a
 * counter in shared memory, so a whole attention layer costs one lease message per thread.
 */
import type { SliceTask } from './ops.js';

/**
 * Layout of a job's shared Int32Array control block. Slots 0–2 are the job's; then one
 * done-counter per step; then one claim counter per (step, lane).
 */
/** Nonzero once the job was abandoned (a thread failed, the pool was terminated): stop, wake. */
export const ABORT = 0;
/** Blocks computed, all steps together: the job is complete when it reaches the total. */
export const DONE_TOTAL = 1;
/** Blocks claimed, all steps together: what the scheduler reads to see if a job can use a thread. */
export const CLAIMED_TOTAL = 2;
const HEADER_SLOTS = 3;

/** Index of step `s`'s done-counter (blocks of that step computed). */
export function doneSlot(s: number): number {
  return HEADER_SLOTS + s;
}

/**
 * Index of the claim counter of lane `lane` of step `s`, in a job of `steps` steps over `lanes`
 * lanes. The counter holds how many blocks of that lane's range were claimed (it may overshoot).
 */
export function claimSlot(steps: number, lanes: number, s: number, lane: number): number {
  return HEADER_SLOTS + steps + s * lanes + lane;
}

export function controlSlots(steps: number, lanes: number): number {
  return HEADER_SLOTS + steps + steps * lanes;
}

/**
 * Blocks [first, end) of step with `blocks` blocks that lane `lane` of `lanes` owns: the blocks
 * are cut into `lanes` contiguous ranges, one per pool thread. A thread takes its own range from
 * the front, then helps the others from the front of theirs. Contiguous ranges keep a thread on
 * the same operands (a head's K and V in fused attention) for as long as possible, so each is
 * packed once, not once per thread.
 */
export function laneRange(blocks: number, lanes: number, lane: number): [number, number] {
  return [Math.floor((lane * blocks) / lanes), Math.floor(((lane + 1) * blocks) / lanes)];
}

/** One op of a job with its split, as a worker receives it. */
export interface LeaseStep {
  readonly task: SliceTask;
  /** Rows of the op's parallel axis. */
  readonly rows: number;
  readonly blockRows: number;
  /** Rows per segment; blocks never cross one (`blockRange` in ops.ts). */
  readonly segmentRows: number;
  readonly blocks: number;
  /** Earlier steps whose every block must be computed before any block of this one starts. */
  readonly deps: readonly number[];
}

/** main → worker: work on this job until its blocks run out or the time slice ends. */
export interface Lease {
  readonly type: 'lease';
  readonly job: number;
  readonly steps: readonly LeaseStep[];
  /** The control block (see the slot functions above), on a SharedArrayBuffer. */
  readonly ctrl: Int32Array;
  /** This thread's lane (its slot in the pool) and the number of lanes (the pool's threads). */
  readonly lane: number;
  readonly lanes: number;
  /** Blocks in all steps together. */
  readonly total: number;
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
   * of the one job that was armed; the thread that claims that job's first block (step 0,
   * block 0) crashes right after the claim instead of computing it. Absent on every other lease.
   */
  readonly fault?: 'throw' | 'exit';
}

/**
 * main → worker, besides leases: free the packings of these weight tensors (prepared.ts), sent
 * to every started thread when the tensors are released; or report what this thread holds
 * packed (a testing aid: `WorkerPool.preparedStats`).
 */
export type Control = { readonly type: 'drop'; readonly ids: readonly number[] } | { readonly type: 'prepared' };
export type ToWorker = Lease | Control;

/** worker → main. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'done'; readonly job: number; readonly blocks: number }
  | { readonly type: 'prepared'; readonly weights: number; readonly residentBytes: number };
