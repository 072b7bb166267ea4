import { randomTensor, randomWeights, rng } from '@qkv/conformance';
import { BackendRegistry, createAttention, type FusedAttentionAttrs } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { type CpuBackend, type CpuTensor, cpuBackend, cpuKernels as k } from '../src/index.js';

// The decode path: KV caches in the shared decode arena, read in place by the decode kernel
// (assembly/decode.ts) for steps of a few query rows. Checked against the reference flash kernel
// on plain arrays, across the kernel's key chunks (KEY_CHUNK) and its one-row / four-row passes.
describe('decode kernel on arena caches', () => {
  const cases: [string, { B: number; H: number; KVH: number; hd: number; Lq: number; Lk: number }][] = [
    [
      'one row per KV head (MHA, one token), hd 64, keys over two chunks',
      { B: 1, H: 4, KVH: 4, hd: 64, Lq: 1, Lk: 1500 },
    ],
    [
      'grouped-query, 3 step tokens (bottom-right causal), B = 2, hd 12',
      { B: 2, H: 8, KVH: 2, hd: 12, Lq: 3, Lk: 2100 },
    ],
    ['multi-query, 8 tokens, hd 20', { B: 1, H: 4, KVH: 1, hd: 20, Lq: 8, Lk: 37 }],
  ];
  for (const [name, { B, H, KVH, hd, Lq, Lk }] of cases) {
    it(name, async () => {
      const backend = (await cpuBackend.create()) as CpuBackend;
      expect(backend.kernelBuild).not.toBe('reference');
      const cap = Lk + 5;
      const random = rng(Lk);
      const kc = backend.allocateCache([B, cap, KVH * hd]);
      const vc = backend.allocateCache([B, cap, KVH * hd]);
      expect(backend.decodeArena).toBe(true);
      expect(kc.arena).not.toBeNull();
      expect([...kc.data.subarray(0, 8)]).toEqual(new Array(8).fill(0));
      kc.data.set(randomTensor([B * cap * KVH * hd], random).data);
      vc.data.set(randomTensor([B * cap * KVH * hd], random).data);
      const q = backend.upload(randomTensor([B, Lq, H * hd], random, 2)) as CpuTensor;
      const attrs: FusedAttentionAttrs = {
        batch: B,
        numHeads: H,
        numKVHeads: KVH,
        queryLength: Lq,
        keyLength: Lk,
        headDim: hd,
        keyCapacity: cap,
        scale: 1 / Math.sqrt(hd),
        causal: true,
      };
      expect(k.decodeApplies(attrs, false)).toBe(true);
      const withLse = backend.fused.fusedAttentionLse;
      if (!withLse) throw new Error('the cpu backend has fusedAttentionLse');
      const [heads, lse] = (await withLse(q, kc, vc, null, null, attrs)) as [CpuTensor, CpuTensor];
      const want = new Float32Array(heads.data.length);
      const wantLse = new Float32Array(lse.data.length);
      k.fusedAttention(
        q.data,
        Float32Array.from(kc.data),
        Float32Array.from(vc.data),
        null,
        null,
        want,
        attrs,
        0,
        B * H * Lq,
        wantLse,
      );
      heads.data.forEach((x, i) => expect(x).toBeCloseTo(want[i] as number, 5));
      lse.data.forEach((x, i) => expect(x).toBeCloseTo(wantLse[i] as number, 4));
      const plain = (await backend.fused.fusedAttention(q, kc, vc, null, null, attrs)) as CpuTensor;
      expect([...plain.data]).toEqual([...heads.data]);
      // Disposed caches go back to the arena: the next one of that size reuses the block, zeroed.
      const before = kc.arena?.ptr;
      backend.dispose(kc);
      const again = backend.allocateCache([B, cap, KVH * hd]);
      expect(again.arena?.ptr).toBe(before);
      expect(again.data.every((x) => x === 0)).toBe(true);
      backend.destroy();
    });
  }

  it('steps the decode kernel does not take (masks, window, wide groups) go to the flash kernel', () => {
    const base = {
      batch: 1,
      numHeads: 4,
      numKVHeads: 4,
      queryLength: 1,
      keyLength: 9,
      headDim: 8,
      scale: 1,
      causal: true,
    };
    expect(k.decodeApplies(base, false)).toBe(true);
    expect(k.decodeApplies(base, true)).toBe(false);
    expect(k.decodeApplies({ ...base, window: 4 }, false)).toBe(false);
    expect(k.decodeApplies({ ...base, headDim: 6 }, false)).toBe(false);
    expect(k.decodeApplies({ ...base, queryLength: 65 }, false)).toBe(false);
  });

  it('the reference kernel path keeps plain caches', async () => {
    const backend = (await cpuBackend.create({ kernels: 'reference' })) as CpuBackend;
    const c = backend.allocateCache([1, 4, 8]);
    expect(c.arena).toBeNull();
    expect(backend.decodeArena).toBe('kernels: reference');
    backend.destroy();
  });

  it('a session over more keys than one kernel chunk equals one causal run, token by token', async () => {
    const registry = new BackendRegistry().register(cpuBackend);
    const config = { dModel: 32, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary' as const };
    const random = rng(17);
    const attn = await createAttention(config, randomWeights(config, random), { registry, backend: 'cpu' });
    const L = 1100;
    const E = randomTensor([1, L, 32], random);
    const full = await attn.run({ query: E }, { returnLse: true });
    const session = attn.createSession({ maxLength: L });
    await session.step({ shape: [1, 1090, 32], data: E.data.subarray(0, 1090 * 32) });
    for (let t = 1090; t < L; t++) {
      const step = await session.step(
        { shape: [1, 1, 32], data: E.data.subarray(t * 32, (t + 1) * 32) },
        { returnLse: true },
      );
      expect(step.fused).toBe(true);
      step.attention.data.forEach((x, c) => expect(x).toBeCloseTo(full.attention.data[t * 32 + c] as number, 5));
      for (let h = 0; h < 4; h++) expect(step.lse?.data[h]).toBeCloseTo(full.lse?.data[h * L + t] as number, 4);
    }
    await session.dispose();
    await attn.dispose();
  });
});
