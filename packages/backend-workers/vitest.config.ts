import { chromiumLaunchOptions } from '@qkv/chromium';
import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

/**
 * One `vitest run`, two projects:
 *  - node: test/shared + test/node, in Node (worker_threads);
 *  - browser: test/shared + test/browser, in headless Chromium (Web Workers), served with
 *    COOP/COEP so the page is cross-origin isolated and SharedArrayBuffer exists.
 * Tests import the package from ../dist: worker_threads cannot load TypeScript, so the worker
 * entry must be the built dist/worker.js (`pnpm test` builds first; turbo's test task too).
 */
const crossOriginIsolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  server: { headers: crossOriginIsolation },
  test: {
    // Bounds a hang, not a speed: on the shared 2-core CI VM under a load average of ~30 the
    // L = 2048 shared-memory test took 68 s (13 s when the machine is quiet).
    testTimeout: 180_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          environment: 'node',
          include: ['test/shared/**/*.test.ts', 'test/node/**/*.test.ts'],
          // `node --experimental-wasm-relaxed-simd …/vitest run` (Node 20) reaches the test workers.
          execArgv: process.execArgv.filter((a) => a.startsWith('--experimental-wasm')),
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/shared/**/*.test.ts', 'test/browser/**/*.test.ts'],
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({
              launchOptions: chromiumLaunchOptions(),
            }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
