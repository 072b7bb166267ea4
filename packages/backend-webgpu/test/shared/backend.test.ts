import { cpuBackend } from '@qkv/backend-cpu';
import { goldenToApi, loadGoldenCase, referenceAttention } from '@qkv/conformance';
import {
  type AttentionConfig,
  type AttentionWeights,
  BackendRegistry,
  createAttention,
  isQkvError,
  maxAbsDiff,
} from '@qkv/core';
import { afterAll, describe, expect, it } from 'vitest';
import { liveBuffers, liveDevices, WebGPUBackend, type WebGPUTensor, warmup, webgpuBackend } from '../../src/index.js';
import { runtime } from './env.js';

const registry = new BackendRegistry().register(webgpuBackend).register(cpuBackend);
const make = (config: AttentionConfig, weights: AttentionWeights, backendOptions?: Record<string, unknown>) =>
  createAttention(config, weights, { backend: 'webgpu', registry, ...(backendOptions ? { backendOptions } : {}) });

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection, got a result');
}

const seq = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + 0.3) * f);
function smallCase(dModel = 8, numHeads = 2) {
  const w = (r: number, c: number, s: number) => ({ shape: [r, c], data: seq(r * c, s) });
  const b = (n: number, s: number) => ({ shape: [n], data: seq(n, s) });
  const weights: AttentionWeights = {
    wq: w(dModel, dModel, 0.3),
    bq: b(dModel, 0.1),
    wk: w(dModel, dModel, 0.25),
    bk: b(dModel, 0.2),
    wv: w(dModel, dModel, 0.35),
    bv: b(dModel, 0.05),
    wo: w(dModel, dModel, 0.2),
    bo: b(dModel, 0.1),
  };
  const config: AttentionConfig = { dModel, numHeads, causal: true };
  return { config, weights, query: { shape: [2, 5, dModel], data: seq(2 * 5 * dModel, 1) } };
}

afterAll(() => {
  // Every handle below disposed its backend: the shared device and all its buffers are gone too.
  expect(liveDevices()).toBe(0);
  expect(liveBuffers()).toBe(0);
});

describe('factory', () => {
  it('is named webgpu with priority 40 (above webgl), and available here', async () => {
    expect(webgpuBackend.name).toBe('webgpu');
    expect(webgpuBackend.priority).toBe(40);
    const a = await webgpuBackend.isAvailable();
    expect(a).toMatchObject({ available: true });
    expect(a.available && a.detail).toContain(runtime() === 'node' ? 'Dawn (webgpu package)' : 'navigator.gpu');
  });

  it('auto picks webgpu over cpu, and says why', async () => {
    const { config, weights } = smallCase();
    const attn = await createAttention(config, weights, { registry });
    try {
      expect(attn.backend).toBe('webgpu');
      expect(attn.selection.skipped).toEqual([{ name: 'cpu', reason: expect.stringContaining('lower priority') }]);
    } finally {
      await attn.dispose();
    }
  });

  it('refuses unknown and invalid backendOptions with what was expected', async () => {
    const { config, weights } = smallCase();
    const e1 = await rejection(make(config, weights, { threads: 2 }));
    expect(isQkvError(e1, 'UNKNOWN_OPTION')).toBe(true);
    expect(e1.message).toContain('expected one of maxStorageBufferBindingSize');
    const e2 = await rejection(make(config, weights, { maxStorageBufferBindingSize: 0.5 }));
    expect(isQkvError(e2, 'INVALID_OPTION')).toBe(true);
    expect(e2.message).toContain('backendOptions.maxStorageBufferBindingSize: expected an integer number of bytes');
  });

  it('maskMod / scoreMod are refused with CAPABILITY naming the option', async () => {
    const { config, weights } = smallCase();
    const e = await rejection(make({ ...config, maskMod: () => true }, weights));
    expect(isQkvError(e, 'CAPABILITY')).toBe(true);
    expect(e.message).toContain('config.maskMod is a JavaScript function');
  });
});

describe('kernels keep intermediates on the GPU', () => {
  it('every kernel returns a buffer-backed tensor; a run is one submission plus one copy per output', async () => {
    const backend = await WebGPUBackend.create();
    try {
      const a = backend.upload({ shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
      const b = backend.upload({ shape: [3], data: Float32Array.from([10, 20, 30]) });
      const sum = backend.kernels.add(a, b) as WebGPUTensor;
      expect(sum.buffer).toBeTruthy();
      const sum2 = backend.kernels.add(sum, b) as WebGPUTensor;
      const before = backend.runtime.submits;
      expect([...(await backend.download(sum2)).data]).toEqual([21, 42, 63, 24, 45, 66]);
      // Both adds and the read-back copy went to the GPU in one submission.
      expect(backend.runtime.submits - before).toBe(1);
      expect([...(await backend.download(sum)).data]).toEqual([11, 22, 33, 14, 25, 36]);
      for (const t of [a, b, sum, sum2]) backend.dispose(t);
      expect(backend.liveTensors()).toBe(0);
      backend.dispose(a); // idempotent
      await expect(backend.download(a)).rejects.toMatchObject({ code: 'DISPOSED' });
    } finally {
      await backend.destroy();
    }
  });

  it('softmax: huge scores do not overflow, an all −∞ row is zeros', async () => {
    const backend = await WebGPUBackend.create();
    try {
      const I = Number.NEGATIVE_INFINITY;
      const s = backend.upload({ shape: [3, 3], data: Float32Array.from([1000, 1000, I, I, I, I, 1, 2, 3]) });
      const w = await backend.download(await backend.kernels.softmax(s, { rows: 3, cols: 3 }));
      expect([...w.data.subarray(0, 6)]).toEqual([0.5, 0.5, 0, 0, 0, 0]);
      const e = [1, 2, 3].map((x) => Math.exp(x - 3));
      const sum = e.reduce((x, y) => x + y);
      e.forEach((x, j) => expect(w.data[6 + j]).toBeCloseTo(x / sum, 6));
    } finally {
      await backend.destroy();
    }
  });

  it('the tiled matmul is exact at tile edges (rows, inner and outer sizes not multiples of 64/16)', async () => {
    const backend = await WebGPUBackend.create();
    try {
      const [M, K, N] = [67, 33, 70];
      const x = seq(M * K, 1);
      const w = seq(K * N, 0.5);
      const bias = seq(N, 0.1);
      const out = await backend.download(
        await backend.kernels.linear(
          backend.upload({ shape: [M, K], data: x }),
          backend.upload({ shape: [K, N], data: w }),
          backend.upload({ shape: [N], data: bias }),
          { rows: M, inFeatures: K, outFeatures: N },
        ),
      );
      const want = new Float64Array(M * N);
      for (let r = 0; r < M; r++)
        for (let c = 0; c < N; c++) {
          let s = bias[c] as number;
          for (let i = 0; i < K; i++) s += (x[r * K + i] as number) * (w[i * N + c] as number);
          want[r * N + c] = s;
        }
      expect(maxAbsDiff(out.data, want)).toBeLessThan(1e-4);
    } finally {
      await backend.destroy();
    }
  });
});

describe('limits and faults', () => {
  it('a tensor over the buffer limit is LIMIT_EXCEEDED naming it and the limit, before any buffer is made', async () => {
    const { config, weights, query } = smallCase();
    const attn = await make(config, weights, { maxStorageBufferBindingSize: 1024 });
    try {
      const buffers = liveBuffers();
      const big = { shape: [1, 40, 8], data: seq(320, 1) };
      const e = await rejection(attn.run({ query: big }));
      expect(isQkvError(e, 'LIMIT_EXCEEDED')).toBe(true);
      expect(e.message).toContain('input, x, attention, residual [B, Lq, dModel] = [1, 40, 8] needs 1280 bytes');
      expect(e.message).toContain('maxStorageBufferBindingSize/maxBufferSize of 1024 bytes');
      // The score tensors only exist when weights are asked for.
      const w = await rejection(attn.run({ query: { shape: [1, 12, 8], data: seq(96, 1) } }, { returnWeights: true }));
      expect(w.message).toContain('scores, scaled, masked, weights [B, H, Lq, Lk] = [1, 2, 12, 12]');
      expect(liveBuffers()).toBe(buffers);
      expect((await attn.run({ query })).attention.shape).toEqual([2, 5, 8]);
    } finally {
      await attn.dispose();
    }
  });

  it('a lost device rejects in-flight runs with CONTEXT_LOST (no hang); the next handle gets a new device', async () => {
    const { config, weights, query } = smallCase();
    const attn = await make(config, weights);
    // A second backend shares the handle's device (one per realm): losing it loses both.
    const other = await WebGPUBackend.create();
    const runs = Array.from({ length: 4 }, () => attn.run({ query }));
    other.loseDevice();
    // Lost before their kernels ran: each rejects at its next step, none hangs.
    for (const s of await Promise.allSettled(runs)) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason).toMatchObject({ code: 'CONTEXT_LOST' });
    }
    const after = await rejection(attn.run({ query }));
    expect(isQkvError(after, 'CONTEXT_LOST')).toBe(true);
    expect(after.message).toContain('create a new attention handle');
    await attn.dispose();
    await other.destroy();
    const next = await make(config, weights);
    try {
      const out = await next.run({ query });
      const ref = referenceAttention(config, weights, { query });
      expect(maxAbsDiff(out.attention.data, ref.attention.data)).toBeLessThan(1e-4);
    } finally {
      await next.dispose();
    }
  });

  it('500 create/run/dispose cycles leave no buffer behind (every buffer is counted)', {
    timeout: 300_000,
  }, async () => {
    const held = await warmup({ dModel: 8, numHeads: 2, causal: true }, { batch: 2, queryLength: 5 });
    try {
      const base = liveBuffers();
      const { config, weights, query } = smallCase();
      for (let i = 0; i < 500; i++) {
        const attn = await make(config, weights);
        await attn.run({ query }, { returnWeights: i % 2 === 0 });
        await attn.dispose();
        if (i % 100 === 99) expect(liveBuffers(), `after ${i + 1} cycles`).toBe(base);
      }
    } finally {
      await held.release();
    }
  });

  it('golden: max |error| of the fused and unfused paths stays below 1e-5 (the README figure)', async () => {
    const c = await loadGoldenCase('mha_long_causal_b1_l256_d64_h4');
    const { config, weights, inputs } = goldenToApi(c);
    const attn = await make(config, weights);
    try {
      const want = c.outputs.attention as { data: number[] };
      const fused = await attn.run(inputs);
      const unfused = await attn.run(inputs, { returnWeights: true });
      const errF = maxAbsDiff(fused.attention.data, want.data);
      const errU = maxAbsDiff(unfused.attention.data, want.data);
      console.log(`webgpu (${runtime()}) max |error| vs golden ${c.name}: fused ${errF}, unfused ${errU}`);
      expect(errF).toBeLessThan(1e-5);
      expect(errU).toBeLessThan(1e-5);
    } finally {
      await attn.dispose();
    }
  });
});
