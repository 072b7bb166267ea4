import { cpuKernels, type KernelBuild } from '@qkv/backend-cpu';
import type {
  Availability,
  Backend,
  BackendCreateOptions,
  BackendFactory,
  FusedKernels,
  Kernels,
  Tensor,
} from '@qkv/core';
import { QkvError } from '@qkv/core';
import { workersFused } from './decode.js';
import { OPS } from './ops.js';
import { OPTION_KEYS, resolveOptions } from './options.js';
import { defaultThreadCount, threadSupport, usesWebWorkers } from './platform.js';
import { type PoolStart, type PoolStats, WorkerPool } from './pool.js';
import { Scheduler } from './queue.js';
import { d, type WorkersTensor } from './tensor.js';

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
 * SharedArrayBuffers; an op is a task descriptor naming them (ops.ts), and each thread writes its
 * own rows of the output in place. Kernels queue their op and return at once; a run's queue goes
 * to the pool as one job (queue.ts).
 */
export class WorkersBackend implements Backend<WorkersTensor> {
  readonly name = 'workers';
  /** Packed sequences: mask and fusedAttention take `sequenceIds` to every thread. */
  readonly inputs = ['sequenceIds'] as const;
  readonly threads: number;
  readonly inlineThreshold: number;
  /** The cpu kernel build every thread runs `linear` and `fusedAttention` with. */
  readonly kernelBuild: KernelBuild;
  readonly #pool: WorkerPool;
  readonly #s: Scheduler;
  #destroyed: Promise<void> | null = null;

  /** Use `WorkersBackend.create` (or the factory): the pool must be up before the first op. */
  private constructor(pool: WorkerPool, inlineThreshold: number, kernelBuild: KernelBuild) {
    this.#pool = pool;
    this.threads = pool.threads;
    this.inlineThreshold = inlineThreshold;
    this.kernelBuild = kernelBuild;
    this.#s = new Scheduler(pool, inlineThreshold);
    const q = this.#s.enqueueOp;
    this.kernels = {
      positionalEncoding: (attrs) => {
        // [Lq, dModel], once per graph, written here and now: not worth a thread.
        const out = this.#s.make([attrs.length, attrs.dModel]);
        out.data.set(cpuKernels.positionalEncoding(attrs));
        return out;
      },
      add: OPS.add.kernel(q, kernelBuild),
      linear: OPS.linear.kernel(q, kernelBuild),
      scores: OPS.scores.kernel(q, kernelBuild),
      scale: OPS.scale.kernel(q, kernelBuild),
      mask: OPS.mask.kernel(q, kernelBuild),
      softmax: OPS.softmax.kernel(q, kernelBuild),
      weightedSum: OPS.weightedSum.kernel(q, kernelBuild),
      rotary: OPS.rotary.kernel(q, kernelBuild),
      writeRows: OPS.writeRows.kernel(q, kernelBuild),
      logSumExp: OPS.logSumExp.kernel(q, kernelBuild),
    };
    this.fused = workersFused(this.#s, this.threads, kernelBuild);
  }

  readonly kernels: Kernels<WorkersTensor>;
  readonly fused: FusedKernels<WorkersTensor>;

  static async create(options?: BackendCreateOptions): Promise<WorkersBackend> {
    const { threads, inlineThreshold, start, kernelBuild } = resolveOptions(options);
    const problem = sharedMemoryProblem() ?? (await threadSupport());
    // Never fall back to copying tensors into messages: that would be a different, slower backend.
    if (problem) throw new QkvError('CAPABILITY', `workers backend: ${problem}`);
    // Compiled asynchronously here because queues under the threshold run these kernels on this
    // thread, and browsers refuse a synchronous compile of that size on the main thread.
    if (kernelBuild !== 'reference') {
      const kernelProblem = await cpuKernels.preloadFastKernels(kernelBuild);
      if (kernelProblem)
        throw new QkvError('CAPABILITY', `workers backend: kernels '${kernelBuild}': ${kernelProblem}`);
    }
    const pool = await acquirePool(threads ?? (await defaultThreadCount()), start);
    return new WorkersBackend(pool, inlineThreshold, kernelBuild);
  }

  upload(t: Tensor): WorkersTensor {
    const out = this.#s.makeWeight([...t.shape]);
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
      this.#s.submit(queue);
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
    this.#s.dispose(t);
  }

  /** A zero KV cache in the decode arena (split-KV decode reads it in place on every thread). */
  allocateCache(shape: readonly number[], data?: Float32Array): WorkersTensor {
    return this.#s.allocateCache(shape, data);
  }

  liveTensors(): number {
    return this.#s.live.size;
  }

  stats(): WorkersStats {
    const { live, free, allocated } = this.#s.buffers.bytes();
    return {
      ...this.#pool.stats(),
      inlineOps: this.#s.inlineOps,
      dispatchedOps: this.#s.dispatchedOps,
      dispatchedQueues: this.#s.dispatchedQueues,
      liveBytes: live,
      recycledBytes: free,
      allocatedBytes: allocated,
    };
  }

  /**
   * Testing aid: per thread of the shared pool (every handle on it together), the weight tensors
   * it holds packed for `linear` and its modules' resident bytes (null: the thread failed first).
   * Each thread answers after the lease it is in.
   */
  preparedStats(): Promise<({ weights: number; residentBytes: number } | null)[]> {
    return this.#pool.preparedStats();
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
    this.#s.poison = on;
  }

  /**
   * Names the queue the next kernel calls go to. The executor calls it with one token per run
   * right before each of that run's kernel calls (and with null after), so a run's ops form one
   * job and concurrent runs stay apart: a worker failure rejects only the run whose job it hit.
   * Calls outside any token share one queue.
   */
  useQueue(token: object | null): void {
    this.#s.scope = token;
  }

  /** Submits every open queue now (they are submitted by themselves on download or at the next macrotask). */
  flush(): void {
    this.#s.flush();
  }

  /** Releases this instance's share of the pool; the threads end with the pool's last user. */
  destroy(): Promise<void> {
    this.#s.dead = true;
    this.#destroyed ??= (async () => {
      // Queued work that nobody waited for is abandoned (its queues reject with DISPOSED).
      this.#s.destroy();
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
