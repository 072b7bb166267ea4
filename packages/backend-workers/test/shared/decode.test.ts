import { cpuBackend } from '@qkv/backend-cpu';
import { randomTensor, randomWeights, rng } from '@qkv/conformance';
import { BackendRegistry, createAttention } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { decodeSplits, workersBackend } from '../../dist/index.js';

// Split-KV decoding: with the caches in the decode arena, a one-token step's keys are split
// across the threads (decodePartial blocks), and the partials merge exactly (decodeMerge).
describe('split-KV decode', () => {
  it('splits keys into blocks for every thread, none shorter than 512 keys', () => {
    const a = (keyLength: number, numKVHeads: number) => ({
      batch: 1,
      numHeads: 8,
      numKVHeads,
      queryLength: 1,
      keyLength,
      headDim: 64,
      scale: 1,
      causal: true,
    });
    // A block is (b, split) over every KV head: 8 per thread where the keys allow.
    expect(decodeSplits(a(8192, 8), 2)).toBe(16);
    expect(decodeSplits(a(8192, 2), 2)).toBe(16);
    expect(decodeSplits(a(4096, 2), 2)).toBe(8);
    expect(decodeSplits(a(1100, 2), 2)).toBe(2);
    expect(decodeSplits(a(300, 2), 2)).toBe(1);
  });

  it('token by token over split keys equals one causal run (heads, lse) and the cpu backend', async () => {
    const registry = new BackendRegistry().register(workersBackend).register(cpuBackend);
    const config = { dModel: 32, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary' as const };
    const weights = randomWeights(config, rng(23));
    // Every queue goes to the pool (threshold 0), so the split blocks run on both threads.
    const attn = await createAttention(config, weights, {
      registry,
      backend: 'workers',
      backendOptions: { threads: 2, inlineThreshold: 0 },
    });
    const cpu = await createAttention(config, weights, { registry, backend: 'cpu' });
    const L = 1100;
    const E = randomTensor([1, L, 32], rng(24));
    const full = await cpu.run({ query: E }, { returnLse: true });
    const session = attn.createSession({ maxLength: L });
    await session.step({ shape: [1, 1090, 32], data: E.data.subarray(0, 1090 * 32) });
    for (let t = 1090; t < L; t++) {
      const x = { shape: [1, 1, 32], data: E.data.subarray(t * 32, (t + 1) * 32) };
      const step = await session.step(x, t % 2 === 0 ? { returnLse: true } : {});
      expect(step.fused).toBe(true);
      step.attention.data.forEach((v, c) => expect(v).toBeCloseTo(full.attention.data[t * 32 + c] as number, 5));
      if (step.lse)
        for (let h = 0; h < 4; h++) expect(step.lse.data[h]).toBeCloseTo(full.lse?.data[h * L + t] as number, 4);
    }
    const live = attn.stats().liveTensors as number;
    await session.dispose();
    expect(attn.stats().liveTensors).toBe(live - 2);
    await attn.dispose();
    await cpu.dispose();
  });
});
