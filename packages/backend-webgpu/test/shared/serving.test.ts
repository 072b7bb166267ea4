import { cpuBackend } from '@qkv/backend-cpu';
import { randomTensor, randomWeights, rng } from '@qkv/conformance';
import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  BackendRegistry,
  createAttention,
  maxAbsDiff,
  type Tensor,
} from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { WebGPUBackend, webgpuBackend } from '../../src/index.js';
import { holdDeviceForFile } from './hold.js';

holdDeviceForFile();

/**
 * The serving features (issue #18) in the WGSL kernels, beyond the conformance block: the kernels
 * on hand-computed values, and runs long enough to span several query and key tiles (the flash
 * kernel's segments and tile skipping), against the cpu backend.
 */
const registry = new BackendRegistry().register(webgpuBackend).register(cpuBackend);

async function both(config: AttentionConfig, weights: AttentionWeights, inputs: AttentionInputs) {
  const gpu = await createAttention(config, weights, { backend: 'webgpu', registry });
  const cpu = await createAttention(config, weights, { backend: 'cpu', registry });
  try {
    const fused = await gpu.run(inputs);
    const unfused = await gpu.run(inputs, { returnWeights: true });
    const ref = await cpu.run(inputs, { returnWeights: true });
    expect(fused.fused).toBe(true);
    expect(maxAbsDiff(fused.attention.data, ref.attention.data), 'fused').toBeLessThan(2e-5);
    expect(maxAbsDiff(unfused.attention.data, ref.attention.data), 'unfused').toBeLessThan(2e-5);
    expect(maxAbsDiff((unfused.weights as Tensor).data, (ref.weights as Tensor).data), 'weights').toBeLessThan(2e-5);
    return unfused.weights as Tensor;
  } finally {
    await gpu.dispose();
    await cpu.dispose();
  }
}

const setup = (config: AttentionConfig, B: number, L: number, seed: number) => {
  const random = rng(seed);
  const weights: AttentionWeights = { ...randomWeights(config, random) };
  if (config.sinks) weights.sinks = randomTensor([config.numHeads], random, 2);
  return { weights, inputs: { query: randomTensor([B, L, config.dModel], random) } as AttentionInputs };
};

describe('serving kernels', () => {
  it('mask: softcap c·tanh(s/c) first, finite for |s/c| far past exp’s range', async () => {
    const backend = await WebGPUBackend.create();
    try {
      const s = backend.upload({ shape: [1, 1, 1, 6], data: Float32Array.from([3, 10, 400, -3e4, 1e-3, 0]) });
      const attrs = { batch: 1, numHeads: 1, numKVHeads: 1, queryLength: 1, keyLength: 6, headDim: 1 };
      const out = await backend.download(
        await backend.kernels.mask(s, null, null, { ...attrs, causal: false, softcap: 2 }),
      );
      const want = [3, 10, 400, -3e4, 1e-3, 0].map((x) => 2 * Math.tanh(x / 2));
      out.data.forEach((v, j) => expect(Math.abs(v - (want[j] as number)), `score ${j}`).toBeLessThan(1e-6));
      expect(want[0]).toBeCloseTo(1.810297, 6);
    } finally {
      await backend.destroy();
    }
  });

  it('softmax: a sink logit joins the denominator (scores [0, 0], sink ln 2 → [1/4, 1/4]); an all −∞ row stays 0', async () => {
    const backend = await WebGPUBackend.create();
    try {
      const I = Number.NEGATIVE_INFINITY;
      // Rows 0, 1 are head 0 (Lq = 2), rows 2, 3 head 1.
      const s = backend.upload({ shape: [4, 2], data: Float32Array.from([0, 0, I, I, 5, 5, 0, I]) });
      const w = await backend.download(
        await backend.kernels.softmax(s, { rows: 4, cols: 2, queryLength: 2, sinks: [Math.log(2), 5] }),
      );
      const want = [0.25, 0.25, 0, 0, 1 / 3, 1 / 3, 1 / (1 + Math.exp(5)), 0];
      w.data.forEach((v, j) => expect(v).toBeCloseTo(want[j] as number, 6));
    } finally {
      await backend.destroy();
    }
  });
});

describe('serving runs across tiles (webgpu vs cpu)', () => {
  it('packed sequences of mixed lengths run (not refused), fused and unfused; no weight crosses a sequence', async () => {
    const config: AttentionConfig = { dModel: 16, numHeads: 2, causal: true, softcap: 3, positionalEncoding: 'alibi' };
    const lengths = [40, 3, 70, 1, 33];
    const L = lengths.reduce((a, b) => a + b, 0);
    const { weights, inputs } = setup(config, 2, L, 181);
    const row0 = lengths.flatMap((n, s) => new Array<number>(n).fill(s));
    // Batch 1: ids that come back (not contiguous runs): only the per-key test is exact there.
    const row1 = Array.from({ length: L }, (_, j) => Math.floor(j / 9) % 3);
    inputs.sequenceIds = { shape: [2, L], data: Float32Array.from([...row0, ...row1]) };
    const w = await both(config, weights, inputs);
    const ids = [row0, row1];
    for (let b = 0; b < 2; b++)
      for (let h = 0; h < 2; h++)
        for (let i = 0; i < L; i++)
          for (let j = 0; j < L; j++) {
            if (ids[b]?.[i] === ids[b]?.[j]) continue;
            const v = w.data[((b * 2 + h) * L + i) * L + j] as number;
            if (v !== 0) throw new Error(`weight [${b}, ${h}, ${i}, ${j}] = ${v} crosses sequences`);
          }
  });

  it('sink tokens + window + sink logits over 150 tokens (several query and key tiles)', async () => {
    const config: AttentionConfig = {
      dModel: 16,
      numHeads: 4,
      numKVHeads: 2,
      causal: true,
      window: 37,
      sinkTokens: 5,
      sinks: true,
      positionalEncoding: 'rotary',
    };
    const { weights, inputs } = setup(config, 2, 150, 182);
    await both(config, weights, inputs);
  });

  it('bidirectional sink tokens + window with padding and packed ids', async () => {
    const config: AttentionConfig = { dModel: 8, numHeads: 2, window: 20, sinkTokens: 3, softcap: 1.5 };
    const L = 90;
    const { weights, inputs } = setup(config, 1, L, 183);
    inputs.sequenceIds = { shape: [1, L], data: Float32Array.from({ length: L }, (_, j) => (j < 50 ? 0 : 1)) };
    inputs.keyPaddingMask = { shape: [1, L], data: Float32Array.from({ length: L }, (_, j) => (j % 11 === 4 ? 1 : 0)) };
    await both(config, weights, inputs);
  });
});
