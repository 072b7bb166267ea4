/**
 * How the pool's threads start, how long it waits for them, and what a user is told when they do
 * not: the start-up half of the pool (thread scheduling stays in pool.ts).
 */

/** After this many threads in a row die before saying 'ready', the pool stops respawning. */
export const MAX_STARTUP_FAILURES = 3;

/**
 * How long the pool waits for its first thread to say 'ready' before it gives up (a worker script
 * that loads but is not qkv's worker, or a browser that never reports the failure). A thread
 * starts in well under a second; once one is up the script is right and the rest are only slow.
 */
export const DEFAULT_START_TIMEOUT_MS = 5000;

/** How the pool's threads start. */
export interface PoolStart {
  /** The worker script (`backendOptions.workerUrl`); null: dist/worker.js next to this package. */
  readonly workerUrl: string | URL | null;
  /** Milliseconds until the first thread must have said 'ready'. */
  readonly timeoutMs: number;
}

/** What a user can do when threads do not start, appended to every start-up WORKER_FAILED. */
export function startAdvice(workerUrl: string | URL | null): string {
  const where =
    workerUrl === null
      ? "the worker script is @qkv/backend-workers's dist/worker.js, found through new URL('./worker.js', import.meta.url)"
      : `the worker script is backendOptions.workerUrl = ${String(workerUrl)}`;
  return (
    `${where}. If your bundler does not emit it (esbuild, or a copied bundle), serve ` +
    `@qkv/backend-workers/worker (node_modules/@qkv/backend-workers/dist/worker.js, one self-contained ` +
    `ES module) and pass backendOptions: { workerUrl: '/that/url.js' }; in browsers the page must also be ` +
    `cross-origin isolated (Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp)`
  );
}
