import { chromiumLaunchOptions } from '@qkv/chromium';
import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

/**
 * One `vitest run`, two projects:
 *  - node: every test;
 *  - browser: the conformance suite on each WebAssembly build and the build detection, in
 *    headless Chromium (Debian's, never a downloaded one), so both builds are proven where most
 *    users load them. Served cross-origin isolated, as an app using the decode arena's shared
 *    memory must be.
 */
const crossOriginIsolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  server: { headers: crossOriginIsolation },
  test: {
    testTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          environment: 'node',
          include: ['test/**/*.test.ts'],
          // `node --experimental-wasm-relaxed-simd …/vitest run` (Node 20) reaches the test workers
          // too, so the relaxed-SIMD build can be tested where it is behind that flag.
          execArgv: process.execArgv.filter((a) => a.startsWith('--experimental-wasm')),
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/conformance.test.ts', 'test/builds.test.ts', 'test/prepared.test.ts'],
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({ launchOptions: chromiumLaunchOptions() }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
