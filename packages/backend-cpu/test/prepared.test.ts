import { randomTensor, randomWeights, rng } from '@qkv/conformance';
import { BackendRegistry, createAttention, type Tensor } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { residentBytes } from '../src/fast/index.js';
import { CpuBackend, type CpuTensor, cpuBackend, cpuKernels as k } from '../src/index.js';

// Projection weights held packed in the module's memory (PreparedWeight): once per weight tensor
// of a backend, released with it, never stale.

const rand = (n: number, r: () => number) => Float32Array.from({ length: n }, () => r() * 2 - 1);

function expectClose(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (!(Math.abs(a - e) <= 1e-5 + 1e-4 * Math.abs(e))) expect.fail(`[${i}]: prepared ${a}, reference ${e}`);
  }
}

const builds = (['relaxed-simd', 'simd128'] as const).filter((b) => k.wasmBuildSupport()[b]);

describe('PreparedWeight', () => {
  for (const build of builds) {
    it(`${build}: 1–8 rows (the few-row kernels) and long inputs equal the reference; blocks are reused after release`, () => {
      const r = rng(11);
      const fk = k.fastKernels(build);
      const before = residentBytes();
      // The few-row kernels' paths: K odd / even (the one-row kernel's k pairs), panels = 1, 5
      // (4 + 1), 9, 18 (4·4 + 2) and 32 (its 4-panel groups only), with and without bias.
      for (const [nIn, nOut] of [
        [5, 7],
        [33, 40],
        [64, 72],
        [35, 139],
        [34, 256],
      ] as const) {
        const w = rand(nIn * nOut, r);
        const bias = nOut % 2 ? rand(nOut, r) : null;
        const prepared = fk.prepareWeight(w, bias, { rows: 1, inFeatures: nIn, outFeatures: nOut });
        for (const rows of [1, 2, 3, 4, 5, 6, 7, 8, 300]) {
          const attrs = { rows, inFeatures: nIn, outFeatures: nOut };
          const x = rand(rows * nIn, r);
          const ref = new Float32Array(rows * nOut);
          k.linear(x, w, bias, ref, attrs);
          const out = new Float32Array(rows * nOut);
          prepared.linear(x, out, rows);
          expectClose(out, ref);
          // A row range leaves the other rows alone.
          const part = new Float32Array(rows * nOut).fill(42);
          prepared.linear(x, part, rows, rows - 1, rows);
          if (rows > 1) expect(part[0]).toBe(42);
          expectClose(part.subarray((rows - 1) * nOut), ref.subarray((rows - 1) * nOut));
        }
        // The weights were copied: changing the source changes nothing until prepared again.
        const x = rand(3 * nIn, r);
        const first = new Float32Array(3 * nOut);
        prepared.linear(x, first, 3);
        w.fill(0);
        const again = new Float32Array(3 * nOut);
        prepared.linear(x, again, 3);
        expect(again).toEqual(first);
        prepared.release();
        prepared.release(); // idempotent
        expect(() => prepared.linear(x, again, 3)).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
      }
      expect(residentBytes()).toBe(before);
      // Free blocks are reused: three blocks, the middle one released, a smaller one fits in it.
      const attrs = (n: number) => ({ rows: 1, inFeatures: 16, outFeatures: n });
      const [a, b, c] = [64, 64, 64].map((n) => fk.prepareWeight(rand(16 * n, r), null, attrs(n)));
      const three = residentBytes();
      b?.release();
      const small = fk.prepareWeight(rand(16 * 32, r), null, attrs(32));
      expect(residentBytes()).toBeLessThan(three);
      for (const p of [a, c, small]) p?.release();
      expect(residentBytes()).toBe(before);
    });
  }
});

describe('x staged once for the projections of one tensor (a pack scope, keyed by the tensor)', () => {
  it('inside a scope, the next call on the same key copies nothing; a new key, a new weight or no scope copies again', () => {
    const r = rng(12);
    const fk = k.fastKernels(builds[0] as (typeof builds)[number]);
    const [rows, nIn, nOut] = [300, 24, 16];
    const x = rand(rows * nIn, r);
    const w = rand(nIn * nOut, r);
    const attrs = { rows, inFeatures: nIn, outFeatures: nOut };
    const pw = fk.prepareWeight(w, null, attrs);
    const ref = new Float32Array(rows * nOut);
    k.linear(x, w, null, ref, attrs);
    const key = {};
    const out = new Float32Array(rows * nOut);
    // The promise broken on purpose: x changes under the same key, so a reuse shows as the old product.
    k.beginPackScope();
    pw.linear(x, out, rows, 0, rows, key);
    expectClose(out, ref);
    const x2 = rand(rows * nIn, r);
    const ref2 = new Float32Array(rows * nOut);
    k.linear(x2, w, null, ref2, attrs);
    pw.linear(x2, out, rows, 0, rows, key);
    expectClose(out, ref); // staged x reused
    pw.linear(x2, out, rows, 0, rows, {});
    expectClose(out, ref2); // another key: copied
    pw.linear(x, out, rows, 0, rows, key);
    expectClose(out, ref); // the key's record was replaced: copied
    const other = fk.prepareWeight(w, null, attrs); // packing stages W over the scratch
    pw.linear(x2, out, rows, 0, rows, key);
    expectClose(out, ref2);
    k.endPackScope();
    pw.linear(x, out, rows, 0, rows, key);
    expectClose(out, ref); // outside a scope: copied
    pw.release();
    other.release();
  });

  it('a whole layer on the cpu backend gives the same numbers with and without the reuse', async () => {
    const config = { dModel: 48, numHeads: 4, causal: true } as const;
    const weights = randomWeights(config, rng(13));
    const registry = new BackendRegistry().register(cpuBackend);
    const fast = await createAttention(config, weights, { registry, backend: 'cpu' });
    const ref = await createAttention(config, weights, {
      registry,
      backend: 'cpu',
      backendOptions: { kernels: 'reference' },
    });
    for (let i = 0; i < 3; i++) {
      const query = randomTensor([2, 37, 48], rng(20 + i));
      const a = await fast.run({ query });
      const b = await ref.run({ query });
      expectClose(a.attention.data, b.attention.data);
      expectClose(a.residual.data, b.residual.data);
    }
    await fast.dispose();
    await ref.dispose();
  });
});

describe('the cpu backend packs each weight tensor once', () => {
  it('projections use the packing until the tensor is written in place (writeRows) or disposed', () => {
    if (builds.length === 0) return;
    const backend = new CpuBackend();
    const r = rng(3);
    const before = residentBytes();
    const [K, N, rows] = [24, 16, 5];
    const attrs = { rows, inFeatures: K, outFeatures: N };
    const w = backend.upload({ shape: [K, N], data: rand(K * N, r) });
    const bias = backend.upload({ shape: [N], data: rand(N, r) });
    const x = backend.upload({ shape: [rows, K], data: rand(rows * K, r) });
    const reference = () => {
      const out = new Float32Array(rows * N);
      k.linear(x.data, w.data, bias.data, out, attrs);
      return out;
    };
    expectClose((backend.kernels.linear(x, w, bias, attrs) as CpuTensor).data, reference());
    const held = residentBytes() - before;
    expect(held).toBeGreaterThanOrEqual(K * N * 4);
    backend.kernels.linear(x, w, bias, attrs);
    expect(residentBytes() - before).toBe(held); // the second call packs nothing new
    // A kernel that writes into the weight tensor in place drops its packing.
    const rowsIn = backend.upload({ shape: [1, 2, N], data: rand(2 * N, r) });
    backend.kernels.writeRows?.(w, rowsIn, { batch: 1, rows: 2, width: N, capacity: K, offset: 3 });
    expectClose((backend.kernels.linear(x, w, bias, attrs) as CpuTensor).data, reference());
    // Without a bias the packing is made again (bias is part of it).
    const noBias = new Float32Array(rows * N);
    k.linear(x.data, w.data, null, noBias, attrs);
    expectClose((backend.kernels.linear(x, w, null, attrs) as CpuTensor).data, noBias);
    backend.dispose(w);
    expect(residentBytes()).toBe(before);
    const w2 = backend.upload({ shape: [K, N], data: rand(K * N, r) });
    backend.kernels.linear(x, w2, null, attrs);
    expect(residentBytes()).toBeGreaterThan(before);
    backend.destroy();
    expect(residentBytes()).toBe(before);
  });

  it("a handle's weights are copied at createAttention: mutating the caller's arrays later changes nothing", async () => {
    const registry = new BackendRegistry().register(cpuBackend);
    const config = { dModel: 16, numHeads: 4, causal: true };
    const random = rng(9);
    const weights = randomWeights(config, random);
    const E: Tensor = randomTensor([2, 7, 16], random);
    const before = residentBytes();
    const attn = await createAttention(config, weights, { registry, backend: 'cpu' });
    const first = await attn.run({ query: E });
    (weights.wq as Tensor).data.fill(0.5);
    (weights.wo as Tensor).data.fill(-0.25);
    const after = await attn.run({ query: E });
    expect(after.attention.data).toEqual(first.attention.data);
    // A new handle sees the new values (and so differs).
    const fresh = await createAttention(config, weights, { registry, backend: 'cpu' });
    expect((await fresh.run({ query: E })).attention.data).not.toEqual(first.attention.data);
    await fresh.dispose();
    // Session steps share the handle's packed weights and match the run.
    const session = attn.createSession({ maxLength: 7 });
    const stepped = await session.step(E);
    expectClose(stepped.attention.data, first.attention.data);
    await session.dispose();
    await attn.dispose();
    expect(residentBytes()).toBe(before);
  });
});
