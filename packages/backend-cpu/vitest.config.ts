import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    // `node --experimental-wasm-relaxed-simd …/vitest run` (Node 20) reaches the test workers too,
    // so the relaxed-SIMD build can be tested where it is behind that flag.
    execArgv: process.execArgv.filter((a) => a.startsWith('--experimental-wasm')),
  },
});
