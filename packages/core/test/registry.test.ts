import { describe, expect, it } from 'vitest';
import { BackendRegistry, createAttention, QkvError } from '../src/index.js';
import { naiveFactory } from './naive-backend.js';

const weights = (d = 4) => ({
  wq: { shape: [d, d], data: new Float32Array(d * d) },
  wk: { shape: [d, d], data: new Float32Array(d * d) },
  wv: { shape: [d, d], data: new Float32Array(d * d) },
  wo: { shape: [d, d], data: new Float32Array(d * d) },
});
const config = { dModel: 4, numHeads: 2, bias: false };

function registry() {
  return new BackendRegistry()
    .register(naiveFactory({ name: 'slow', priority: 1 }))
    .register(
      naiveFactory({
        name: 'gpu',
        priority: 100,
        isAvailable: async () => ({ available: false, reason: 'no WebGL context' }),
      }),
    )
    .register(naiveFactory({ name: 'threads', priority: 50 }));
}

describe('BackendRegistry', () => {
  it('auto picks the highest-priority available backend and says why it skipped the others', async () => {
    const attn = await createAttention(config, weights(), { registry: registry() });
    expect(attn.backend).toBe('threads');
    expect(attn.selection.skipped).toEqual([
      { name: 'gpu', reason: 'unavailable: no WebGL context' },
      { name: 'slow', reason: 'lower priority (1) than threads (50)' },
    ]);
    expect(attn.selection.reason).toMatch(/after skipping gpu/);
  });

  it('lists every backend with availability and reason, highest priority first', async () => {
    expect(await registry().list()).toEqual([
      { name: 'gpu', priority: 100, available: false, reason: 'no WebGL context' },
      { name: 'threads', priority: 50, available: true },
      { name: 'slow', priority: 1, available: true },
    ]);
  });

  it('an unknown name throws, listing the registered backends and their availability', async () => {
    const e = await createAttention(config, weights(), {
      registry: registry(),
      backend: 'metal',
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(QkvError);
    expect((e as QkvError).code).toBe('BACKEND_UNKNOWN');
    expect((e as QkvError).message).toBe(
      'options.backend: "metal" is not registered; registered: gpu (unavailable: no WebGL context); threads (available); slow (available)',
    );
  });

  it('an unavailable name throws with its reason', async () => {
    const e = (await createAttention(config, weights(), {
      registry: registry(),
      backend: 'gpu',
    }).catch((x: unknown) => x)) as QkvError;
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(/^options.backend: "gpu" is unavailable: no WebGL context;/);
  });

  it('auto falls through a backend whose create() fails, and a probe that throws counts as unavailable', async () => {
    const r = new BackendRegistry()
      .register(
        naiveFactory({
          name: 'broken',
          priority: 9,
          create: async () => {
            throw new Error('driver crashed');
          },
        }),
      )
      .register(
        naiveFactory({
          name: 'weird',
          priority: 8,
          isAvailable: async () => {
            throw new Error('boom');
          },
        }),
      )
      .register(naiveFactory({ name: 'ok', priority: 1 }));
    const attn = await createAttention(config, weights(), { registry: r });
    expect(attn.backend).toBe('ok');
    expect(attn.selection.skipped).toEqual([
      { name: 'broken', reason: 'failed to initialise: driver crashed' },
      { name: 'weird', reason: 'unavailable: probe failed: boom' },
    ]);
  });

  it('auto with nothing usable throws', async () => {
    const r = new BackendRegistry().register(
      naiveFactory({ isAvailable: async () => ({ available: false, reason: 'nope' }) }),
    );
    await expect(createAttention(config, weights(), { registry: r })).rejects.toThrow(
      'options.backend: "auto" found no usable backend; registered: naive (unavailable: nope)',
    );
  });

  it('an explicit name records the others as not requested', async () => {
    const attn = await createAttention(config, weights(), {
      registry: registry(),
      backend: 'slow',
    });
    expect(attn.selection).toMatchObject({
      backend: 'slow',
      requested: 'slow',
      reason: 'requested by name',
    });
    expect(attn.selection.skipped.map((s) => s.name)).toEqual(['gpu', 'threads']);
  });

  it('refuses malformed factories', () => {
    expect(() => new BackendRegistry().register({ name: 'auto' } as never)).toThrow(/other than "auto"/);
    expect(() => new BackendRegistry().register(naiveFactory({ priority: Number.NaN }))).toThrow(
      /priority must be a finite number/,
    );
  });
});
