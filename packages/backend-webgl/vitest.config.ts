import { chromiumLaunchOptions } from '@qkv/chromium';
import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

/**
 * One `vitest run`, two projects (the package's `test` script wraps it in `xvfb-run -a` when
 * DISPLAY is unset, for headless-gl):
 *  - node: test/shared + test/node on headless-gl (llvmpipe under Xvfb);
 *  - browser: test/shared + test/browser in headless Debian Chromium, WebGL2 on SwiftShader.
 * Both are software GL here: the tests prove correctness, not speed (see `pnpm bench`).
 */
export default defineConfig({
  // gpu.js is a CJS/UMD bundle: pre-bundle it up front so Vite does not discover it mid-run and
  // reload the test page.
  optimizeDeps: { include: ['gpu.js'] },
  test: {
    // Bounds a hang, not a speed: software GL on the shared 2-core CI VM under heavy load ran the
    // precision sweep (19 golden cases, fused and unfused) past 120 s (39 s when quiet).
    testTimeout: 300_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          environment: 'node',
          include: ['test/shared/**/*.test.ts', 'test/node/**/*.test.ts'],
          provide: { runtime: 'node' },
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/shared/**/*.test.ts', 'test/browser/**/*.test.ts'],
          provide: { runtime: 'browser' },
          browser: {
            enabled: true,
            headless: true,
            screenshotFailures: false,
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
