import { defineConfig } from 'vitest/config';

/**
 * One install for all files (setup/install.ts); files run one after another, since each case
 * builds or starts a whole app and the machine has few cores.
 */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['setup/install.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
  },
});
