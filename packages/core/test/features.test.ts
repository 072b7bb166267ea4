import { describe, expect, it } from 'vitest';
import {
  type AttentionConfig,
  type AttentionWeights,
  alibiSlopes,
  BackendRegistry,
  buildGraph,
  createAttention,
  nodeOf,
  QkvError,
  resolveConfig,
  type Tensor,
} from '../src/index.js';
import { type NaiveBackend, naiveFactory } from './naive-backend.js';

function rand(seed: number) {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
}
const r = rand(11);
const T = (shape: number[]): Tensor => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, r),
});
const weightsFor = (d: number, H: number, KVH = H, hd = d / H) => ({
  wq: T([d, H * hd]),
  wk: T([d, KVH * hd]),
  wv: T([d, KVH * hd]),
  wo: T([H * hd, d]),
  bq: T([H * hd]),
  bk: T([KVH * hd]),
  bv: T([KVH * hd]),
  bo: T([d]),
});

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, msg?: RegExp): Promise<QkvError> {
  let e: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (x) {
    e = x;
  }
  expect(e, `expected a QkvError ${code}`).toBeInstanceOf(QkvError);
  expect((e as QkvError).code).toBe(code);
  if (msg) expect((e as QkvError).message).toMatch(msg);
  return e as QkvError;
}

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!(d <= tol + tol * Math.abs(b[i] as number))) expect.fail(`[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

describe('alibiSlopes (Press et al. 2021)', () => {
  it('is the geometric sequence 2^(−8h/H) for H a power of two', () => {
    expect(alibiSlopes(8)).toEqual([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]);
    expect(alibiSlopes(1)).toEqual([2 ** -8]);
    expect(alibiSlopes(2)).toEqual([2 ** -4, 2 ** -8]);
  });
  it("follows the paper's rule otherwise: the 2^k slopes, then every other slope of 2^(k+1)", () => {
    // H = 6: slopes(4) = 2^-2, 2^-4, 2^-6, 2^-8; slopes(8)[0::2] = 2^-1, 2^-3, 2^-5, 2^-7 → first 2.
    expect(alibiSlopes(6)).toEqual([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]);
    // H = 3: slopes(2) = 2^-4, 2^-8; slopes(4)[0::2] = 2^-2 → first 1.
    expect(alibiSlopes(3)).toEqual([2 ** -4, 2 ** -8, 2 ** -2]);
  });
});

describe('backend capabilities (supports)', () => {
  const config: AttentionConfig = { dModel: 4, numHeads: 2, window: 2 };
  const w = weightsFor(4, 2);
  const reg = () =>
    new BackendRegistry()
      .register(naiveFactory({ name: 'plain', priority: 50 }))
      .register(naiveFactory({ name: 'picky', priority: 100, supports: () => 'no sliding windows on this device' }))
      .register(naiveFactory({ name: 'fallback', priority: 1, supports: () => true }));

  it('auto skips backends that cannot run the config and says why', async () => {
    const attn = await createAttention(config, w, { registry: reg() });
    expect(attn.backend).toBe('fallback');
    expect(attn.selection.skipped).toEqual([
      {
        name: 'picky',
        reason:
          'cannot run this config: backend "picky" does not support config.window: no sliding windows on this device',
      },
      {
        name: 'plain',
        reason:
          'cannot run this config: backend "plain" does not support config.window (it declares no supports(), so it runs only the base features)',
      },
    ]);
    await attn.dispose();
  });

  it('a backend without supports() still runs base configs; a supports() is consulted for every config', async () => {
    const attn = await createAttention({ dModel: 4, numHeads: 2 }, w, { registry: reg() });
    // 'picky' refuses everything it is asked; 'plain' runs base configs without declaring anything.
    expect(attn.backend).toBe('plain');
    expect(attn.selection.skipped[0]?.reason).toBe(
      'cannot run this config: backend "picky" does not support this config: no sliding windows on this device',
    );
    await attn.dispose();
  });

  it('an explicit backend that cannot run the config throws CAPABILITY naming the option', async () => {
    await expectCode(
      createAttention(config, w, { registry: reg(), backend: 'plain' }),
      'CAPABILITY',
      /^options.backend: backend "plain" does not support config.window \(it declares no supports\(\)/,
    );
    await expectCode(
      createAttention({ ...config, maskMod: () => true }, w, { registry: reg(), backend: 'picky' }),
      'CAPABILITY',
      /does not support config.window, config.maskMod: no sliding windows on this device/,
    );
  });

  it('auto with no backend able to run it throws CAPABILITY listing each refusal', async () => {
    const registry = new BackendRegistry().register(naiveFactory({ name: 'plain' }));
    await expectCode(
      createAttention({ dModel: 4, numHeads: 2, positionalEncoding: 'alibi' }, w, { registry }),
      'CAPABILITY',
      /"auto" found no backend that runs this config: plain \(cannot run this config: backend "plain" does not support config.positionalEncoding 'alibi'/,
    );
  });

  it("consults the created backend's own supports() and the kernels a feature needs, destroying it on refusal", async () => {
    const destroyed: string[] = [];
    const registry = new BackendRegistry()
      .register(
        naiveFactory({ name: 'gl', priority: 10, supports: () => true }, (b) => {
          (b as unknown as { supports: unknown }).supports = () => 'gpu.js cannot transpile this maskMod';
          const d = b.destroy;
          b.destroy = () => (destroyed.push('gl'), d());
        }),
      )
      .register(naiveFactory({ name: 'liar', priority: 5, supports: () => true }))
      .register(
        naiveFactory({ name: 'last', priority: 1, supports: () => true }, (b) => {
          // Only presence matters for selection; this test never runs the kernel.
          (b.kernels as { rotary?: unknown }).rotary = (x: unknown) => x;
        }),
      );
    const mm = { dModel: 4, numHeads: 2, maskMod: () => true };
    await expectCode(
      createAttention(mm, w, { registry, backend: 'gl' }),
      'CAPABILITY',
      /backend "gl" does not support config.maskMod: gpu.js cannot transpile this maskMod/,
    );
    expect(destroyed).toEqual(['gl']);
    // 'liar' claims rotary but the naive backend has no rotary kernel.
    const attn = await createAttention({ dModel: 4, numHeads: 2, positionalEncoding: 'rotary' }, w, { registry });
    expect(attn.backend).toBe('last');
    expect(attn.selection.skipped.map((s) => s.reason)).toEqual([
      'cannot run this config: backend "gl" does not support config.positionalEncoding \'rotary\': gpu.js cannot transpile this maskMod',
      'cannot run this config: backend "liar" says it supports config.positionalEncoding \'rotary\' but has no kernels.rotary',
    ]);
  });
});

async function naive(
  config: AttentionConfig,
  w: AttentionWeights = weightsFor(config.dModel, config.numHeads, config.numKVHeads),
) {
  let backend: NaiveBackend | undefined;
  const registry = new BackendRegistry().register(naiveFactory({}, (b) => (backend = b)));
  const attn = await createAttention(config, w, { registry });
  return { attn, backend: backend as NaiveBackend, w };
}

describe("returnWeights: 'perHead' | 'averaged'", () => {
  it("'averaged' is the mean over heads of 'perHead' (PyTorch average_attn_weights)", async () => {
    const { attn } = await naive({ dModel: 8, numHeads: 4, causal: true });
    const query = T([2, 3, 8]);
    const per = await attn.run({ query }, { returnWeights: 'perHead' });
    const avg = await attn.run({ query }, { returnWeights: 'averaged' });
    const legacy = await attn.run({ query }, { returnWeights: true });
    expect(per.weights?.shape).toEqual([2, 4, 3, 3]);
    expect([...(legacy.weights as Tensor).data]).toEqual([...(per.weights as Tensor).data]);
    expect(avg.weights?.shape).toEqual([2, 3, 3]);
    const p = per.weights as Tensor;
    const mean = new Float64Array(2 * 9);
    for (let b = 0; b < 2; b++)
      for (let h = 0; h < 4; h++)
        for (let e = 0; e < 9; e++)
          mean[b * 9 + e] = (mean[b * 9 + e] as number) + (p.data[(b * 4 + h) * 9 + e] as number) / 4;
    expectClose((avg.weights as Tensor).data, mean, 1e-6);
    // Causal: query 0 of batch 1 puts all its weight on key 0 in every head, so in the mean too.
    expect(avg.weights?.data[9]).toBeCloseTo(1, 6);
    expect(avg.weights?.data[10]).toBe(0);
    const un = await attn.run({ query: T([3, 8]) }, { returnWeights: 'averaged' });
    expect(un.weights?.shape).toEqual([3, 3]);
    await expectCode(
      attn.run({ query }, { returnWeights: 'mean' as never }),
      'INVALID_OPTION',
      /^options.returnWeights: expected true, false, 'perHead' or 'averaged', got "mean"$/,
    );
  });
});

describe("positionalEncoding: 'learned'", () => {
  it('adds rows of the user table to E: same as E + table[0 … Lq−1] without PE', async () => {
    const table = T([6, 8]);
    const w = weightsFor(8, 2);
    const { attn } = await naive(
      { dModel: 8, numHeads: 2, positionalEncoding: 'learned' },
      { ...w, positionalEmbedding: table },
    );
    const { attn: plain } = await naive({ dModel: 8, numHeads: 2 }, w);
    const E = T([2, 4, 8]);
    const out = await attn.run({ query: E }, { capture: ['x'] });
    const shifted = Float32Array.from(E.data, (v, i) => v + (table.data[i % 32] as number));
    const want = await plain.run({ query: { shape: [2, 4, 8], data: shifted } });
    expect([...(out.positionalEncoding as Tensor).data]).toEqual([...table.data.subarray(0, 32)]);
    expect([...out.attention.data]).toEqual([...want.attention.data]);
    await expectCode(
      attn.run({ query: T([1, 7, 8]) }),
      'INVALID_SHAPE',
      /^positionalEmbedding: positions 0 … 6 needed, but the learned table has 6 rows \(\[6, 8\]\)$/,
    );
  });
  it('validates the table', async () => {
    const registry = new BackendRegistry().register(naiveFactory());
    const w = weightsFor(8, 2);
    await expectCode(
      createAttention({ dModel: 8, numHeads: 2, positionalEncoding: 'learned' }, w, { registry }),
      'INVALID_DATA',
      /^weights.positionalEmbedding: missing; expected \[maxLength, 8\] because config.positionalEncoding is 'learned'$/,
    );
    await expectCode(
      createAttention(
        { dModel: 8, numHeads: 2, positionalEncoding: 'learned' },
        { ...w, positionalEmbedding: T([4, 6]) },
        { registry },
      ),
      'INVALID_SHAPE',
      /^positionalEmbedding: expected \[maxLength, 8\] \(positions × dModel\), got \[4, 6\]$/,
    );
    await expectCode(
      createAttention({ dModel: 8, numHeads: 2 }, { ...w, positionalEmbedding: T([4, 8]) }, { registry }),
      'INVALID_OPTION',
      /only used with positionalEncoding 'learned', got positionalEncoding 'none'/,
    );
  });
});

describe('graph nodes for the features', () => {
  const shape = {
    batch: 2,
    queryLength: 3,
    keyLength: 3,
    selfAttention: true,
    hasKeyPaddingMask: false,
    hasAttnMask: false,
  };
  it("rotary: qProj/kProj are the projections, q/k their RoPE'd versions at the position offset", () => {
    const g = buildGraph(resolveConfig({ dModel: 8, numHeads: 2, numKVHeads: 1, positionalEncoding: 'rotary' }), {
      ...shape,
      positionOffset: 4,
    });
    const by = Object.fromEntries(g.nodes.map((n) => [n.name, n]));
    expect(by.q?.op).toBe('rotary');
    expect(by.q?.inputs).toEqual(['qProj']);
    expect(by.q?.attrs).toEqual({ offset: 4, base: 10000, pairing: 'half', headDim: 4, batch: 2, length: 3, heads: 2 });
    expect(nodeOf(g, 'k', 'rotary').attrs.heads).toBe(1);
    expect(by.kProj?.op).toBe('linear');
    expect(by.scores?.inputs).toEqual(['q', 'k']);
  });
  it('alibi, window, maskMod, scoreMod become mask attrs; the JSON form drops the functions', () => {
    const maskMod = () => true;
    const g = buildGraph(
      resolveConfig({ dModel: 8, numHeads: 4, positionalEncoding: 'alibi', window: 2, maskMod, scoreMod: (s) => s }),
      shape,
    );
    const m = nodeOf(g, 'masked', 'mask');
    expect(m.attrs.alibiSlopes).toEqual([1 / 4, 1 / 16, 1 / 64, 1 / 256]);
    expect(m.attrs.window).toBe(2);
    expect(m.attrs.maskMod).toBe(maskMod);
    expect(m.attrs.queryOffset).toBeUndefined();
    expect(JSON.parse(JSON.stringify(m)).attrs.maskMod).toBeUndefined();
  });
  it('a device session step appends k/v with writeRows into caches read at stride maxLength', () => {
    const g = buildGraph(resolveConfig({ dModel: 8, numHeads: 2, causal: true }), {
      ...shape,
      queryLength: 1,
      keyLength: 5,
      positionOffset: 4,
      cache: { capacity: 16, mode: 'device' },
    });
    const by = Object.fromEntries(g.nodes.map((n) => [n.name, n]));
    expect(by.k?.shape).toEqual([2, 1, 8]);
    expect(by.kCache?.op).toBe('param');
    expect(by.kCache?.shape).toEqual([2, 16, 8]);
    expect(by.kAll?.op).toBe('writeRows');
    expect(by.kAll?.attrs).toEqual({ batch: 2, rows: 1, capacity: 16, offset: 4, width: 8 });
    expect(by.scores?.inputs).toEqual(['q', 'kAll']);
    expect(nodeOf(g, 'scores', 'scores').attrs.keyCapacity).toBe(16);
    expect(by.heads?.inputs).toEqual(['weights', 'vAll']);
    expect(nodeOf(g, 'masked', 'mask').attrs.queryOffset).toBe(4);
    // What backends size their limits by (checkLimits): the caches' capacity, and that no
    // key/value input of Lk rows is fed (K, V of the new token come from x).
    expect(g.dims).toMatchObject({ queryLength: 1, keyLength: 5, keyCapacity: 16, selfAttention: true });
  });
});

describe('KV-cache session (host cache on a backend without writeRows)', () => {
  const cfg = { dModel: 8, numHeads: 2, numKVHeads: 1, causal: true, positionalEncoding: 'sinusoidal' as const };

  it('token by token (and in chunks) reproduces one causal run', async () => {
    const { attn, backend } = await naive(cfg);
    const E = T([2, 7, 8]);
    const full = await attn.run({ query: E }, { returnWeights: true });
    const s = attn.createSession({ maxLength: 8 });
    expect(s.info.cache).toBe('host');
    expect(s.info.reason).toMatch(/has no writeRows kernel: K\/V are kept on the host/);
    const chunks = [1, 1, 3, 2];
    let at = 0;
    for (const t of chunks) {
      const x = new Float32Array(2 * t * 8);
      for (let b = 0; b < 2; b++) x.set(E.data.subarray((b * 7 + at) * 8, (b * 7 + at + t) * 8), b * t * 8);
      const out = await s.step({ shape: [2, t, 8], data: x }, { returnWeights: true });
      expect(out.positions).toEqual([at, at + t]);
      expect(out.weights?.shape).toEqual([2, 2, t, at + t]);
      for (let b = 0; b < 2; b++) {
        expectClose(
          out.attention.data.subarray(b * t * 8, (b + 1) * t * 8),
          full.attention.data.subarray((b * 7 + at) * 8, (b * 7 + at + t) * 8),
        );
      }
      at += t;
      expect(s.length).toBe(at);
    }
    await expectCode(
      s.step(T([2, 2, 8])),
      'SESSION_FULL',
      /^session.step: 2 new token\(s\) after 7 would make 9, over maxLength 8; call reset\(\)/,
    );
    expect(s.length).toBe(7);
    await s.reset();
    expect(s.length).toBe(0);
    const again = await s.step({
      shape: [2, 1, 8],
      data: Float32Array.from([...E.data.subarray(0, 8), ...E.data.subarray(56, 64)]),
    });
    expectClose(again.attention.data.subarray(0, 8), full.attention.data.subarray(0, 8));
    await s.dispose();
    await expectCode(s.step(T([2, 1, 8])), 'DISPOSED');
    expect(backend.liveTensors()).toBe(8);
    await attn.dispose();
  });

  it('validates its options and steps', async () => {
    const { attn } = await naive(cfg);
    await expectCode(
      () => attn.createSession({ maxLength: 0 }),
      'INVALID_CONFIG',
      /^createSession.maxLength: expected a positive integer, got 0$/,
    );
    await expectCode(
      () => attn.createSession({ maxLength: 4, size: 2 } as never),
      'UNKNOWN_OPTION',
      /unknown option "size"/,
    );
    await expectCode(
      () => attn.createSession({ maxLength: 4, cache: 'device' }),
      'CAPABILITY',
      /'device' needs a writeRows kernel/,
    );
    const s = attn.createSession({ maxLength: 4, batch: 2 });
    await expectCode(s.step(T([1, 1, 8])), 'INVALID_SHAPE', /this session's batch is 2, got \[1, 1, 8\]/);
    await expectCode(s.step(T([2, 1, 7])), 'INVALID_SHAPE', /expected \[B, t, 8\]/);
    const { attn: bidir } = await naive({ dModel: 8, numHeads: 2 });
    await expectCode(() => bidir.createSession({ maxLength: 4 }), 'INVALID_CONFIG', /needs config.causal true/);
    // Unbatched steps answer unbatched.
    const u = attn.createSession({ maxLength: 4 });
    expect((await u.step(T([2, 8]))).attention.shape).toEqual([2, 8]);
    await attn.dispose();
    await expectCode(u.step(T([1, 8])), 'DISPOSED');
  });
});
