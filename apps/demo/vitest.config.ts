import { defineConfig } from 'vitest/config';

// Two projects so `vitest run` covers both: fast unit tests of the pure model code, and the
// end-to-end test that drives the built page in headless Chromium.
export default defineConfig({
  test: {
    projects: [
      {
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], environment: 'node' },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 90_000,
          hookTimeout: 90_000,
        },
      },
    ],
  },
});
