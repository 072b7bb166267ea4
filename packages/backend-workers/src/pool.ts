import { QkvError } from '@qkv/core';
import { describeJob, type Job, type PoolStats, planSteps, type Slot, type StepSpec } from './job.js';
import { spawnThread, type Thread } from './platform.js';
import { DEFAULT_START_TIMEOUT_MS, MAX_STARTUP_FAILURES, type PoolStart, startAdvice } from './pool-start.js';
import { ABORT, CLAIMED_TOTAL, controlSlots, DONE_TOTAL, doneSlot, type FromWorker, type Lease } from './protocol.js';

/**
 * How long a worker keeps claiming blocks of one job before it returns to the scheduler when
 * other jobs wait (a lone job keeps its threads to the end: no round trips). A lease round trip
 * costs ~0.05 ms on a quiet machine, so 4 ms slices lose about 1%, and a small run queued behind
 * a large one waits at most one slice per thread for its first turn.
 */
export const SLICE_MS = 4;

/**
 * A fixed set of threads and a fair scheduler. Every job is a list of steps (ops), each split
 * into blocks of rows; an idle thread gets a lease on the next job in round-robin order that
 * still has unclaimed blocks, so concurrent runs (one handle or many) interleave slice by slice
 * instead of queueing behind each other. Within a lease, blocks are claimed through Atomics
 * counters on the job's shared control block (no message per block, and uneven rows such as
 * causal attention's balance out), and a thread moves from step to step by itself, waiting in
 * shared memory for the steps a step reads from: a whole attention layer is one job.
 */
export class WorkerPool {
  readonly threads: number;
  readonly start: PoolStart;
  #startTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #slots: Slot[] = [];
  readonly #jobs: Job[] = [];
  #rr = 0;
  #nextJob = 1;
  #startupFailures = 0;
  #broken: QkvError | null = null;
  #terminated = false;
  /** Armed by `injectFault`, taken by the next job `run()` creates. */
  #fault: Lease['fault'] | null = null;
  /** [jobs queued], shared with the workers (Lease.queue). */
  readonly #queue = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  #stats = { leases: 0, jobs: 0, replaced: 0 };
  /** Slots that have said 'ready' at least once; the pool is up when all have. */
  readonly #everReady = new Set<number>();
  readonly #started: Promise<void>;
  #startedResolve!: () => void;
  #startedReject!: (e: unknown) => void;

  constructor(threads: number, start: PoolStart = { workerUrl: null, timeoutMs: DEFAULT_START_TIMEOUT_MS }) {
    this.threads = threads;
    this.start = start;
    this.#started = new Promise<void>((resolve, reject) => {
      this.#startedResolve = resolve;
      this.#startedReject = reject;
    });
    // Observed through ready(); keep an unawaited failure from counting as unhandled.
    this.#started.catch(() => {});
    this.#startTimer = setTimeout(() => this.#startTimedOut(), start.timeoutMs);
    for (let i = 0; i < threads; i++) {
      const slot: Slot = { index: i, generation: 0, thread: null, state: 'dead', leases: [], probes: [] };
      this.#slots.push(slot);
      this.#spawn(slot);
    }
  }

  /** Resolves once every thread is up; rejects with WORKER_FAILED if they cannot start. */
  ready(): Promise<void> {
    return this.#started;
  }

  stats(): PoolStats {
    let idleThreads = 0;
    // Exactly the threads `#pump` would hand a lease to.
    for (const s of this.#slots) if (this.#free(s)) idleThreads++;
    return { threads: this.threads, idleThreads, ...this.#stats };
  }

  /**
   * Testing aid for fault recovery. Arms a fault for the next job, i.e. the next `run()` call
   * that reaches the threads (one with at least one block: an empty op resolves without them and
   * leaves the fault armed). Runs submitted before stay unaffected, and arming again before that
   * `run()` only changes the kind. That job carries the fault on every lease of it, and exactly
   * one thread crashes: the one that claims the job's block 0 (the first claim of any job), right
   * after claiming it and before computing it, by throwing an uncaught error ('throw') or exiting
   * ('exit'; Node only, browsers report no exit). Since no job completes without its block 0
   * being claimed and done, the armed run always rejects with WORKER_FAILED, whatever the
   * scheduling; the pool replaces that one thread, and no other run sees the fault.
   */
  injectFault(kind: 'throw' | 'exit'): void {
    this.#fault = kind;
  }

  /** Every started thread frees its packings of these weights (prepared.ts), after its lease. */
  dropPrepared(ids: readonly number[]): void {
    if (this.#terminated || ids.length === 0) return;
    for (const slot of this.#slots)
      if ((slot.state === 'idle' || slot.state === 'busy') && slot.thread) slot.thread.post({ type: 'drop', ids });
  }

  /** Testing aid: per started thread, its packed weights and resident bytes (null: it failed first). */
  preparedStats(): Promise<({ weights: number; residentBytes: number } | null)[]> {
    const asks: Promise<{ weights: number; residentBytes: number } | null>[] = [];
    for (const slot of this.#slots) {
      if ((slot.state !== 'idle' && slot.state !== 'busy') || !slot.thread) continue;
      asks.push(new Promise((resolve) => slot.probes.push(resolve)));
      slot.thread.ref(); // until it answers (idle threads are unref'd)
      slot.thread.post({ type: 'prepared' });
    }
    return Promise.all(asks);
  }

  /**
   * Computes every row of every step on the threads, each step after the steps it reads from.
   * Rejects with WORKER_FAILED if a thread fails. A step may only name earlier steps as deps.
   */
  run(specs: readonly StepSpec[]): Promise<void> {
    if (this.#terminated) {
      return Promise.reject(new QkvError('DISPOSED', 'workers backend: the thread pool was terminated'));
    }
    if (this.#broken) return Promise.reject(this.#broken);
    const { steps, total } = planSteps(specs, this.threads);
    // Empty ops (a zero-length axis) have nothing to hand out; no thread would ever finish them.
    if (total === 0) return Promise.resolve();
    const fault = this.#fault;
    this.#fault = null;
    return new Promise<void>((resolve, reject) => {
      const slots = controlSlots(steps.length, this.threads);
      const ctrl = new Int32Array(new SharedArrayBuffer(slots * Int32Array.BYTES_PER_ELEMENT));
      this.#jobs.push({
        id: this.#nextJob++,
        steps,
        total,
        ctrl,
        fault,
        leases: 0,
        settled: false,
        resolve,
        reject,
      });
      Atomics.store(this.#queue, 0, this.#jobs.length);
      this.#pump();
    });
  }

  /** No thread said 'ready' in time: the pool is broken, like after repeated start failures. */
  #startTimedOut(): void {
    this.#startTimer = null;
    if (this.#terminated || this.#broken || this.#everReady.size > 0) return;
    this.#breakAtStart(
      `no worker thread said it was ready within ${this.start.timeoutMs} ms (the script loaded but did not start qkv's worker, or the runtime never reported the failure)`,
    );
  }

  /** Threads cannot start: reject start-up and every queued job, stop every thread. */
  #breakAtStart(what: string): void {
    this.#clearStartTimer();
    this.#broken = new QkvError('WORKER_FAILED', `workers backend: ${what}; ${startAdvice(this.start.workerUrl)}`);
    this.#startedReject(this.#broken);
    for (const j of [...this.#jobs]) this.#fail(j, this.#broken);
    for (const s of this.#slots) void this.#stop(s);
  }

  /** Ends a slot's thread for good: its late events are ignored, its probes answered null. */
  #stop(s: Slot): Promise<void> {
    s.generation++;
    s.state = 'dead';
    for (const answer of s.probes.splice(0)) answer(null);
    const end = s.thread ? s.thread.terminate() : Promise.resolve();
    s.thread = null;
    return end;
  }

  #clearStartTimer(): void {
    if (this.#startTimer !== null) clearTimeout(this.#startTimer);
    this.#startTimer = null;
  }

  /** Stops every thread; queued and running jobs reject with DISPOSED. Idempotent. */
  async terminate(): Promise<void> {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#clearStartTimer();
    this.#startedReject(new QkvError('DISPOSED', 'workers backend: the thread pool was terminated while starting'));
    for (const job of [...this.#jobs]) {
      this.#fail(
        job,
        new QkvError('DISPOSED', 'workers backend: the thread pool was terminated while this run was in flight'),
      );
    }
    await Promise.all(this.#slots.map((s) => this.#stop(s)));
  }

  #spawn(slot: Slot): void {
    const generation = ++slot.generation;
    slot.state = 'starting';
    slot.thread = null;
    slot.leases = [];
    const current = () => slot.generation === generation && !this.#terminated;
    spawnThread(
      {
        message: (m) => {
          if (current()) this.#onMessage(slot, m);
        },
        failed: (reason) => {
          if (current()) this.#onFailure(slot, reason);
        },
      },
      this.start.workerUrl,
    ).then(
      (thread) => {
        if (!current()) {
          void thread.terminate();
          return;
        }
        // Ref'd while starting (someone awaits ready()); unref'd once idle.
        slot.thread = thread;
      },
      (e: unknown) => {
        if (current()) this.#onFailure(slot, `could not start: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    if (m.type === 'prepared') {
      slot.probes.shift()?.({ weights: m.weights, residentBytes: m.residentBytes });
      if (slot.state === 'idle' && slot.probes.length === 0) slot.thread?.unref();
      return;
    }
    if (m.type === 'ready') {
      slot.state = 'idle';
      // Idle threads must not keep a Node process alive; a busy one is ref'd while it works.
      slot.thread?.unref();
      this.#startupFailures = 0;
      this.#everReady.add(slot.index);
      this.#clearStartTimer();
      if (this.#everReady.size === this.threads) this.#startedResolve();
      this.#pump();
      return;
    }
    const i = slot.leases.findIndex((j) => j.id === m.job);
    const [job] = i >= 0 ? slot.leases.splice(i, 1) : [];
    if (slot.leases.length === 0) {
      slot.state = 'idle';
      if (slot.probes.length === 0) slot.thread?.unref();
    }
    if (job) {
      job.leases--;
      this.#settleIfDone(job);
    }
    this.#pump();
  }

  #onFailure(slot: Slot, reason: string): void {
    // The one job of its leases that is not settled (see Slot.leases) is the one it failed in.
    const job = slot.leases.find((j) => !j.settled) ?? null;
    const where = job ? ` while computing ${describeJob(job)}` : '';
    const err = new QkvError(
      'WORKER_FAILED',
      `workers backend: worker thread #${slot.index} ${reason}${where}; the run was abandoned and the pool replaced the thread`,
    );
    const wasStarting = slot.state === 'starting';
    for (const answer of slot.probes.splice(0)) answer(null);
    const old = slot.thread;
    slot.state = 'dead';
    slot.leases = [];
    if (old) void old.terminate();
    this.#stats.replaced++;
    if (job) this.#fail(job, err);
    if (wasStarting) {
      this.#startupFailures++;
      if (this.#startupFailures >= MAX_STARTUP_FAILURES) {
        this.#breakAtStart(`${this.#startupFailures} worker threads in a row failed to start; last: ${reason}`);
        return;
      }
    }
    this.#spawn(slot);
    this.#pump();
  }

  #fail(job: Job, e: unknown): void {
    if (job.settled) return;
    job.settled = true;
    // Threads still inside a lease of this job stop at their next claim; those waiting for a
    // step that will never complete (its claimer died) wake up and stop too.
    Atomics.store(job.ctrl, ABORT, 1);
    for (let s = 0; s < job.steps.length; s++) Atomics.notify(job.ctrl, doneSlot(s));
    this.#remove(job);
    job.reject(e);
  }

  #settleIfDone(job: Job): void {
    if (job.settled || Atomics.load(job.ctrl, DONE_TOTAL) < job.total) return;
    job.settled = true;
    this.#stats.jobs++;
    this.#remove(job);
    job.resolve();
  }

  #remove(job: Job): void {
    const i = this.#jobs.indexOf(job);
    if (i < 0) return;
    this.#jobs.splice(i, 1);
    Atomics.store(this.#queue, 0, this.#jobs.length);
    if (this.#rr > i) this.#rr--;
  }

  /**
   * Whether a thread can take a lease now: it is idle, or every job it holds is settled (all
   * their blocks are computed, so at most its 'done' is still on its way). Waiting for that
   * 'done' would hand the next job (a session's next decode step, submitted from the microtasks
   * of the first 'done' that completed the last one) to the other threads only, measured: one
   * thread computed whole steps while the other sat idle.
   */
  #free(slot: Slot): boolean {
    if (!slot.thread) return false;
    return slot.state === 'idle' || (slot.state === 'busy' && slot.leases.every((j) => j.settled));
  }

  /**
   * Hands every free thread (`#free`) a lease, visiting jobs round-robin. Every lease of one pump is decided
   * before any is posted: a thread that got its lease could otherwise claim blocks while the loop
   * still counts unclaimed ones for the next idle thread, so how a new job spreads over idle
   * threads would depend on how fast the first one woke up. Decided first, a lone new job with at
   * least as many blocks as there are idle threads reaches every one of them (dynamic claiming
   * then decides who computes which block).
   */
  #pump(): void {
    if (this.#terminated) return;
    let leased: Slot[] | null = null;
    for (const slot of this.#slots) {
      if (!this.#free(slot)) continue;
      const job = this.#pick();
      if (!job) break;
      job.leases++;
      this.#stats.leases++;
      slot.state = 'busy';
      slot.leases.push(job);
      (leased ??= []).push(slot);
    }
    if (!leased) return;
    for (const slot of leased) {
      const job = slot.leases.at(-1) as Job;
      const lease: Lease = {
        type: 'lease',
        job: job.id,
        steps: job.steps,
        ctrl: job.ctrl,
        lane: slot.index,
        lanes: this.threads,
        total: job.total,
        sliceMs: SLICE_MS,
        queue: this.#queue,
        ...(job.fault ? { fault: job.fault } : {}),
      };
      const thread = slot.thread as Thread;
      thread.ref();
      thread.post(lease);
    }
  }

  /**
   * The next job, round-robin, that could use one more thread: one with more unclaimed blocks
   * than leases already on their way to claim them.
   */
  #pick(): Job | null {
    const n = this.#jobs.length;
    for (let step = 0; step < n; step++) {
      const i = (this.#rr + step) % n;
      const job = this.#jobs[i] as Job;
      const unclaimed = job.total - Atomics.load(job.ctrl, CLAIMED_TOTAL);
      if (unclaimed > job.leases) {
        this.#rr = (i + 1) % n;
        return job;
      }
    }
    return null;
  }
}

export type { PoolStats, StepSpec } from './job.js';
export { DEFAULT_START_TIMEOUT_MS, type PoolStart } from './pool-start.js';
