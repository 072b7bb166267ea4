/**
 * The only place that knows whether threads are `worker_threads` (Node) or Web Workers
 * (browsers). Everything above it sees a `Thread`: post a message, hear back, learn that it
 * failed, terminate it.
 */

import type { FromWorker } from './protocol.js';

export interface ThreadEvents {
  message(m: FromWorker): void;
  /** The thread threw an uncaught error, died, or could not deserialise a message. */
  failed(reason: string): void;
}

export interface Thread {
  post(message: unknown): void;
  /** Keeps the Node process alive while the thread has work; no-op in browsers. */
  ref(): void;
  /** Lets the Node process exit while the thread idles; no-op in browsers. */
  unref(): void;
  /** Stops the thread; resolves once it has ended. Idempotent. */
  terminate(): Promise<void>;
}

type NodeWorkerThreads = typeof import('node:worker_threads');
type NodeOs = typeof import('node:os');

let nodeThreads: Promise<NodeWorkerThreads> | null = null;

/**
 * Imported by a computed name so that bundlers (vite, webpack, esbuild) leave it alone: the
 * browser build never reaches this line, and a static import would make them stub or fail on a
 * Node builtin.
 */
function importNode<T>(name: string): Promise<T> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name) as Promise<T>;
}

/** Web Workers when the global exists (browsers, Deno, Bun); Node's worker_threads otherwise. */
export function usesWebWorkers(): boolean {
  return typeof (globalThis as { Worker?: unknown }).Worker === 'function';
}

let live = 0;

/**
 * Threads started and not yet ended, process-wide. In Node a thread counts until its 'exit'
 * event, i.e. until the OS thread is really gone; browsers report no exit, so there it counts
 * until `terminate()`.
 */
export function liveThreads(): number {
  return live;
}

/** The machine's parallelism: `os.availableParallelism()` or `navigator.hardwareConcurrency`. */
export async function defaultThreadCount(): Promise<number> {
  if (usesWebWorkers()) {
    const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
    return typeof n === 'number' && n > 0 ? n : 1;
  }
  const os = await importNode<NodeOs>('node:os');
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : Math.max(1, os.cpus().length);
}

/** Whether threads can start here at all; `null` when they can, else why not. */
export async function threadSupport(): Promise<string | null> {
  if (usesWebWorkers()) return null;
  try {
    const wt = await importNode<NodeWorkerThreads>('node:worker_threads');
    return typeof wt.Worker === 'function' ? null : 'node:worker_threads has no Worker';
  } catch (e) {
    return `neither Web Workers nor node:worker_threads exist here (${e instanceof Error ? e.message : String(e)})`;
  }
}

/**
 * Where the worker script is: `workerUrl` (the `backendOptions.workerUrl` the user gave, for
 * bundlers that do not follow `new URL('./worker.js', import.meta.url)`), or that URL itself.
 */
export async function spawnThread(events: ThreadEvents, workerUrl: string | URL | null): Promise<Thread> {
  return usesWebWorkers() ? spawnWebWorker(events, workerUrl) : spawnNodeWorker(events, workerUrl);
}

function spawnWebWorker(events: ThreadEvents, workerUrl: string | URL | null): Thread {
  // The default is written exactly like this so that vite and webpack recognise the worker, emit
  // worker.js (bundled) and rewrite the URL to it.
  const w = workerUrl
    ? new Worker(workerUrl, { type: 'module' })
    : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  let ended = false;
  live++;
  w.onmessage = (e: MessageEvent<FromWorker>) => events.message(e.data);
  w.onerror = (e: ErrorEvent) => {
    // Handled here: without preventDefault the page would also report it as its own error.
    e.preventDefault();
    events.failed(`threw: ${e.message || 'an uncaught error (the browser gave no message)'}`);
  };
  w.onmessageerror = () => events.failed('could not deserialise a message');
  return {
    post: (m) => w.postMessage(m),
    ref: () => {},
    unref: () => {},
    terminate: async () => {
      if (ended) return;
      ended = true;
      w.terminate();
      live--;
    },
  };
}

async function spawnNodeWorker(events: ThreadEvents, workerUrl: string | URL | null): Promise<Thread> {
  nodeThreads ??= importNode<NodeWorkerThreads>('node:worker_threads');
  const { Worker: NodeWorker } = await nodeThreads;
  // dist/worker.js next to this file; worker_threads cannot load TypeScript, hence the built file.
  // worker_threads reads a string as a file path, so a 'file:' URL given as a string becomes a URL.
  const script =
    workerUrl === null
      ? new URL('./worker.js', import.meta.url)
      : typeof workerUrl === 'string' && workerUrl.startsWith('file:')
        ? new URL(workerUrl)
        : workerUrl;
  const w = new NodeWorker(script);
  live++;
  let terminating = false;
  const exited = new Promise<void>((resolve) => {
    w.once('exit', (code) => {
      live--;
      if (!terminating) events.failed(`exited with code ${code}`);
      resolve();
    });
  });
  w.on('message', (m: FromWorker) => events.message(m));
  w.on('error', (e: unknown) => {
    events.failed(`threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  });
  w.on('messageerror', () => events.failed('could not deserialise a message'));
  return {
    post: (m) => w.postMessage(m),
    ref: () => w.ref(),
    unref: () => w.unref(),
    terminate: async () => {
      terminating = true;
      await w.terminate();
      await exited;
    },
  };
}
