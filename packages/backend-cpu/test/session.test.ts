import { randomTensor, randomWeights, rng } from '@qkv/conformance';
import { BackendRegistry, createAttention, type Tensor } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../src/index.js';

// The cpu backend holds a session's cache itself (writeRows); core's host cache is the fallback
// for backends without it. Both must give the same outputs as each other and as one causal run.
describe('KV-cache session on cpu: device cache vs host cache', () => {
  it('agree with each other and with the full causal run, and free their caches', async () => {
    const registry = new BackendRegistry().register(cpuBackend);
    const config = {
      dModel: 16,
      numHeads: 4,
      numKVHeads: 2,
      causal: true,
      positionalEncoding: 'rotary' as const,
      window: 6,
    };
    const random = rng(5);
    const attn = await createAttention(config, randomWeights(config, random), { registry, backend: 'cpu' });
    const B = 2;
    const L = 20;
    const E = randomTensor([B, L, 16], random);
    const full = await attn.run({ query: E });
    const weightsOnly = attn.stats().liveTensors;
    const device = attn.createSession({ maxLength: L });
    const host = attn.createSession({ maxLength: L, cache: 'host' });
    expect(device.info.cache).toBe('device');
    // A window of 6 keeps a ring of 6 rows per batch (wrapped after 6 of the 20 tokens).
    expect(host.info).toEqual({
      backend: 'cpu',
      cache: 'host',
      maxLength: L,
      capacity: 6,
      reason: "requested cache: 'host'",
    });
    for (let i = 0; i < L; i++) {
      const x: Tensor = { shape: [B, 1, 16], data: new Float32Array(B * 16) };
      for (let b = 0; b < B; b++) x.data.set(E.data.subarray((b * L + i) * 16, (b * L + i + 1) * 16), b * 16);
      const [d, h] = await Promise.all([device.step(x), host.step(x)]);
      for (let b = 0; b < B; b++) {
        const want = full.attention.data.subarray((b * L + i) * 16, (b * L + i + 1) * 16);
        for (let c = 0; c < 16; c++) {
          expect(d.attention.data[b * 16 + c]).toBeCloseTo(want[c] as number, 5);
          expect(h.attention.data[b * 16 + c]).toBeCloseTo(want[c] as number, 5);
        }
      }
    }
    // Two caches (K, V) stay alive for the device session; none for the host one.
    expect(attn.stats().liveTensors).toBe((weightsOnly as number) + 2);
    await device.dispose();
    await host.dispose();
    expect(attn.stats().liveTensors).toBe(weightsOnly);
    await attn.dispose();
  });
});
