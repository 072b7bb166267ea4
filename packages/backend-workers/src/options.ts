import { cpuKernels, type KernelBuild, type KernelChoice } from '@qkv/backend-cpu';
import { assertKnownKeys, type BackendCreateOptions, describeValue, QkvError } from '@qkv/core';
import { DEFAULT_START_TIMEOUT_MS, type PoolStart } from './pool.js';

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
  /**
   * The cpu kernels every thread runs, as the cpu backend's option: 'fast' (default: the best
   * WebAssembly build here, relaxed-SIMD FMA or SIMD128), 'relaxed-simd', 'simd128', 'reference'.
   */
  kernels?: KernelChoice;
}

export const OPTION_KEYS = new Set(['threads', 'inlineThreshold', 'workerUrl', 'startTimeout', 'kernels']);

/** Upper bound on `startTimeout` (ms): long enough for any real start, short of a hang. */
const MAX_START_TIMEOUT_MS = 120_000;

export function resolveOptions(options: BackendCreateOptions | undefined): {
  threads: number | null;
  inlineThreshold: number;
  start: PoolStart;
  kernelBuild: KernelBuild;
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
  // Resolved once, on the calling thread: the build travels to the threads in each task.
  const kernelBuild = cpuKernels.resolveKernelChoice(o.kernels, 'workers');
  return { threads, inlineThreshold, start: resolveStart(o), kernelBuild };
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
