import { describe, expect, it } from 'vitest';
import { createAttention, getDefaultRegistry, listBackends, QkvError, registerBackend, tensor } from '../src/index.js';

const d = 4;
const eye = tensor(Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => (i === j ? 1 : 0))));
const weights = { wq: eye, wk: eye, wv: eye, wo: eye };
const config = { dModel: d, numHeads: 2, bias: false };

describe('qkv public API', () => {
  it('listBackends reports every built-in backend with availability, cpu always available', async () => {
    const list = await listBackends();
    const cpu = list.find((b) => b.name === 'cpu');
    expect(cpu).toMatchObject({ name: 'cpu', available: true });
    for (const b of list) if (!b.available) expect(b.reason, `${b.name} must say why it is unavailable`).toBeTruthy();
  });

  it('the same numbers on every available backend', async () => {
    const query = tensor([
      [
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 1],
      ],
    ]);
    const available = (await listBackends()).filter((b) => b.available);
    const results: Awaited<ReturnType<Awaited<ReturnType<typeof createAttention>>['run']>>[] = [];
    for (const b of available) {
      const attn = await createAttention({ ...config, causal: true }, weights, { backend: b.name });
      expect(attn.backend).toBe(b.name);
      results.push(await attn.run({ query }, { returnWeights: true }));
      await attn.dispose();
    }
    for (const r of results) {
      r.attention.data.forEach((v, i) => expect(v).toBeCloseTo(results[0]?.attention.data[i] as number, 4));
    }
  });

  it('auto reports which backend runs and why the others were skipped', async () => {
    const attn = await createAttention(config, weights, { backend: 'auto' });
    const names = (await listBackends()).map((b) => b.name);
    expect(names).toContain(attn.backend);
    expect(attn.selection.skipped.map((s) => s.name).sort()).toEqual(names.filter((n) => n !== attn.backend).sort());
    await attn.dispose();
  });

  it("computes the seed's steps: softmax(QKᵀ/√dk) V, ΔE, E' = E + ΔE", async () => {
    const attn = await createAttention(
      { dModel: 2, numHeads: 1, bias: false },
      {
        wq: tensor([
          [1, 0],
          [0, 1],
        ]),
        wk: tensor([
          [1, 0],
          [0, 1],
        ]),
        wv: tensor([
          [1, 0],
          [0, 1],
        ]),
        wo: tensor([
          [1, 0],
          [0, 1],
        ]),
      },
      { backend: 'cpu' },
    );
    const E = tensor([
      [1, 0],
      [0, 1],
    ]);
    const out = await attn.run({ query: E }, { returnWeights: true, capture: ['scores', 'scaled'] });
    // scores = E·Eᵀ = I; scaled = I/√2; weights row 0 = softmax([1/√2, 0])
    expect([...(out.captured.scores?.data ?? [])]).toEqual([1, 0, 0, 1]);
    const a = Math.exp(1 / Math.SQRT2);
    const w0 = a / (a + 1);
    expect(out.weights?.data[0]).toBeCloseTo(w0, 6);
    expect(out.attention.data[0]).toBeCloseTo(w0, 6);
    expect(out.residual.data[0]).toBeCloseTo(1 + w0, 6);
    await attn.dispose();
  });

  it('a user registers a backend in one call', async () => {
    const cpu = getDefaultRegistry().get('cpu');
    if (!cpu) throw new Error('cpu missing');
    registerBackend({ ...cpu, name: 'my-cpu', priority: -1 });
    const attn = await createAttention(config, weights, { backend: 'my-cpu' });
    expect(attn.backend).toBe('my-cpu');
    await attn.dispose();
    getDefaultRegistry().unregister('my-cpu');
  });

  it('an unknown backend lists the registered ones', async () => {
    const e = (await createAttention(config, weights, { backend: 'tpu' }).catch((x: unknown) => x)) as QkvError;
    expect(e).toBeInstanceOf(QkvError);
    expect(e.message).toMatch(/^options.backend: "tpu" is not registered; registered: .*cpu \(available\)/);
  });
});
