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
  type MaybePromise,
  QkvError,
  sizeOf,
  type Tensor,
} from '@qkv/core';
import { BufferRecycler } from './buffers.js';
import { dispatchWork, rowsOfTask, runSlice, type SliceTask } from './ops.js';
import { defaultThreadCount, threadSupport, usesWebWorkers } from './platform.js';
import { type PoolStats, WorkerPool } from './pool.js';

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
}

const OPTION_KEYS = new Set(['threads', 'inlineThreshold']);

/**
 * A tensor on a SharedArrayBuffer, so every thread reads and writes it in place. After
 * `dispose` its buffer may back another tensor of the same backend (see `BufferRecycler`), so
 * `data` must not be read once `disposed` is set; the kernels' accessors refuse with DISPOSED.
 */
export class WorkersTensor implements BackendTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  disposed = false;
  constructor(shape: readonly number[], buffer: SharedArrayBuffer) {
    this.shape = shape;
    this.data = new Float32Array(buffer, 0, sizeOf(shape));
  }
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
  return { threads, inlineThreshold };
}

/**
 * Pools by thread count, shared by every backend instance (every attention handle) that asked
 * for that many threads, and terminated when the last of them is destroyed. Sharing is what
 * makes concurrent handles fair: their ops meet in one scheduler instead of oversubscribing
 * the cores with a pool each.
 */
const pools = new Map<number, { pool: WorkerPool; users: number }>();

async function acquirePool(threads: number): Promise<WorkerPool> {
  let entry = pools.get(threads);
  if (!entry) {
    entry = { pool: new WorkerPool(threads), users: 0 };
    pools.set(threads, entry);
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
  const entry = pools.get(pool.threads);
  if (!entry || entry.pool !== pool) return;
  if (--entry.users > 0) return;
  pools.delete(pool.threads);
  await pool.terminate();
}

export interface WorkersStats extends PoolStats {
  /** Ops this backend ran on the calling thread (below the threshold). */
  readonly inlineOps: number;
  /** Ops this backend handed to the pool. */
  readonly dispatchedOps: number;
  /** Bytes of shared memory in this backend's live tensors. */
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
 */
export class WorkersBackend implements Backend<WorkersTensor> {
  readonly name = 'workers';
  readonly threads: number;
  readonly inlineThreshold: number;
  readonly #pool: WorkerPool;
  readonly #live = new Set<WorkersTensor>();
  readonly #buffers = new BufferRecycler();
  #destroyed: Promise<void> | null = null;
  #inlineOps = 0;
  #dispatchedOps = 0;

  /** Use `WorkersBackend.create` (or the factory): the pool must be up before the first op. */
  private constructor(pool: WorkerPool, inlineThreshold: number) {
    this.#pool = pool;
    this.threads = pool.threads;
    this.inlineThreshold = inlineThreshold;
  }

  static async create(options?: BackendCreateOptions): Promise<WorkersBackend> {
    const { threads, inlineThreshold } = resolveOptions(options);
    const problem = sharedMemoryProblem() ?? (await threadSupport());
    // Never fall back to copying tensors into messages: that would be a different, slower backend.
    if (problem) throw new QkvError('CAPABILITY', `workers backend: ${problem}`);
    // Compiled asynchronously here because ops under the threshold run these kernels on this
    // thread, and browsers refuse a synchronous compile of that size on the main thread.
    await (cpuKernels as { preloadFastKernels?: () => Promise<string | null> }).preloadFastKernels?.();
    const pool = await acquirePool(threads ?? (await defaultThreadCount()));
    return new WorkersBackend(pool, inlineThreshold);
  }

  /**
   * A new tensor, on a recycled buffer when one of the size is free. `zero`: whether stale
   * contents must be cleared (kernel outputs: a kernel may leave elements it does not own, as
   * padding, untouched); an upload overwrites every element anyway.
   */
  #make(shape: readonly number[], zero = true): WorkersTensor {
    if (this.#destroyed) throw new QkvError('DISPOSED', 'workers backend: used after destroy()');
    const t = new WorkersTensor(shape, this.#buffers.take(sizeOf(shape) * Float32Array.BYTES_PER_ELEMENT, zero));
    this.#live.add(t);
    return t;
  }

  upload(t: Tensor): WorkersTensor {
    const out = this.#make([...t.shape], false);
    out.data.set(t.data);
    return out;
  }

  async download(t: WorkersTensor): Promise<Tensor> {
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
    if (this.#live.delete(t)) this.#buffers.give(t.data.buffer as SharedArrayBuffer);
  }

  /**
   * Releases the output of a job that failed without recycling its buffer: a thread can still be
   * inside one of the job's blocks, writing to it, after the run has rejected.
   */
  #discard(t: WorkersTensor): void {
    t.disposed = true;
    if (this.#live.delete(t)) this.#buffers.drop(t.data.buffer as SharedArrayBuffer);
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
      liveBytes: live,
      recycledBytes: free,
      allocatedBytes: allocated,
    };
  }

  /**
   * Testing aid for fault recovery (`WorkerPool.injectFault`): the next op the shared pool runs
   * on its threads (from any handle on that pool) fails: the thread that claims its first block
   * throws an uncaught error ('throw') or exits ('exit', Node only: browsers report no exit), so
   * that op, and the run it belongs to, rejects with WORKER_FAILED; the pool replaces the thread.
   */
  injectWorkerFault(kind: 'throw' | 'exit'): void {
    this.#pool.injectFault(kind);
  }

  /**
   * Allocates the output, builds the task around it and runs it: inline below the threshold,
   * else on the pool.
   */
  #run(shape: readonly number[], build: (out: Float32Array) => SliceTask): MaybePromise<WorkersTensor> {
    const out = this.#make(shape);
    let task: SliceTask;
    try {
      task = build(out.data);
    } catch (e) {
      this.dispose(out);
      throw e;
    }
    const rows = rowsOfTask(task);
    if (dispatchWork(task) < this.inlineThreshold) {
      this.#inlineOps++;
      runSlice(task, 0, rows);
      return out;
    }
    this.#dispatchedOps++;
    return this.#pool.run(task).then(
      () => out,
      (e: unknown) => {
        // The executor never saw this handle, so it cannot free it.
        this.#discard(out);
        throw e;
      },
    );
  }

  readonly kernels: Kernels<WorkersTensor> = {
    positionalEncoding: (attrs) => {
      // [Lq, dModel], once per graph: not worth a thread.
      const out = this.#make([attrs.length, attrs.dModel], false);
      out.data.set(cpuKernels.positionalEncoding(attrs));
      return out;
    },
    add: (a, b) => this.#run(a.shape, (out) => ({ op: 'add', a: d(a), b: d(b), out })),
    linear: (x, w, bias, attrs) =>
      this.#run([...x.shape.slice(0, -1), attrs.outFeatures], (out) => ({
        op: 'linear',
        x: d(x),
        w: d(w),
        bias: data(bias),
        out,
        attrs,
      })),
    scores: (q, k, attrs) =>
      this.#run([attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength], (out) => ({
        op: 'scores',
        q: d(q),
        k: d(k),
        out,
        attrs,
      })),
    scale: (s, attrs) => this.#run(s.shape, (out) => ({ op: 'scale', s: d(s), out, attrs })),
    mask: (s, pad, am, attrs) =>
      this.#run(s.shape, (out) => ({
        op: 'mask',
        s: d(s),
        keyPaddingMask: data(pad),
        attnMask: data(am),
        out,
        attrs,
      })),
    softmax: (s, attrs) => this.#run(s.shape, (out) => ({ op: 'softmax', s: d(s), out, attrs })),
    weightedSum: (w, v, attrs) =>
      this.#run([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim], (out) => ({
        op: 'weightedSum',
        weights: d(w),
        v: d(v),
        out,
        attrs,
      })),
    rotary: (x, attrs) => this.#run(x.shape, (out) => ({ op: 'rotary', x: d(x), out, attrs })),
    // KV-cache append: a copy of t rows into the session's shared cache, on the calling thread
    // (steps are serialised, so no thread is reading the cache meanwhile). The kernels read it
    // at stride attrs.keyCapacity, which the cpu kernels honour.
    writeRows: (cache, rows, attrs) => {
      cpuKernels.writeRows(d(cache), d(rows), attrs);
      return cache;
    },
  };

  readonly fused: FusedKernels<WorkersTensor> = {
    fusedAttention: (q, k, v, pad, am, attrs) =>
      this.#run([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim], (out) => ({
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
    this.#destroyed ??= (async () => {
      for (const t of this.#live) this.#discard(t);
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
  isAvailable: async (): Promise<Availability> => {
    const problem = sharedMemoryProblem() ?? (await threadSupport());
    return problem ? { available: false, reason: problem } : { available: true };
  },
  create: (options) => WorkersBackend.create(options),
};
