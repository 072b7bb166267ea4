/**
 * The worker entry, the same file for worker_threads and Web Workers. It holds no state between
 * leases: each lease names a job's shared tensors and its claim counter; the worker claims
 * blocks of rows until none are left or its time slice is over, then reports how many it did.
 */
import { cpuKernels } from '@qkv/backend-cpu';
import { blockRange, runSlice } from './ops.js';
import { DONE_BLOCKS, type FromWorker, type Lease, NEXT_BLOCK } from './protocol.js';

/** Fault injection: crash the way a broken kernel or a dying thread would. */
function crash(kind: 'throw' | 'exit'): never {
  if (kind === 'exit') {
    const proc = (globalThis as { process?: { exit(code: number): never } }).process;
    if (proc) proc.exit(70);
    (globalThis as unknown as { close(): void }).close();
  }
  throw new Error('injected fault: this worker throws (test)');
}

/** Versions of @qkv/backend-cpu without reuse scopes simply pack per block. */
const kernels = cpuKernels as {
  beginPackScope?: () => void;
  endPackScope?: () => void;
  preloadFastKernels?: () => Promise<string | null>;
};

function work(lease: Lease): number {
  const start = performance.now();
  // All blocks of one lease are one op over the same immutable inputs: W (linear) or a head's K/V
  // (fusedAttention) is packed once per lease, not once per block, so blocks can stay small.
  kernels.beginPackScope?.();
  try {
    return claim(lease, start);
  } finally {
    kernels.endPackScope?.();
  }
}

function claim(lease: Lease, start: number): number {
  let done = 0;
  for (;;) {
    const b = Atomics.add(lease.ctrl, NEXT_BLOCK, 1);
    if (b >= lease.blocks) break;
    // Fault injection (WorkerPool.injectFault): every lease of the armed job carries the fault;
    // the thread that claims block 0, which every job has and claims exactly once, crashes, after
    // claiming and before computing it, so the job can never complete and its run must reject.
    if (lease.fault && b === 0) crash(lease.fault);
    const [from, to] = blockRange(lease, lease.rows, b);
    runSlice(lease.task, from, to);
    done++;
    if (performance.now() - start >= lease.sliceMs && Atomics.load(lease.queue, 0) > 1) break;
  }
  // The atomic add publishes this thread's writes to `out` before the main thread reads DONE.
  if (done > 0) Atomics.add(lease.ctrl, DONE_BLOCKS, done);
  return done;
}

interface Port {
  post(m: FromWorker): void;
  listen(handler: (m: Lease) => void): void;
}

async function connect(): Promise<Port> {
  if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined') {
    const scope = globalThis as unknown as {
      postMessage(m: unknown): void;
      onmessage: ((e: MessageEvent<Lease>) => void) | null;
    };
    return {
      post: (m) => scope.postMessage(m),
      listen: (handler) => {
        scope.onmessage = (e) => handler(e.data);
      },
    };
  }
  const name = 'node:worker_threads';
  const { parentPort } = (await import(/* @vite-ignore */ name)) as typeof import('node:worker_threads');
  if (!parentPort) throw new Error('qkv workers: worker.js must run as a worker thread');
  return {
    post: (m) => parentPort.postMessage(m),
    listen: (handler) => parentPort.on('message', handler),
  };
}

const port = await connect();
// Not caught on purpose: an exception is a worker failure; the pool rejects the run and
// replaces this thread.
port.listen((lease) => port.post({ type: 'done', job: lease.job, blocks: work(lease) }));
// Compile the WebAssembly kernels before saying ready, not inside the first lease: that would
// charge ~the compile time to one block of the first run and unbalance it. Versions of
// @qkv/backend-cpu without them have no preload; a runtime without SIMD resolves with the reason
// and the kernels fall back to the reference ones by themselves.
await kernels.preloadFastKernels?.();
port.post({ type: 'ready' });
