/**
 * The worker entry, the same file for worker_threads and Web Workers. It holds no state between
 * leases: each lease names a job's steps, their shared tensors and the job's claim and done
 * counters; the worker claims blocks step by step until none are left or its time slice is over,
 * then reports how many it did.
 */
import { cpuKernels } from '@qkv/backend-cpu';
import { runSlice } from './ops.js';
import { blockRange } from './plan.js';
import { dropPrepared, preparedStats } from './prepared.js';
import {
  ABORT,
  CLAIMED_TOTAL,
  claimSlot,
  DONE_TOTAL,
  doneSlot,
  type FromWorker,
  type Lease,
  type LeaseStep,
  laneRange,
  type ToWorker,
} from './protocol.js';

/** Fault injection: crash the way a broken kernel or a dying thread would. */
function crash(kind: 'throw' | 'exit'): never {
  if (kind === 'exit') {
    const proc = (globalThis as { process?: { exit(code: number): never } }).process;
    if (proc) proc.exit(70);
    (globalThis as unknown as { close(): void }).close();
  }
  throw new Error('injected fault: this worker throws (test)');
}

/**
 * How long a thread that must wait for an earlier step polls before it sleeps in `Atomics.wait`.
 * The wait is usually the other thread's last block of that step (≤ ~1 ms); polling a little
 * first saves the sleep/wake round trip (tens of µs on a VM) when it ends sooner.
 */
const SPIN_MS = 0.02;

/**
 * Waits until every block of step `d` is computed. False when the job was abandoned meanwhile
 * (a thread failed: its claimed blocks will never be done).
 */
function waitFor(ctrl: Int32Array, d: number, blocks: number): boolean {
  const slot = doneSlot(d);
  const spinUntil = performance.now() + SPIN_MS;
  for (;;) {
    const done = Atomics.load(ctrl, slot);
    if (done >= blocks) return true;
    if (Atomics.load(ctrl, ABORT) !== 0) return false;
    // The last finisher of step d notifies; the timeout only bounds a missed abort wake-up.
    if (performance.now() >= spinUntil) Atomics.wait(ctrl, slot, done, 100);
  }
}

/** Claims one block of lane `l`'s range of step `s`, or returns -1 when that range is used up. */
function claimIn(lease: Lease, step: LeaseStep, s: number, l: number): number {
  const [first, end] = laneRange(step.blocks, lease.lanes, l);
  if (first >= end) return -1;
  const slot = claimSlot(lease.steps.length, lease.lanes, s, l);
  // Cheap test first: a used-up range is read many times by a thread looking for work.
  if (Atomics.load(lease.ctrl, slot) >= end - first) return -1;
  const i = Atomics.add(lease.ctrl, slot, 1);
  return i < end - first ? first + i : -1;
}

function work(lease: Lease): number {
  const start = performance.now();
  const { ctrl, steps } = lease;
  let done = 0;
  let s = 0;
  let scope = -1;
  try {
    while (s < steps.length) {
      if (Atomics.load(ctrl, ABORT) !== 0) break;
      const step = steps[s] as LeaseStep;
      // Own range first, then the other lanes' (help where a thread is late or busy elsewhere).
      let b = -1;
      for (let k = 0; k < lease.lanes && b < 0; k++) b = claimIn(lease, step, s, (lease.lane + k) % lease.lanes);
      if (b < 0) {
        s++; // every block of this step is claimed; blocks are never handed back
        continue;
      }
      Atomics.add(ctrl, CLAIMED_TOTAL, 1);
      // Fault injection (WorkerPool.injectFault): every lease of the armed job carries the fault;
      // the thread that claims step 0's block 0, which every job has and claims exactly once,
      // crashes after claiming and before computing it, so the job can never complete.
      if (lease.fault && s === 0 && b === 0) crash(lease.fault);
      for (const d of step.deps) {
        // A dep's blocks are all claimed (steps are claimed in order) by threads computing them.
        if (!waitFor(ctrl, d, (steps[d] as LeaseStep).blocks)) return done;
      }
      // One pack scope per step of a lease: all its blocks read the same immutable operands
      // (W for linear, a head's K/V for fused attention), packed once, not once per block. A new
      // step may read what an earlier one wrote (a KV cache), so nothing carries across steps.
      if (scope !== s) {
        if (scope >= 0) cpuKernels.endPackScope();
        cpuKernels.beginPackScope();
        scope = s;
      }
      const [from, to] = blockRange(step, step.rows, b);
      runSlice(step.task, from, to);
      done++;
      // The atomic add publishes this block's writes to whoever reads the counter.
      if (Atomics.add(ctrl, doneSlot(s), 1) + 1 === step.blocks) Atomics.notify(ctrl, doneSlot(s));
      Atomics.add(ctrl, DONE_TOTAL, 1);
      if (performance.now() - start >= lease.sliceMs && Atomics.load(lease.queue, 0) > 1) break;
    }
  } finally {
    if (scope >= 0) cpuKernels.endPackScope();
  }
  return done;
}

interface Port {
  post(m: FromWorker): void;
  listen(handler: (m: ToWorker) => void): void;
}

async function connect(): Promise<Port> {
  if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined') {
    const scope = globalThis as unknown as {
      postMessage(m: unknown): void;
      onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
    };
    return {
      post: (m) => scope.postMessage(m),
      listen: (handler) => {
        scope.onmessage = (e) => handler(e.data);
      },
    };
  }
  const name = 'node:worker_threads';
  const { parentPort } = (await import(
    /* @vite-ignore */ /* webpackIgnore: true */ name
  )) as typeof import('node:worker_threads');
  if (!parentPort) throw new Error('qkv workers: worker.js must run as a worker thread');
  return {
    post: (m) => parentPort.postMessage(m),
    listen: (handler) => parentPort.on('message', handler),
  };
}

/**
 * Start-up, in a function rather than at the top level: bundlers build workers as classic
 * scripts by default (vite's worker format is 'iife'), where top-level await is a syntax error.
 */
async function start(): Promise<void> {
  const port = await connect();
  // Not caught on purpose: an exception is a worker failure; the pool rejects the run and
  // replaces this thread.
  port.listen((m) => {
    if (m.type === 'drop') dropPrepared(m.ids);
    else if (m.type === 'prepared') port.post({ type: 'prepared', ...preparedStats() });
    else port.post({ type: 'done', job: m.job, blocks: work(m) });
  });
  // Compile every WebAssembly build this runtime has before saying ready, not inside the first
  // lease: that would charge the compile time to one block of the first run and unbalance it.
  // Each task names the build its backend chose (backends with different choices share this
  // thread); a runtime without SIMD has none, and its backends resolve to the reference kernels.
  const support = cpuKernels.wasmBuildSupport();
  for (const build of ['relaxed-simd', 'simd128'] as const)
    if (support[build]) await cpuKernels.preloadFastKernels(build);
  port.post({ type: 'ready' });
}

start().catch((e: unknown) => {
  // A rejected promise is no error event in a Web Worker (the pool would only see its start-up
  // timeout); thrown from a task it is, in both runtimes, with this message.
  setTimeout(() => {
    throw e;
  });
});
