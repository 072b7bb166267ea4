import { describeConformance } from '@qkv/conformance/suite';
import { describe, expect, it } from 'vitest';
import { cpuBackend, cpuKernels } from '../src/index.js';

// Every kernel path runs the whole suite: each WebAssembly build this runtime has (the default
// 'fast' is the best of them), and the plain TypeScript reference kernels. A build the runtime
// lacks (relaxed SIMD on Node 20 without --experimental-wasm-relaxed-simd) must be refused.
const support = cpuKernels.wasmBuildSupport();
for (const build of ['relaxed-simd', 'simd128'] as const) {
  if (support[build]) {
    describe(`kernels: '${build}'`, () => {
      describeConformance(cpuBackend, { backendOptions: { kernels: build } });
    });
  } else {
    it(`kernels: '${build}' is refused with CAPABILITY where the runtime lacks it`, async () => {
      await expect(cpuBackend.create({ kernels: build })).rejects.toMatchObject({ code: 'CAPABILITY' });
    });
  }
}
describe("kernels: 'reference'", () => {
  describeConformance(cpuBackend, { backendOptions: { kernels: 'reference' } });
});
