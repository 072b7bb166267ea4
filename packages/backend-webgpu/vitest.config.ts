import { chromiumLaunchOptions } from '@qkv/chromium';
import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

/**
 * One `vitest run`, two projects:
 *  - node: test/shared + test/node on Dawn (the webgpu package) over SwiftShader's Vulkan driver;
 *  - browser: test/shared + test/browser in headless Debian Chromium with WebGPU enabled.
 * Both are software GPUs here: the tests prove correctness, not speed (see `pnpm bench`).
 */
export default defineConfig({
  test: {
    testTimeout: 120_000,
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
              launchOptions: chromiumLaunchOptions({ webgpu: true }),
            }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
