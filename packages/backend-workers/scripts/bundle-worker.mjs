/**
 * Rewrites dist/worker.js (tsc's output, which imports its sibling modules (ops, plan, protocol) and
 * @qkv/backend-cpu) as one self-contained ES module: what `@qkv/backend-workers/worker` exports,
 * what a user copies next to an app whose bundler does not follow
 * `new URL('./worker.js', import.meta.url)`, and what vite and webpack bundle as the worker under
 * their default settings (no imports left to split, no top-level await).
 */
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
await build({
  entryPoints: [`${dist}worker.js`],
  outfile: `${dist}worker.js`,
  allowOverwrite: true,
  bundle: true,
  format: 'esm',
  // Runs in worker_threads and in Web Workers; the one Node builtin is imported by a computed name.
  platform: 'neutral',
  target: 'es2022',
  sourcemap: false,
  logLevel: 'warning',
});
// tsc's map describes the unbundled file.
await rm(`${dist}worker.js.map`, { force: true });
