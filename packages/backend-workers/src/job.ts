/** What the pool schedules: a job's steps as the threads see them, and the pool's counters. */
import { planTask, rowsOfTask, type SliceTask } from './ops.js';
import type { Thread } from './platform.js';
import type { Lease, LeaseStep } from './protocol.js';

/** One op of a job and the earlier steps (indices) it reads from. */
export interface StepSpec {
  readonly task: SliceTask;
  readonly deps: readonly number[];
}

/**
 * A job's steps as leases carry them, each split for `threads` threads, and their blocks in all.
 * Throws RangeError when a step names a dep that is not an earlier step.
 */
export function planSteps(specs: readonly StepSpec[], threads: number): { steps: LeaseStep[]; total: number } {
  const steps: LeaseStep[] = [];
  let total = 0;
  for (const [s, { task, deps }] of specs.entries()) {
    for (const d of deps) {
      if (!Number.isInteger(d) || d < 0 || d >= s) throw new RangeError(`step ${s}: dep ${d} is not an earlier step`);
    }
    const plan = planTask(task, threads);
    steps.push({ task, rows: rowsOfTask(task), ...plan, deps });
    total += plan.blocks;
  }
  return { steps, total };
}

export interface Job {
  readonly id: number;
  readonly steps: readonly LeaseStep[];
  /** Blocks in all steps. */
  readonly total: number;
  readonly ctrl: Int32Array;
  /**
   * Testing aid (`WorkerPool.injectFault`): set on the one job that was armed, and then on every
   * lease of it; the thread that claims its block 0 crashes. Null on every other job.
   */
  readonly fault: Lease['fault'] | null;
  /** Leases handed out and not yet reported back. */
  leases: number;
  settled: boolean;
  resolve(): void;
  reject(e: unknown): void;
}

/** One of the pool's threads, as the pool tracks it. */
export interface Slot {
  readonly index: number;
  /** Bumped for every replacement, so events from a dead thread are recognised and ignored. */
  generation: number;
  thread: Thread | null;
  state: 'starting' | 'idle' | 'busy' | 'dead';
  /**
   * Jobs leased to this thread whose 'done' has not come back yet, oldest first. At most the last
   * one is unsettled: a thread gets a new lease only once every job it holds is settled (see
   * `#free`), which is how it gets the next job before its last 'done' has reached this thread.
   */
  leases: Job[];
  /** Waiting `preparedStats` answers of this thread, oldest first. */
  probes: ((m: { weights: number; residentBytes: number } | null) => void)[];
}

export interface PoolStats {
  readonly threads: number;
  /**
   * Threads up and waiting for a lease right now: the ones the next `run()` hands a lease to at
   * once (introspection, e.g. for a test that needs every thread free before it submits).
   */
  readonly idleThreads: number;
  /** Leases handed to threads since the pool started. */
  readonly leases: number;
  /** Jobs completed through the threads. */
  readonly jobs: number;
  /** Threads that failed and were replaced. */
  readonly replaced: number;
}

/** "linear ×3 → fusedAttention → linear → add (6 steps, 52 blocks)", for error messages. */
export function describeJob(job: Job): string {
  const runs: { op: string; n: number }[] = [];
  for (const { task } of job.steps) {
    const last = runs.at(-1);
    if (last?.op === task.op) last.n++;
    else runs.push({ op: task.op, n: 1 });
  }
  const ops = runs.map(({ op, n }) => (n > 1 ? `${op} ×${n}` : op)).join(' → ');
  const steps = job.steps.length;
  return `${ops} (${steps} step${steps === 1 ? '' : 's'}, ${job.total} blocks)`;
}
