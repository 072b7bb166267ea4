import { CpuBackend, cpuKernels } from '@qkv/backend-cpu';
import { createAttention, type LinearAttrs, type Tensor } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { LINEAR_COLUMN_MAX_ROWS, type WorkersBackend, workersBackend } from '../../dist/index.js';
import { capturingRegistry, inputsFor, random, randomTensor, weightsFor } from './helpers.js';

// Projection weights packed once per thread (src/prepared.ts): each thread keeps the packed form
// of a weight tensor, named by the tensor (id + version), until the tensor is released.

/** Weight tensors packed on each thread of the backend's pool. */
async function packed(b: WorkersBackend): Promise<number[]> {
  const stats = await b.preparedStats();
  expect(stats).toHaveLength(b.threads);
  return stats.map((s) => {
    expect(s).not.toBeNull();
    // Resident blocks on a pool thread are only these packings: none held, no bytes held.
    if (s?.weights === 0) expect(s.residentBytes).toBe(0);
    else expect(s?.residentBytes).toBeGreaterThan(0);
    return s?.weights as number;
  });
}

function expectClose(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)));
  expect(worst).toBeLessThan(1e-4);
}

/** x [rows, K] · w [K, N] by the reference kernel. */
function reference(x: Tensor, w: Tensor, attrs: LinearAttrs): Float32Array {
  const out = new Float32Array(attrs.rows * attrs.outFeatures);
  cpuKernels.linear(x.data, w.data, null, out, attrs);
  return out;
}

describe('prepared weights on the threads', () => {
  it('a handle keeps W packed per thread, equals cpu, ignores changes to the caller arrays; dispose frees them on every thread', async () => {
    const { registry, created } = capturingRegistry();
    const config = { dModel: 64, numHeads: 4, causal: true };
    const weights = weightsFor(config, 3);
    const options = { registry, backend: 'workers', backendOptions: { threads: 2, inlineThreshold: 0 } } as const;
    // Two handles on one pool: `keep` holds the pool up, so its threads can be asked after `attn` goes.
    const keep = await createAttention(config, weightsFor(config, 4), options);
    const attn = await createAttention(config, weights, options);
    const cpu = await createAttention(config, weights, { registry, backend: 'cpu' });
    const backend = created[1] as WorkersBackend;
    const inputs = inputsFor(1, 256, 64, 5);
    const want = (await cpu.run(inputs)).attention.data;
    const first = (await attn.run(inputs)).attention.data;
    expectClose(first, want);
    // Four projections (bias folded into each packing): at most 4 per thread, on some thread.
    const after1 = await packed(backend);
    expect(Math.max(...after1)).toBeGreaterThan(0);
    for (const n of after1) expect(n).toBeLessThanOrEqual(4);
    // upload() copied the weights: writing into the caller's arrays changes nothing now.
    (weights.wq.data as Float32Array).fill(7);
    ((weights.bo as Tensor).data as Float32Array).fill(-3);
    const second = (await attn.run(inputs)).attention.data;
    expect(second).toEqual(first);
    // A run may hand a projection to the other thread (threads help each other), which then packs
    // it too; never more than the handle's 4 weight tensors per thread.
    for (const n of await packed(backend)) expect(n).toBeLessThanOrEqual(4);
    await attn.dispose();
    expect(await packed(created[0] as WorkersBackend)).toEqual([0, 0]);
    await keep.dispose();
    await cpu.dispose();
  });

  for (const [where, inlineThreshold] of [
    ['threads', 0],
    ['inline', 1e15],
  ] as const) {
    it(`writeRows into a weight tensor and a recycled buffer are never served a stale packing (${where})`, async () => {
      const b = (await workersBackend.create({ threads: 2, inlineThreshold })) as WorkersBackend;
      const next = random(11);
      const [R, K, N] = [256, 64, 40];
      const attrs: LinearAttrs = { rows: R, inFeatures: K, outFeatures: N };
      const x = randomTensor([R, K], next);
      const w = randomTensor([K, N], next);
      const X = b.upload(x);
      const W = b.upload(w);
      const run = async (wt: typeof W) => (await b.download(await b.kernels.linear(X, wt, null, attrs))).data;
      expectClose(await run(W), reference(x, w, attrs));
      // W as a cache [1, K, N]: rows 8…15 overwritten in place; the next linear reads the new W.
      const rows = randomTensor([1, 8, N], next);
      const Rows = b.upload(rows);
      await b.kernels.writeRows?.(W, Rows, { batch: 1, rows: 8, capacity: K, offset: 8, width: N });
      w.data.set(rows.data, 8 * N);
      expectClose(await run(W), reference(x, w, attrs));
      // A new weight on W's buffer (disposed, recycled): its own data, not W's packing.
      b.dispose(W);
      const w2 = randomTensor([K, N], next);
      const W2 = b.upload(w2);
      expectClose(await run(W2), reference(x, w2, attrs));
      for (const n of await packed(b)) expect(n).toBeLessThanOrEqual(1);
      b.dispose(W2);
      expect(await packed(b)).toEqual([0, 0]);
      b.dispose(X);
      b.dispose(Rows);
      await b.destroy();
    });
  }

  it('a few-row linear on a packed W splits by columns and equals the cpu backend bit for bit', async () => {
    const b = (await workersBackend.create({ threads: 2, inlineThreshold: 0 })) as WorkersBackend;
    const cpu = new CpuBackend();
    try {
      const next = random(21);
      // N = 44: the last 8-column panel is half padding; rows 1 (a decode step), 3 (the gemm's
      // two- and one-row paths) and 16 (LINEAR_COLUMN_MAX_ROWS, its four-row blocks).
      const [K, N] = [64, 44];
      const w = randomTensor([K, N], next);
      const bias = randomTensor([N], next);
      const W = b.upload(w);
      const B = b.upload(bias);
      const [cw, cb] = [cpu.upload(w), cpu.upload(bias)];
      for (const rows of [1, 3, LINEAR_COLUMN_MAX_ROWS]) {
        const attrs: LinearAttrs = { rows, inFeatures: K, outFeatures: N };
        const x = randomTensor([1, rows, K], next);
        const got = await b.download(await b.kernels.linear(b.upload(x), W, B, attrs));
        const want = await cpu.download(await cpu.kernels.linear(cpu.upload(x), cw, cb, attrs));
        expect(got.data, `rows ${rows}`).toEqual(want.data);
      }
    } finally {
      await b.destroy();
    }
  });

  it('a session steps with packed weights, equals one causal run, packs no more than its weight tensors', async () => {
    const { registry, created } = capturingRegistry();
    const config = { dModel: 64, numHeads: 4, numKVHeads: 2, causal: true };
    const weights = weightsFor({ ...config, numKVHeads: 4 }, 8);
    // GQA: Wk, Wv are [dModel, KVH·hd].
    weights.wk = randomTensor([64, 32], random(9));
    weights.wv = randomTensor([64, 32], random(10));
    weights.bk = randomTensor([32], random(12));
    weights.bv = randomTensor([32], random(13));
    const options = { registry, backend: 'workers', backendOptions: { threads: 2, inlineThreshold: 0 } } as const;
    const mha = { dModel: 64, numHeads: 4, causal: true };
    const keep = await createAttention(mha, weightsFor(mha, 4), options);
    const attn = await createAttention(config, weights, options);
    const backend = created[1] as WorkersBackend;
    const L = 40;
    const E = randomTensor([1, L, 64], random(14));
    const full = (await attn.run({ query: E })).attention.data;
    const session = attn.createSession({ maxLength: L });
    for (let t = 0; t < L; t++) {
      const step = await session.step({ shape: [1, 1, 64], data: E.data.subarray(t * 64, (t + 1) * 64) });
      expectClose(step.attention.data, full.subarray(t * 64, (t + 1) * 64));
      // The caches are written every step, the weights never: at most the 4 weight tensors per thread.
      if (t % 8 === 1) for (const n of await packed(backend)) expect(n).toBeLessThanOrEqual(4);
    }
    await session.dispose();
    await attn.dispose();
    expect(await packed(created[0] as WorkersBackend)).toEqual([0, 0]);
    await keep.dispose();
  });
});
