import { cpuKernels } from '@qkv/backend-cpu';
import {
  type Availability,
  assertKnownKeys,
  type Backend,
  type BackendCreateOptions,
  type BackendFactory,
  type BackendTensor,
  describeValue,
  type FusedKernels,
  type Kernels,
  QkvError,
  sizeOf,
  type Tensor,
} from '@qkv/core';
import { BufferRecycler } from './buffers.js';
import { dispatchWork, rowsOfTask, runSlice, type SliceTask } from './ops.js';
import { defaultThreadCount, threadSupport, usesWebWorkers } from './platform.js';
import { DEFAULT_START_TIMEOUT_MS, type PoolStart, type PoolStats, type StepSpec, WorkerPool } from './pool.js';

/**
 * Below this much work (in `workPerRow` units, ≈ multiply-adds) an op runs on the calling thread:
 * handing it to the pool (a lease message out and back, waking a thread) costs more than it saves.
 * Measured, not guessed: `pnpm --filter @qkv/backend-workers bench:threshold` times every op at
 * growing sizes inline and on 2 threads and prints where the threads start to win; the README
 * records the numbers this value comes from.
 */
export const INLINE_WORK_THRESHOLD = 2 ** 18;

/** Upper bound on `threads`: far beyond any useful count, low enough to catch a typo. */
export const MAX_THREADS = 256;

export interface WorkersBackendOptions {
  /** Threads in the pool; default: the machine's parallelism. Handles with equal counts share one pool. */
  threads?: number;
  /** Work (≈ multiply-adds) below which an op runs on the calling thread; default `INLINE_WORK_THRESHOLD`. 0 dispatches everything. */
  inlineThreshold?: number;
  /**
   * Where the worker script is served (`@qkv/backend-workers/worker`, i.e. this package's
   * dist/worker.js, copied as it is): for bundlers that do not follow
   * `new URL('./worker.js', import.meta.url)` (esbuild). In Node: a path or a file: URL.
   */
  workerUrl?: string | URL;
  /** Milliseconds the first thread may take to start before WORKER_FAILED; default `DEFAULT_START_TIMEOUT_MS`. */
  startTimeout?: number;
}

const OPTION_KEYS = new Set(['threads', 'inlineThreshold', 'workerUrl', 'startTimeout']);

/** Upper bound on `startTimeout` (ms): long enough for any real start, short of a hang. */
const MAX_START_TIMEOUT_MS = 120_000;

/**
 * A tensor on a SharedArrayBuffer, so every thread reads and writes it in place. After
 * `dispose` its buffer may back another tensor of the same backend (see `BufferRecycler`), so
 * `data` must not be read once `disposed` is set; the kernels' accessors refuse with DISPOSED.
 *
 * Ops are queued, not run at once (see `WorkersBackend`): until its queue has run, `data` holds
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
  constructor(shape: readonly number[], buffer: SharedArrayBuffer) {
    this.shape = shape;
    this.data = new Float32Array(buffer, 0, sizeOf(shape));
  }
}

/**
 * Ops queued for one run (or for direct kernel calls outside a run), submitted to the pool as
 * one job. Each step lists the earlier steps it reads from; the threads walk the steps without
 * returning to the main thread in between, so a run pays one round of messages, not one per op.
 */
class OpQueue {
  readonly steps: StepSpec[] = [];
  state: 'open' | 'running' | 'done' | 'failed' = 'open';
  error: unknown = null;
  /** Queues whose results this one reads (or whose reads it must not overwrite): it starts after them. */
  readonly after = new Set<OpQueue>();
  /** Tensors its steps read or write. */
  readonly tensors = new Set<WorkersTensor>();
  /**
   * Buffers of tensors disposed while the queue was open, with the steps that used them: a later
   * step of the same queue may write its output there once those steps are done.
   */
  readonly free: { readonly buf: SharedArrayBuffer; readonly after: readonly number[] }[] = [];
  /** Work units of all steps (`dispatchWork`): the inline threshold applies to the whole queue. */
  work = 0;
  /** Settles when the queue has run (or failed); set on submit. */
  done: Promise<void> | null = null;
  constructor(readonly key: object) {}
}

function data(t: WorkersTensor | null): Float32Array | null {
  if (t === null) return null;
  if (t.disposed) throw new QkvError('DISPOSED', 'workers backend: a tensor was used after it was disposed');
  return t.data;
}
const d = (t: WorkersTensor) => data(t) as Float32Array;

/** Why this environment cannot share memory with threads, or null when it can. */
function sharedMemoryProblem(): string | null {
  if (typeof SharedArrayBuffer !== 'function') {
    return usesWebWorkers()
      ? 'SharedArrayBuffer is unavailable: the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)'
      : 'SharedArrayBuffer is unavailable in this runtime';
  }
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) {
    return 'the page is not cross-origin isolated (crossOriginIsolated is false), so SharedArrayBuffers cannot be shared with workers; serve it with COOP: same-origin and COEP: require-corp';
  }
  return null;
}

function resolveOptions(options: BackendCreateOptions | undefined): {
  threads: number | null;
  inlineThreshold: number;
  start: PoolStart;
} {
  const o = options ?? {};
  if (typeof o !== 'object' || o === null) {
    throw new QkvError(
      'INVALID_OPTION',
      `backendOptions (workers): expected an object like { threads: 2 }, got ${describeValue(o)}`,
    );
  }
  assertKnownKeys('backendOptions (workers)', o, OPTION_KEYS);
  let threads: number | null = null;
  if (o.threads !== undefined) {
    const t = o.threads;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > MAX_THREADS) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.threads: expected an integer from 1 to ${MAX_THREADS}, got ${describeValue(t)}`,
      );
    }
    threads = t;
  }
  let inlineThreshold = INLINE_WORK_THRESHOLD;
  if (o.inlineThreshold !== undefined) {
    const t = o.inlineThreshold;
    if (typeof t !== 'number' || Number.isNaN(t) || t < 0) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.inlineThreshold: expected a number ≥ 0 (work units; 0 dispatches every op), got ${describeValue(t)}`,
      );
    }
    inlineThreshold = t;
  }
  return { threads, inlineThreshold, start: resolveStart(o) };
}

/** `workerUrl` and `startTimeout`: how the pool's threads start. */
function resolveStart(o: BackendCreateOptions): PoolStart {
  let workerUrl: string | URL | null = null;
  if (o.workerUrl !== undefined) {
    const u = o.workerUrl;
    if (!(u instanceof URL) && (typeof u !== 'string' || u === '')) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.workerUrl: expected a URL or a non-empty string naming @qkv/backend-workers's worker script, got ${describeValue(u)}`,
      );
    }
    workerUrl = u;
  }
  let timeoutMs = DEFAULT_START_TIMEOUT_MS;
  if (o.startTimeout !== undefined) {
    const t = o.startTimeout;
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0 || t > MAX_START_TIMEOUT_MS) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.startTimeout: expected milliseconds in (0, ${MAX_START_TIMEOUT_MS}], got ${describeValue(t)}`,
      );
    }
    timeoutMs = t;
  }
  return { workerUrl, timeoutMs };
}

/**
 * Pools by thread count, shared by every backend instance (every attention handle) that asked
 * for that many threads, and terminated when the last of them is destroyed. Sharing is what
 * makes concurrent handles fair: their ops meet in one scheduler instead of oversubscribing
 * the cores with a pool each.
 */
const pools = new Map<string, { pool: WorkerPool; users: number }>();

/** Handles share a pool when they ask for as many threads of the same worker script. */
function poolKey(threads: number, workerUrl: string | URL | null): string {
  return `${threads} ${workerUrl === null ? '' : String(workerUrl)}`;
}

async function acquirePool(threads: number, start: PoolStart): Promise<WorkerPool> {
  const key = poolKey(threads, start.workerUrl);
  let entry = pools.get(key);
  if (!entry) {
    entry = { pool: new WorkerPool(threads, start), users: 0 };
    pools.set(key, entry);
  }
  entry.users++;
  try {
    await entry.pool.ready();
  } catch (e) {
    await releasePool(entry.pool);
    throw e;
  }
  return entry.pool;
}

async function releasePool(pool: WorkerPool): Promise<void> {
  const key = poolKey(pool.threads, pool.start.workerUrl);
  const entry = pools.get(key);
  if (!entry || entry.pool !== pool) return;
  if (--entry.users > 0) return;
  pools.delete(key);
  await pool.terminate();
}

export interface WorkersStats extends PoolStats {
  /** Ops this backend ran on the calling thread (their queue was below the threshold). */
  readonly inlineOps: number;
  /** Ops this backend handed to the pool. */
  readonly dispatchedOps: number;
  /** Queues submitted to the pool (one job each: usually one per run). */
  readonly dispatchedQueues: number;
  /** Bytes of shared memory in this backend's live tensors (and in buffers a running queue still uses). */
  readonly liveBytes: number;
  /** Bytes of disposed tensors' buffers kept for reuse (at most the peak of `liveBytes`). */
  readonly recycledBytes: number;
  /** Bytes of new SharedArrayBuffers ever allocated: flat across repeated runs of one shape. */
  readonly allocatedBytes: number;
}

/**
 * The cpu backend's kernels, run block by block on a pool of threads. Tensors live in
 * SharedArrayBuffers; an op is a task descriptor naming them, and each thread writes its own
 * rows of the output in place.
 *
 * Kernels do not run when called: they queue a step and return the output tensor at once. The
 * executor names each run's queue (`useQueue`), so one run's ops form one queue, submitted to
 * the pool as one job when its first result is downloaded (or at the next macrotask, whichever
 * comes first); the threads then go from op to op by themselves, each op waiting in shared
 * memory only for the ops it reads. A queue whose total work is under the inline threshold runs
 * on the calling thread instead. Buffers of tensors disposed while their queue is still open are
 * reused by the queue's later ops (after the ops that used them), so a run holds no more memory
 * than it did op by op.
 */
export class WorkersBackend implements Backend<WorkersTensor> {
  readonly name = 'workers';
  readonly threads: number;
  readonly inlineThreshold: number;
  readonly #pool: WorkerPool;
  readonly #live = new Set<WorkersTensor>();
  readonly #buffers = new BufferRecycler();
  /** Open queues by key: a run's token from `useQueue`, or `#directKey` for calls outside runs. */
  readonly #open = new Map<object, OpQueue>();
  readonly #directKey = {};
  #scope: object | null = null;
  #flushScheduled = false;
  #poison = false;
  /** Set first thing in destroy(): no new work, nothing recycled. */
  #dead = false;
  #destroyed: Promise<void> | null = null;
  #inlineOps = 0;
  #dispatchedOps = 0;
  #dispatchedQueues = 0;

  /** Use `WorkersBackend.create` (or the factory): the pool must be up before the first op. */
  private constructor(pool: WorkerPool, inlineThreshold: number) {
    this.#pool = pool;
    this.threads = pool.threads;
    this.inlineThreshold = inlineThreshold;
  }

  static async create(options?: BackendCreateOptions): Promise<WorkersBackend> {
    const { threads, inlineThreshold, start } = resolveOptions(options);
    const problem = sharedMemoryProblem() ?? (await threadSupport());
    // Never fall back to copying tensors into messages: that would be a different, slower backend.
    if (problem) throw new QkvError('CAPABILITY', `workers backend: ${problem}`);
    // Compiled asynchronously here because queues under the threshold run these kernels on this
    // thread, and browsers refuse a synchronous compile of that size on the main thread.
    await (cpuKernels as { preloadFastKernels?: () => Promise<string | null> }).preloadFastKernels?.();
    const pool = await acquirePool(threads ?? (await defaultThreadCount()), start);
    return new WorkersBackend(pool, inlineThreshold);
  }

  #assertUsable(): void {
    if (this.#dead) throw new QkvError('DISPOSED', 'workers backend: used after destroy()');
  }

  /** A new tensor on a recycled or new buffer, for data written right now on this thread. */
  #make(shape: readonly number[]): WorkersTensor {
    this.#assertUsable();
    const t = new WorkersTensor(shape, this.#buffers.take(sizeOf(shape) * Float32Array.BYTES_PER_ELEMENT));
    this.#live.add(t);
    return t;
  }

  upload(t: Tensor): WorkersTensor {
    const out = this.#make([...t.shape]);
    out.data.set(t.data);
    return out;
  }

  /**
   * Resolves once `t`'s data is computed: submits the queue that writes it, if still open, and
   * waits for it (rejecting as that queue did). What `download` waits for, without the copy.
   */
  async ready(t: WorkersTensor): Promise<void> {
    d(t);
    const queue = t.writer?.queue;
    if (queue) {
      this.#submit(queue);
      await queue.done;
    }
    if (t.error !== null) throw t.error;
  }

  async download(t: WorkersTensor): Promise<Tensor> {
    await this.ready(t);
    // A private, ordinary (non-shared) copy: the caller may keep or transfer it. Copied as bytes:
    // `new Float32Array(sharedView)` goes element by element (~5 ms per MiB here, measured),
    // a byte-view `set` is a memcpy (~0.1 ms).
    const src = d(t);
    const data = new Float32Array(src.length);
    new Uint8Array(data.buffer).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    return { shape: [...t.shape], data };
  }

  dispose(t: WorkersTensor): void {
    t.disposed = true;
    // Only a tensor this instance still owns goes back, and only once (disposing twice must not
    // hand one buffer to two later tensors).
    if (!this.#live.delete(t)) return;
    // Used only by its own still-open queue: later steps of that queue may take the buffer.
    if (t.uses.size === 1 && t.error === null) {
      const [queue, steps] = t.uses.entries().next().value as [OpQueue, number[]];
      if (queue.state === 'open') {
        queue.free.push({ buf: t.data.buffer as SharedArrayBuffer, after: steps });
        t.released = true;
        return;
      }
    }
    this.#release(t);
  }

  /**
   * Gives a disposed tensor's buffer back once no queue that uses it is pending. The output of a
   * failed queue is dropped instead: a thread can still be inside one of its blocks, writing.
   */
  #release(t: WorkersTensor): void {
    if (!t.disposed || t.released || t.uses.size > 0 || this.#live.has(t)) return;
    t.released = true;
    const buf = t.data.buffer as SharedArrayBuffer;
    if (t.error !== null || this.#dead) this.#buffers.drop(buf);
    else this.#buffers.give(buf);
  }

  liveTensors(): number {
    return this.#live.size;
  }

  stats(): WorkersStats {
    const { live, free, allocated } = this.#buffers.bytes();
    return {
      ...this.#pool.stats(),
      inlineOps: this.#inlineOps,
      dispatchedOps: this.#dispatchedOps,
      dispatchedQueues: this.#dispatchedQueues,
      liveBytes: live,
      recycledBytes: free,
      allocatedBytes: allocated,
    };
  }

  /**
   * Testing aid for fault recovery (`WorkerPool.injectFault`): the next job the shared pool runs
   * on its threads (from any handle on that pool; a job is one submitted queue) fails: the thread
   * that claims its first block throws an uncaught error ('throw') or exits ('exit', Node only:
   * browsers report no exit), so that queue, and the run it belongs to, rejects with
   * WORKER_FAILED; the pool replaces the thread.
   */
  injectWorkerFault(kind: 'throw' | 'exit'): void {
    this.#pool.injectFault(kind);
  }

  /**
   * Testing aid: while on, every op output that gets a buffer no pending op uses is filled with
   * NaN when the op is queued. Kernels write every element of their output, which is why outputs
   * are not zero-filled; with this on, a kernel that skipped one would show NaN in results.
   */
  poisonOutputs(on: boolean): void {
    this.#poison = on;
  }

  /**
   * Names the queue the next kernel calls go to. The executor calls it with one token per run
   * right before each of that run's kernel calls (and with null after), so a run's ops form one
   * job and concurrent runs stay apart: a worker failure rejects only the run whose job it hit.
   * Calls outside any token share one queue.
   */
  useQueue(token: object | null): void {
    this.#scope = token;
  }

  /** Submits every open queue now (they are submitted by themselves on download or at the next macrotask). */
  flush(): void {
    for (const queue of [...this.#open.values()]) this.#submit(queue);
  }

  #openQueue(): OpQueue {
    const key = this.#scope ?? this.#directKey;
    let queue = this.#open.get(key);
    if (!queue) {
      queue = new OpQueue(key);
      this.#open.set(key, queue);
      // Nothing may stay queued forever (a run that failed before its download, direct kernel
      // calls whose outputs are only disposed): submit whatever is still open at the next
      // macrotask. A run downloads, and so submits, long before.
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setTimeout(() => {
          this.#flushScheduled = false;
          if (!this.#dead) this.flush();
        }, 0);
      }
    }
    return queue;
  }

  /**
   * Queues one op and returns its output at once. `inputs` are the tensors it reads; `inPlace`
   * a tensor it writes instead of a new output (the KV cache). The step waits for the steps of
   * its queue that write what it reads (and, writing in place, for every step that uses the
   * target); where another queue still has to write (or read) them, this queue starts after that
   * one, which is submitted now so that open queues never wait for each other.
   */
  #enqueue(
    shape: readonly number[] | null,
    inputs: readonly (WorkersTensor | null)[],
    build: (out: Float32Array) => SliceTask,
    inPlace: WorkersTensor | null = null,
  ): WorkersTensor {
    this.#assertUsable();
    const queue = this.#openQueue();
    const deps = new Set<number>();
    for (const t of inputs) if (t !== null) this.#order(queue, deps, t, false);
    let out: WorkersTensor;
    if (inPlace !== null) {
      this.#order(queue, deps, inPlace, true);
      out = inPlace;
    } else {
      out = this.#output(queue, shape as readonly number[], deps);
    }
    // Inputs were checked above (`#order`), so building the descriptor cannot throw.
    const task = build(out.data);
    const step = queue.steps.length;
    queue.steps.push({ task, deps: [...deps].sort((x, y) => x - y) });
    queue.work += dispatchWork(task);
    for (const t of [...inputs, out]) if (t !== null) this.#use(queue, t, step);
    out.writer = { queue, step };
    return out;
  }

  /**
   * Adds to `deps` the steps of `queue` that must be done before a step that reads (or, `writes`,
   * overwrites) `t`; a pending other queue that writes it (or, `writes`, uses it at all) is
   * submitted and this queue starts after it.
   */
  #order(queue: OpQueue, deps: Set<number>, t: WorkersTensor, writes: boolean): void {
    d(t);
    if (t.error !== null) throw t.error;
    for (const [other, steps] of t.uses) {
      if (!writes && t.writer?.queue !== other) continue;
      if (other === queue) {
        if (writes) for (const s of steps) deps.add(s);
        else deps.add((t.writer as { step: number }).step);
      } else {
        this.#submit(other);
        queue.after.add(other);
      }
    }
  }

  /**
   * A new tensor for the output of the step about to be queued on `queue`: on the buffer of a
   * tensor the queue is done with when one of the size is free (the step then also waits for
   * every step that used it), else on a recycled or new buffer.
   */
  #output(queue: OpQueue, shape: readonly number[], deps: Set<number>): WorkersTensor {
    const bytes = sizeOf(shape) * Float32Array.BYTES_PER_ELEMENT;
    const i = queue.free.findIndex((f) => f.buf.byteLength === bytes);
    let buf: SharedArrayBuffer;
    if (i >= 0) {
      const [f] = queue.free.splice(i, 1) as [{ buf: SharedArrayBuffer; after: readonly number[] }];
      buf = f.buf;
      for (const s of f.after) deps.add(s);
    } else {
      buf = this.#buffers.take(bytes);
      if (this.#poison) new Float32Array(buf).fill(Number.NaN);
    }
    const out = new WorkersTensor(shape, buf);
    this.#live.add(out);
    return out;
  }

  /** Records that step `step` of `queue` (its newest) reads or writes `t`. */
  #use(queue: OpQueue, t: WorkersTensor, step: number): void {
    queue.tensors.add(t);
    const steps = t.uses.get(queue);
    if (!steps) t.uses.set(queue, [step]);
    else if (steps.at(-1) !== step) steps.push(step);
  }

  /**
   * Runs a queue: on the calling thread when its total work is under the threshold, else as one
   * job on the pool; first waits for the queues it reads from.
   */
  #submit(queue: OpQueue): void {
    if (queue.state !== 'open') return;
    queue.state = 'running';
    this.#open.delete(queue.key);
    const start = (): void | Promise<void> => {
      for (const a of queue.after) if (a.state === 'failed') throw a.error;
      if (this.#dead) throw new QkvError('DISPOSED', 'workers backend: destroyed before this run could start');
      if (queue.work < this.inlineThreshold) {
        this.#inlineOps += queue.steps.length;
        for (const { task } of queue.steps) runSlice(task, 0, rowsOfTask(task));
        return;
      }
      this.#dispatchedOps += queue.steps.length;
      this.#dispatchedQueues++;
      return this.#pool.run(queue.steps);
    };
    const waits = [...queue.after].filter((a) => a.state === 'running').map((a) => a.done);
    let run: Promise<void>;
    try {
      run = waits.length > 0 ? Promise.all(waits).then(start) : Promise.resolve(start());
    } catch (e) {
      run = Promise.reject(e);
    }
    queue.done = run.then(
      () => this.#settle(queue, null),
      (e: unknown) => {
        this.#settle(queue, e ?? new Error('workers backend: queue failed'));
        throw e;
      },
    );
    // Observed through download(); a queue nobody downloads must not count as unhandled.
    queue.done.catch(() => {});
  }

  /** Marks a queue done or failed and releases what only it still used. */
  #settle(queue: OpQueue, error: unknown): void {
    queue.state = error === null ? 'done' : 'failed';
    queue.error = error;
    for (const t of queue.tensors) {
      t.uses.delete(queue);
      if (t.writer?.queue === queue) {
        const inPlace = queue.steps[t.writer.step]?.task.op === 'writeRows';
        t.writer = null;
        // A failed queue's outputs are garbage, except a tensor written in place (a KV cache):
        // a failed session step does not extend the cache, and the next step overwrites the rows.
        if (error !== null && !inPlace) t.error = error;
      }
      this.#release(t);
    }
    for (const f of queue.free.splice(0)) {
      if (error === null && !this.#dead) this.#buffers.give(f.buf);
      else this.#buffers.drop(f.buf);
    }
  }

  readonly kernels: Kernels<WorkersTensor> = {
    positionalEncoding: (attrs) => {
      // [Lq, dModel], once per graph, written here and now: not worth a thread.
      const out = this.#make([attrs.length, attrs.dModel]);
      out.data.set(cpuKernels.positionalEncoding(attrs));
      return out;
    },
    add: (a, b) => this.#enqueue(a.shape, [a, b], (out) => ({ op: 'add', a: d(a), b: d(b), out })),
    linear: (x, w, bias, attrs) =>
      this.#enqueue([...x.shape.slice(0, -1), attrs.outFeatures], [x, w, bias], (out) => ({
        op: 'linear',
        x: d(x),
        w: d(w),
        bias: data(bias),
        out,
        attrs,
      })),
    scores: (q, k, attrs) =>
      this.#enqueue([attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength], [q, k], (out) => ({
        op: 'scores',
        q: d(q),
        k: d(k),
        out,
        attrs,
      })),
    scale: (s, attrs) => this.#enqueue(s.shape, [s], (out) => ({ op: 'scale', s: d(s), out, attrs })),
    mask: (s, pad, am, attrs) =>
      this.#enqueue(s.shape, [s, pad, am], (out) => ({
        op: 'mask',
        s: d(s),
        keyPaddingMask: data(pad),
        attnMask: data(am),
        out,
        attrs,
      })),
    softmax: (s, attrs) => this.#enqueue(s.shape, [s], (out) => ({ op: 'softmax', s: d(s), out, attrs })),
    weightedSum: (w, v, attrs) =>
      this.#enqueue([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim], [w, v], (out) => ({
        op: 'weightedSum',
        weights: d(w),
        v: d(v),
        out,
        attrs,
      })),
    rotary: (x, attrs) => this.#enqueue(x.shape, [x], (out) => ({ op: 'rotary', x: d(x), out, attrs })),
    // KV-cache append: a copy of t rows into the session's shared cache, queued like any op (the
    // rows are usually a queued projection's output); the kernels read the cache at stride
    // attrs.keyCapacity, which the cpu kernels honour.
    writeRows: (cache, rows, attrs) => {
      // Checked now, not in a thread: a bad offset is the caller's error, not a worker failure.
      if (attrs.offset + attrs.rows > attrs.capacity) {
        throw new RangeError(
          `writeRows: rows ${attrs.offset} … ${attrs.offset + attrs.rows - 1} do not fit a cache of ${attrs.capacity}`,
        );
      }
      return this.#enqueue(
        null,
        [rows],
        (cacheData) => ({ op: 'writeRows', cache: cacheData, rows: d(rows), attrs }),
        cache,
      );
    },
  };

  readonly fused: FusedKernels<WorkersTensor> = {
    fusedAttention: (q, k, v, pad, am, attrs) =>
      this.#enqueue([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim], [q, k, v, pad, am], (out) => ({
        op: 'fusedAttention',
        q: d(q),
        k: d(k),
        v: d(v),
        keyPaddingMask: data(pad),
        attnMask: data(am),
        out,
        attrs,
      })),
  };

  /** Releases this instance's share of the pool; the threads end with the pool's last user. */
  destroy(): Promise<void> {
    this.#dead = true;
    this.#destroyed ??= (async () => {
      // Queued work that nobody waited for is abandoned (its queues reject with DISPOSED).
      for (const queue of [...this.#open.values()]) this.#submit(queue);
      for (const t of this.#live) {
        t.disposed = true;
        t.released = true;
        this.#buffers.drop(t.data.buffer as SharedArrayBuffer);
      }
      this.#live.clear();
      this.#buffers.clear();
      await releasePool(this.#pool);
    })();
    return this.#destroyed;
  }
}

/** The workers backend's factory: register it with `registry.register(workersBackend)`. */
export const workersBackend: BackendFactory = {
  name: 'workers',
  priority: 20,
  description: 'the cpu kernels on a pool of threads (worker_threads / Web Workers) over SharedArrayBuffer',
  // The cpu kernels run RoPE, ALiBi and the window from plain attrs; maskMod/scoreMod are
  // functions, which cannot travel to a thread (structured clone refuses them).
  supports: (config) =>
    config.maskMod !== null || config.scoreMod !== null
      ? 'maskMod/scoreMod are JavaScript functions and cannot be sent to worker threads; use the cpu backend'
      : true,
  optionKeys: [...OPTION_KEYS],
  isAvailable: async (): Promise<Availability> => {
    const problem = sharedMemoryProblem() ?? (await threadSupport());
    return problem ? { available: false, reason: problem } : { available: true };
  },
  create: (options) => WorkersBackend.create(options),
};
