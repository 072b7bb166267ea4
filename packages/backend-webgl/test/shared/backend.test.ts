import { cpuBackend } from '@qkv/backend-cpu';
import { goldenToApi, loadGoldenCase } from '@qkv/conformance';
import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  BackendRegistry,
  createAttention,
  isQkvError,
  maxAbsDiff,
  type Tensor,
} from '@qkv/core';
import { afterAll, describe, expect, it } from 'vitest';
import { liveDevices, textureDims, WebGLBackend, warmup, webglBackend } from '../../src/index.js';
import { expectedMode } from './env.js';

const registry = new BackendRegistry().register(webglBackend).register(cpuBackend);
const make = (
  config: AttentionConfig,
  weights: Parameters<typeof createAttention>[1],
  backendOptions?: Record<string, unknown>,
) => createAttention(config, weights, { backend: 'webgl', registry, ...(backendOptions ? { backendOptions } : {}) });

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection, got a result');
}

function seq(n: number, f: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + 0.3) * f);
}
function smallCase(
  dModel = 8,
  numHeads = 2,
): {
  config: AttentionConfig;
  weights: AttentionWeights;
  inputs: AttentionInputs;
} {
  const w = (r: number, c: number, s: number) => ({ shape: [r, c], data: seq(r * c, s) });
  const b = (n: number, s: number) => ({ shape: [n], data: seq(n, s) });
  return {
    config: { dModel, numHeads, causal: true },
    weights: {
      wq: w(dModel, dModel, 0.3),
      bq: b(dModel, 0.1),
      wk: w(dModel, dModel, 0.25),
      bk: b(dModel, 0.2),
      wv: w(dModel, dModel, 0.35),
      bv: b(dModel, 0.05),
      wo: w(dModel, dModel, 0.2),
      bo: b(dModel, 0.1),
    },
    inputs: { query: { shape: [2, 5, dModel], data: seq(2 * 5 * dModel, 1) } },
  };
}

afterAll(() => {
  // Every handle below disposed its backend: the shared context must be gone too.
  expect(liveDevices()).toBe(0);
});

describe('factory', () => {
  it('is named webgl with the highest priority, and available here in its default mode', async () => {
    expect(webglBackend.name).toBe('webgl');
    expect(webglBackend.priority).toBe(30);
    const a = await webglBackend.isAvailable();
    expect(a).toMatchObject({ available: true });
    expect(a.available && a.detail).toContain(expectedMode());
  });

  it('auto picks webgl over cpu, and says why', async () => {
    const { config, weights } = smallCase();
    const attn = await createAttention(config, weights, { registry });
    try {
      expect(attn.backend).toBe('webgl');
      expect(attn.selection.skipped).toEqual([{ name: 'cpu', reason: expect.stringContaining('lower priority') }]);
    } finally {
      await attn.dispose();
    }
  });

  it('refuses unknown and invalid backendOptions with what was expected', async () => {
    const { config, weights } = smallCase();
    const e1 = await rejection(make(config, weights, { threads: 2 }));
    expect(isQkvError(e1, 'UNKNOWN_OPTION')).toBe(true);
    expect(e1.message).toContain('backendOptions.threads');
    expect(e1.message).toContain('mode, maxTextureSize, fusedTileElements');
    const e2 = await rejection(make(config, weights, { mode: 'webgpu' }));
    expect(isQkvError(e2, 'INVALID_OPTION')).toBe(true);
    expect(e2.message).toMatch(/"webgl2", "webgl", "headlessgl", got "webgpu"/);
    const e3 = await rejection(make(config, weights, { maxTextureSize: 0 }));
    expect(e3.message).toContain('backendOptions.maxTextureSize: expected a positive integer, got 0');
  });

  it('a mode that cannot run here is BACKEND_UNAVAILABLE with the reason', async () => {
    const { config, weights } = smallCase();
    const other = expectedMode() === 'headlessgl' ? 'webgl2' : 'headlessgl';
    const e = await rejection(make(config, weights, { mode: other }));
    expect(isQkvError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect(e.message).toContain(other === 'headlessgl' ? 'headlessgl mode is for Node' : 'needs a browser canvas');
  });
});

describe('kernels keep intermediates on the GPU', () => {
  it('every kernel returns a texture-backed tensor; download is the only read-back', async () => {
    const backend = await WebGLBackend.create();
    try {
      expect(backend.mode).toBe(expectedMode());
      const a = backend.upload({ shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
      const b = backend.upload({ shape: [3], data: Float32Array.from([10, 20, 30]) });
      const sum = await backend.kernels.add(a, b);
      // On the GPU: uploads are packed RGBA textures, and so is an add of them (gpu.js kernels
      // return gpu.js textures).
      expect(sum.packed?.raw.tex).toBeTruthy();
      expect(sum.texture).toBeNull();
      // The kernel's output of an earlier call must survive the next call (immutable outputs).
      const sum2 = await backend.kernels.add(sum, b);
      expect([...(await backend.download(sum)).data]).toEqual([11, 22, 33, 14, 25, 36]);
      expect([...(await backend.download(sum2)).data]).toEqual([21, 42, 63, 24, 45, 66]);
      for (const t of [a, b, sum, sum2]) backend.dispose(t);
      expect(backend.liveTensors()).toBe(0);
      backend.dispose(a); // idempotent
      await expect(backend.download(a)).rejects.toMatchObject({ code: 'DISPOSED' });
    } finally {
      await backend.destroy();
    }
  });

  it('softmax rows sum to 1, huge scores do not overflow, an all −∞ row is zeros', async () => {
    const backend = await WebGLBackend.create();
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
});

describe('capabilities and limits', () => {
  it('NaN data is refused: by core for every backend (INVALID_DATA), and by the backend itself on direct upload (CAPABILITY)', async () => {
    const { config, weights, inputs } = smallCase();
    const attn = await make(config, weights);
    try {
      const query = { shape: inputs.query.shape, data: Float32Array.from(inputs.query.data) };
      query.data[7] = Number.NaN;
      const e = await rejection(attn.run({ query }));
      expect(isQkvError(e, 'INVALID_DATA')).toBe(true);
      expect(e.message).toMatch(/^query\.data\[7\]: expected a finite number, got NaN/);
    } finally {
      await attn.dispose();
    }
    // Below the API (a caller driving the Backend directly), the GL backend still refuses NaN
    // itself, because GLSL ES leaves NaN comparisons undefined.
    const backend = await WebGLBackend.create();
    try {
      const t = { shape: [2, 5, 8], data: new Float32Array(80) };
      t.data[7] = Number.NaN;
      let e: unknown;
      try {
        backend.upload(t);
      } catch (x) {
        e = x;
      }
      expect(isQkvError(e, 'CAPABILITY')).toBe(true);
      expect((e as Error).message).toContain('NaN at flat index 7');
      expect((e as Error).message).toContain('[2, 5, 8]');
    } finally {
      await backend.destroy();
    }
  });

  it('score matrices over 2^24 values are refused before any work, naming the tensor and the limit', async () => {
    const { config, weights } = smallCase(4, 4);
    const attn = await make({ ...config, causal: false }, weights);
    try {
      const L = 2049; // H·L² = 4·2049² > 2^24
      const query = { shape: [1, L, 4], data: new Float32Array(L * 4) };
      const e = await rejection(attn.run({ query }, { returnWeights: true }));
      expect(isQkvError(e, 'LIMIT_EXCEEDED')).toBe(true);
      expect(e.message).toContain('scores, scaled, masked, weights [B, H, Lq, Lk] = [1, 4, 2049, 2049]');
      expect(e.message).toContain('16777216 (2^24)');
    } finally {
      await attn.dispose();
    }
    // The fused path only holds a bounded tile of scores: the same shape passes the check.
    const backend = await WebGLBackend.create();
    try {
      const dims = {
        batch: 1,
        queryLength: 2049,
        keyLength: 2049,
        dModel: 4,
        keyDim: 4,
        valueDim: 4,
        numHeads: 4,
        headDim: 1,
        numKVHeads: 4,
        selfAttention: true,
      };
      expect(() => backend.checkLimits(dims, true)).not.toThrow();
      expect(() => backend.checkLimits(dims, false)).toThrow(/LIMIT|2\^24/);
      // A KV-cache step of a wide model: one new token against 8193 cached keys of a dModel 2048
      // layer with 4 × 128 KV channels. Its graph feeds only the new token (self-attention), so
      // the [1, 8193, 2048] key input it never holds must not count; the caches hold 8193 × 512.
      const step = {
        ...dims,
        queryLength: 1,
        keyLength: 8193,
        keyCapacity: 8200,
        dModel: 2048,
        keyDim: 2048,
        valueDim: 2048,
        numHeads: 16,
        headDim: 128,
        numKVHeads: 4,
      };
      expect(() => backend.checkLimits(step, true)).not.toThrow();
      // Cross-attention feeds key and value [B, Lk, keyDim]: there they count.
      expect(() => backend.checkLimits({ ...step, selfAttention: false }, true)).toThrow(
        /key \[B, Lk, keyDim\] = \[1, 8193, 2048\]/,
      );
    } finally {
      await backend.destroy();
    }
  });

  it('tensors over MAX_TEXTURE_SIZE in a dimension are refused, at upload and before a run', async () => {
    const { config, weights, inputs } = smallCase();
    // 8×8 weights = 64 values fit 8×8 texels; [2, 5, 8] = 80 values need 8×10 > 8.
    expect(textureDims(80)).toEqual([10, 8]);
    const attn = await make(config, weights, { maxTextureSize: 8 });
    try {
      const e = await rejection(attn.run(inputs));
      expect(isQkvError(e, 'LIMIT_EXCEEDED')).toBe(true);
      expect(e.message).toContain('input, x, attention, residual [B, Lq, dModel] = [2, 5, 8]');
      expect(e.message).toContain('10×8 float texture, over MAX_TEXTURE_SIZE 8');
    } finally {
      await attn.dispose();
    }
    const e2 = await rejection(make(config, weights, { maxTextureSize: 7 }));
    expect(isQkvError(e2, 'LIMIT_EXCEEDED')).toBe(true);
    expect(e2.message).toContain('upload of a [8, 8] tensor');
    expect(e2.message).toContain('MAX_TEXTURE_SIZE 7');
  });
});

describe('fused path', () => {
  it('tiles the score rows: one-row tiles agree with the untiled and the cpu result', async () => {
    const c = await loadGoldenCase('mha_causal_padding_b2_l8_d16_h4');
    const { config, weights, inputs } = goldenToApi(c);
    const results: Tensor[] = [];
    for (const opts of [{ fusedTileElements: 8 }, { fusedTileElements: 3 * 8 }, {}]) {
      const attn = await make(config, weights, opts);
      try {
        const out = await attn.run(inputs);
        expect(out.fused).toBe(true);
        results.push(out.attention);
      } finally {
        await attn.dispose();
      }
    }
    const cpu = await createAttention(config, weights, { backend: 'cpu', registry });
    const ref = (await cpu.run(inputs)).attention;
    await cpu.dispose();
    for (const r of results) expect(maxAbsDiff(r.data, ref.data)).toBeLessThan(1e-5);
  });
});

describe('gpu.js fallbacks', () => {
  it('where packed textures exceed MAX_TEXTURE_SIZE (more rows than the limit) the gpu.js kernels run, and agree', async () => {
    // dModel 4: flat [32, 4] tensors are near-square (8×16 texels) but packed ones are 1×32, over
    // a limit of 16: uploads, projections and fused attention all take their gpu.js paths.
    const dModel = 4;
    const w = (s: number) => ({ shape: [dModel, dModel], data: seq(dModel * dModel, s) });
    const b = (s: number) => ({ shape: [dModel], data: seq(dModel, s) });
    const config = { dModel, numHeads: 2, causal: true, positionalEncoding: 'alibi' as const, window: 5 };
    const weights = {
      wq: w(0.3),
      bq: b(0.1),
      wk: w(0.25),
      bk: b(0.2),
      wv: w(0.35),
      bv: b(0.05),
      wo: w(0.2),
      bo: b(0.1),
    };
    const inputs = { query: { shape: [2, 16, dModel], data: seq(2 * 16 * dModel, 1) } };
    const attn = await make(config, weights, { maxTextureSize: 16, fusedTileElements: 128 });
    const cpu = await createAttention(config, weights, { backend: 'cpu', registry });
    try {
      const out = await attn.run(inputs);
      expect(out.fused).toBe(true);
      const ref = await cpu.run(inputs);
      expect(maxAbsDiff(out.attention.data, ref.attention.data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(out.residual.data, ref.residual.data)).toBeLessThan(1e-5);
    } finally {
      await attn.dispose();
      await cpu.dispose();
    }
  });
});

describe('KV-cache sessions', () => {
  it('keep the cache on the device and compile nothing after the first steps (Lk is a uniform)', async () => {
    const { config, weights } = smallCase();
    const attn = await make({ ...config, positionalEncoding: 'rotary' }, weights);
    const probe = await WebGLBackend.create();
    try {
      const session = attn.createSession({ maxLength: 40 });
      expect(session.info.cache).toBe('device');
      const D = config.dModel;
      const token = (at: number) => ({ shape: [1, 1, D], data: seq(D, 1 + at / 10) });
      for (let at = 0; at < 3; at++) await session.step(token(at));
      const compiled = probe.device.kernelCount;
      const textures = probe.liveTextures();
      for (let at = 3; at < 40; at++) await session.step(token(at));
      expect(probe.device.kernelCount).toBe(compiled);
      // writeRows draws into the cache's textures in place: a step allocates nothing that stays.
      expect(probe.liveTextures()).toBe(textures);
      await session.dispose();
    } finally {
      await attn.dispose();
      await probe.destroy();
    }
  });

  it('writeRows appends in place: the same handle, rows at the offset, the rest untouched', async () => {
    const backend = await WebGLBackend.create();
    try {
      const cache = backend.upload({ shape: [2, 4, 3], data: Float32Array.from({ length: 24 }, (_, i) => i) });
      const rows = backend.upload({ shape: [2, 2, 3], data: Float32Array.from({ length: 12 }, (_, i) => -1 - i) });
      const writeRows = backend.kernels.writeRows as NonNullable<typeof backend.kernels.writeRows>;
      const out = await writeRows(cache, rows, { batch: 2, rows: 2, capacity: 4, offset: 1, width: 3 });
      expect(out).toBe(cache);
      expect([...(await backend.download(cache)).data]).toEqual([
        0, 1, 2, -1, -2, -3, -4, -5, -6, 9, 10, 11, 12, 13, 14, -7, -8, -9, -10, -11, -12, 21, 22, 23,
      ]);
      let e: unknown;
      try {
        await writeRows(cache, rows, { batch: 2, rows: 2, capacity: 4, offset: 3, width: 3 });
      } catch (x) {
        e = x;
      }
      expect(isQkvError(e, 'LIMIT_EXCEEDED')).toBe(true);
      expect((e as Error).message).toContain('rows 3 … 4 does not fit a cache of 4 rows');
    } finally {
      await backend.destroy();
    }
  });
});

describe('KV-cache writes in place', () => {
  it('writeRows updates every form the cache holds (flat and packed) and keeps the other rows', async () => {
    const backend = await WebGLBackend.create();
    try {
      // cache [B=2, capacity=5, width=8]: uploaded packed; a gpu.js op reading it adds the flat form.
      const before = Float32Array.from({ length: 80 }, (_, i) => i);
      const cache = backend.upload({ shape: [2, 5, 8], data: before });
      const touch = await backend.kernels.scale(cache, { scale: 1 });
      backend.dispose(touch);
      expect(cache.texture).not.toBeNull();
      expect(cache.packed).not.toBeNull();
      const rows = backend.upload({ shape: [2, 2, 8], data: Float32Array.from({ length: 32 }, (_, i) => -1 - i) });
      const writeRows = backend.kernels.writeRows as NonNullable<typeof backend.kernels.writeRows>;
      await writeRows(cache, rows, { batch: 2, rows: 2, capacity: 5, offset: 3, width: 8 });
      const expected = Float32Array.from(before);
      for (let b = 0; b < 2; b++)
        expected.set(
          Float32Array.from({ length: 16 }, (_, i) => -1 - b * 16 - i),
          (b * 5 + 3) * 8,
        );
      // download reads the flat texture; add with a packed-only zero reads the packed copy.
      expect([...(await backend.download(cache)).data]).toEqual([...expected]);
      const zeros = backend.upload({ shape: [2, 5, 8], data: new Float32Array(80) });
      const viaPacked = await backend.kernels.add(cache, zeros);
      expect([...(await backend.download(viaPacked)).data]).toEqual([...expected]);
      for (const t of [viaPacked, zeros, rows, cache]) backend.dispose(t);
    } finally {
      await backend.destroy();
    }
  });

  it('fork() + step on either session never changes the other (no aliasing of the written cache)', async () => {
    const { config, weights } = smallCase();
    const attn = await make({ ...config, causal: true, positionalEncoding: 'rotary' }, weights);
    try {
      const D = config.dModel;
      const token = (at: number, f: number) => ({ shape: [1, 1, D], data: seq(D, f + at / 7) });
      const prefix = [0, 1, 2].map((at) => token(at, 1));
      const tailA = [3, 4, 5].map((at) => token(at, 2));
      const tailB = [3, 4, 5].map((at) => token(at, -1.5));
      // Reference: a fresh session per sequence.
      const reference = async (tokens: Tensor[]) => {
        const s = attn.createSession({ maxLength: 8 });
        const outs: Float32Array[] = [];
        for (const x of tokens) outs.push((await s.step(x)).attention.data as Float32Array);
        await s.dispose();
        return outs;
      };
      const wantA = await reference([...prefix, ...tailA]);
      const wantB = await reference([...prefix, ...tailB]);
      const parent = attn.createSession({ maxLength: 8 });
      for (const x of prefix) await parent.step(x);
      const child = parent.fork();
      // Interleaved: each write into one cache must leave the other's rows and forms alone.
      for (let i = 0; i < 3; i++) {
        const a = await parent.step(tailA[i] as Tensor);
        const b = await child.step(tailB[i] as Tensor);
        expect(maxAbsDiff(a.attention.data, wantA[3 + i] as Float32Array)).toBeLessThan(1e-5);
        expect(maxAbsDiff(b.attention.data, wantB[3 + i] as Float32Array)).toBeLessThan(1e-5);
      }
      // A fork taken after the writes sees them, and stepping it leaves the parent alone.
      const late = parent.fork();
      await late.step(token(6, 3));
      const next = await parent.step(token(6, 2));
      const wantNext = await reference([...prefix, ...tailA, token(6, 2)]);
      expect(maxAbsDiff(next.attention.data, wantNext[6] as Float32Array)).toBeLessThan(1e-5);
      for (const s of [late, child, parent]) await s.dispose();
    } finally {
      await attn.dispose();
    }
  });
});

describe('warmup', () => {
  it('compiles a shape ahead of time; a handle created meanwhile starts warm', async () => {
    const { config, weights, inputs } = smallCase();
    const w = await warmup(config, { batch: 2, queryLength: 5 });
    try {
      expect(w.mode).toBe(expectedMode());
      expect(w.kernels).toBeGreaterThan(5);
      expect(w.compileMs).toBeGreaterThan(0);
      const attn = await make(config, weights);
      const probe = await WebGLBackend.create();
      const before = probe.device.kernelCount;
      try {
        await attn.run(inputs, { returnWeights: true });
        await attn.run(inputs);
        // Same shape signature: nothing new compiled.
        expect(probe.device.kernelCount).toBe(before);
      } finally {
        await attn.dispose();
        await probe.destroy();
      }
    } finally {
      await w.release();
    }
  });
});

describe('resources', () => {
  it('repeated runs leave GPU textures flat (all intermediates freed)', async () => {
    const { config, weights, inputs } = smallCase();
    const backend = await WebGLBackend.create();
    const attn = await make(config, weights);
    try {
      await attn.run(inputs, { returnWeights: true });
      await attn.run(inputs);
      const base = backend.liveTextures();
      for (let i = 0; i < 100; i++) await attn.run(inputs, { returnWeights: i % 2 === 0 });
      expect(backend.liveTextures()).toBe(base);
      expect(backend.device.counts.framebuffers).toBeLessThanOrEqual(backend.device.kernelCount * 2 + 2);
    } finally {
      await attn.dispose();
      await backend.destroy();
    }
  });

  it('500 create/run/dispose cycles leave live textures and tensors flat', async () => {
    const { config, weights, inputs } = smallCase();
    // A pinned backend keeps the shared context (and its compiled kernels) alive across cycles,
    // so each cycle costs a run, not a recompile; its texture count is the GPU's live total.
    const pin = await WebGLBackend.create();
    try {
      const first = await make(config, weights);
      await first.run(inputs);
      await first.dispose();
      const base = pin.liveTextures();
      const kernels = pin.device.kernelCount;
      for (let i = 0; i < 500; i++) {
        const attn = await make(config, weights);
        await attn.run(inputs);
        await attn.dispose();
      }
      expect(pin.liveTextures()).toBe(base);
      expect(pin.device.kernelCount).toBe(kernels);
    } finally {
      await pin.destroy();
    }
    // Without a pin, the last dispose destroys the context: nothing is left anywhere.
    for (let i = 0; i < 3; i++) {
      const attn = await make(config, weights);
      await attn.run(inputs);
      expect(liveDevices()).toBe(1);
      await attn.dispose();
      expect(liveDevices()).toBe(0);
    }
  });

  it('dispose() during a run rejects it with DISPOSED and frees everything', async () => {
    const { config, weights, inputs } = smallCase();
    const attn = await make(config, weights);
    const run = attn.run(inputs);
    await attn.dispose();
    await expect(run).rejects.toMatchObject({ code: 'DISPOSED' });
    expect(liveDevices()).toBe(0);
  });
});
