import { describe, expect, it } from 'vitest';
import { BackendRegistry, createAttention, QkvError } from '../src/index.js';
import { NaiveBackend, naiveFactory } from './naive-backend.js';

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

  it("reports the backend's kernel build where it has one, by name and by auto", async () => {
    const withBuild = naiveFactory({
      name: 'wasm',
      priority: 60,
      create: async () => Object.assign(new NaiveBackend(), { kernelBuild: 'relaxed-simd' }),
    });
    for (const backend of ['auto', 'wasm']) {
      const attn = await createAttention(config, weights(), { registry: registry().register(withBuild), backend });
      expect(attn.selection.kernelBuild).toBe('relaxed-simd');
    }
    const plain = await createAttention(config, weights(), { registry: registry() });
    expect('kernelBuild' in plain.selection).toBe(false);
  });

  it('refuses malformed factories', () => {
    expect(() => new BackendRegistry().register({ name: 'auto' } as never)).toThrow(/other than "auto"/);
    expect(() => new BackendRegistry().register(naiveFactory({ priority: Number.NaN }))).toThrow(
      /priority must be a finite number/,
    );
  });
});

describe('backendOptions under auto', () => {
  /** A naive backend that declares its option keys and records what it was given. */
  function taking(name: string, priority: number, keys: string[], seen: unknown[], fails = false) {
    return naiveFactory({
      name,
      priority,
      optionKeys: keys,
      create: async (options) => {
        seen.push({ name, options });
        if (fails) throw new QkvError('WORKER_FAILED', `${name} cannot start`);
        return naiveFactory().create();
      },
    });
  }

  it('gives each backend that declares optionKeys only its own keys', async () => {
    const seen: unknown[] = [];
    const r = new BackendRegistry()
      .register(taking('threads', 50, ['workerUrl'], seen, true))
      .register(taking('plain', 1, ['kernels'], seen));
    const attn = await createAttention(config, weights(), {
      registry: r,
      backendOptions: { workerUrl: '/w.js', kernels: 'reference' },
    });
    expect(attn.backend).toBe('plain');
    expect(seen).toEqual([
      { name: 'threads', options: { workerUrl: '/w.js' } },
      { name: 'plain', options: { kernels: 'reference' } },
    ]);
    expect(attn.selection.skipped[0]).toEqual({
      name: 'threads',
      reason: 'failed to initialise: threads cannot start',
    });
  });

  it('passes nothing to a backend none of whose keys were given, everything to one without optionKeys', async () => {
    const seen: unknown[] = [];
    const r = new BackendRegistry().register(taking('threads', 50, ['workerUrl'], seen, true)).register(
      naiveFactory({
        name: 'legacy',
        create: async (options) => {
          seen.push({ name: 'legacy', options });
          return naiveFactory().create();
        },
      }),
    );
    await createAttention(config, weights(), { registry: r, backendOptions: { other: 1 } });
    expect(seen).toEqual([
      { name: 'threads', options: undefined },
      { name: 'legacy', options: { other: 1 } },
    ]);
  });

  it('refuses a key no registered backend declares', async () => {
    const r = new BackendRegistry().register(taking('plain', 1, ['kernels'], []));
    await expect(
      createAttention(config, weights(), { registry: r, backendOptions: { workerURL: '/w.js' } }),
    ).rejects.toMatchObject({
      code: 'UNKNOWN_OPTION',
      message: 'backendOptions.workerURL: no registered backend takes this option; known: kernels',
    });
  });

  it('an explicit name gets the whole object (the backend validates it)', async () => {
    const seen: unknown[] = [];
    const r = new BackendRegistry().register(taking('plain', 1, ['kernels'], seen));
    await createAttention(config, weights(), { registry: r, backend: 'plain', backendOptions: { x: 1 } });
    expect(seen).toEqual([{ name: 'plain', options: { x: 1 } }]);
  });
});
