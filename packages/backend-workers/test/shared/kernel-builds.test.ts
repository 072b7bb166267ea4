import { cpuBackend, cpuKernels } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention, isQkvError } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { workersBackend } from '../../dist/index.js';
import { expectSameData, inputsFor, weightsFor } from './helpers.js';

// The kernel build is chosen once, by the backend on the calling thread, and every thread runs
// it: a workers run on 2 threads (every op on the pool) equals a cpu run of the same build bit
// for bit (the kernels compute each row the same way whatever the row split), for each build.

const support = cpuKernels.wasmBuildSupport();
const builds = (['relaxed-simd', 'simd128'] as const).filter((b) => support[b]);
const registry = () => new BackendRegistry().register(cpuBackend).register(workersBackend);

describe('kernel builds on the threads', () => {
  const config = { dModel: 64, numHeads: 4 };
  const weights = weightsFor(config, 21);
  const inputs = inputsFor(2, 150, 64, 22);

  async function runOn(backend: 'cpu' | 'workers', kernels: string) {
    const backendOptions = backend === 'workers' ? { threads: 2, inlineThreshold: 0, kernels } : { kernels };
    const attn = await createAttention(config, weights, { registry: registry(), backend, backendOptions });
    try {
      return { selection: attn.selection, result: await attn.run(inputs) };
    } finally {
      await attn.dispose();
    }
  }

  for (const build of [...builds, 'reference'] as const) {
    it(`kernels: '${build}' runs on every thread, bit for bit what cpu runs with it, and is reported`, async () => {
      const workers = await runOn('workers', build);
      const cpu = await runOn('cpu', build);
      expect(workers.selection.kernelBuild).toBe(build);
      expect(cpu.selection.kernelBuild).toBe(build);
      expectSameData(`${build} attention`, workers.result.attention, cpu.result.attention);
    });
  }

  it("'fast' (the default) is the best build this runtime has", async () => {
    const { selection } = await runOn('workers', 'fast');
    expect(selection.kernelBuild).toBe(cpuKernels.bestWasmBuild());
  });

  it('a build the runtime lacks is refused with CAPABILITY, a bad value with INVALID_OPTION', async () => {
    if (!support['relaxed-simd']) {
      const e = await workersBackend.create({ kernels: 'relaxed-simd' }).then(
        () => null,
        (x: unknown) => x,
      );
      expect(isQkvError(e, 'CAPABILITY'), String(e)).toBe(true);
    }
    const e = await workersBackend.create({ kernels: 'wasm' }).then(
      () => null,
      (x: unknown) => x,
    );
    expect(isQkvError(e, 'INVALID_OPTION'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(/kernels \(workers\).*got "wasm"/);
  });
});
