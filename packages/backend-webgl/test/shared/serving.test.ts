import { cpuBackend } from '@qkv/backend-cpu';
import { compareArrays, randomTensor, randomWeights, referenceAttention, rng } from '@qkv/conformance';
import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  BackendRegistry,
  createAttention,
  type Tensor,
} from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { WebGLBackend, webglBackend } from '../../src/index.js';

// The serving features on the webgl programs where the conformance block's small cases do not
// reach: packed sequences spanning many 32-key id blocks (the block table and the skipped loops
// of passes 2–4), several score tiles (a tile's sink logits by its first row), the gpu.js
// fallback, softcap far from and close to 0 (both branches of the stable tanh), and a window
// session whose ring cache wraps, with ALiBi and sink tokens (the sink rows' positions under a keyOffset).

const registry = new BackendRegistry().register(webglBackend).register(cpuBackend);
const TOL = { atol: 1e-4, rtol: 1e-3 };

function expectClose(
  name: string,
  actual: Tensor | undefined,
  expected: Tensor | { shape: number[]; data: Float64Array },
) {
  expect(actual, name).toBeDefined();
  const c = compareArrays(name, actual as Tensor, expected, TOL);
  if (!c.ok) expect.fail(c.message);
}

function setup(config: AttentionConfig, seed: number, B: number, L: number) {
  const random = rng(seed);
  const weights: AttentionWeights = {
    ...randomWeights(config, random),
    ...(config.sinks ? { sinks: randomTensor([config.numHeads], random, 2) } : {}),
  };
  const inputs: AttentionInputs = { query: randomTensor([B, L, config.dModel], random) };
  return { weights, inputs };
}

const idsOf = (rows: number[][]): Tensor => ({
  shape: [rows.length, (rows[0] as number[]).length],
  data: Float32Array.from(rows.flat()),
});
const contiguous = (lengths: number[]) => lengths.flatMap((n, s) => new Array<number>(n).fill(s));

/**
 * Runs `inputs` fused (also with returnLse) and, unless `fusedOnly`, unfused on webgl with
 * `backendOptions`, against the float64 reference.
 */
async function check(
  config: AttentionConfig,
  weights: AttentionWeights,
  inputs: AttentionInputs,
  backendOptions: Record<string, unknown> = {},
  fusedOnly = false,
) {
  const ref = referenceAttention(config, weights, inputs);
  const attn = await createAttention(config, weights, { backend: 'webgl', registry, backendOptions });
  try {
    const fused = await attn.run(inputs);
    expect(fused.fused).toBe(true);
    expectClose('attention (fused)', fused.attention, ref.attention);
    // returnLse stays on the same fused programs: lse from their row statistics.
    const withLse = await attn.run(inputs, { returnLse: true });
    expect(withLse.fused).toBe(true);
    expectClose('attention (fused, returnLse)', withLse.attention, ref.attention);
    expectClose('lse (fused)', withLse.lse, ref.lse);
    if (fusedOnly) return;
    const unfused = await attn.run(inputs, { returnWeights: true });
    expect(unfused.fused).toBe(false);
    expectClose('weights', unfused.weights, ref.weights);
    expectClose('attention (unfused)', unfused.attention, ref.attention);
  } finally {
    await attn.dispose();
  }
}

describe('serving features on the webgl programs', () => {
  it('packed sequences over many id blocks, causal, with softcap and sink logits, in one and in many tiles', async () => {
    const config: AttentionConfig = { dModel: 16, numHeads: 2, causal: true, softcap: 3, sinks: true, scale: 1 };
    const lengths = [37, 5, 70, 1, 20];
    const L = lengths.reduce((a, b) => a + b, 0);
    const { weights, inputs } = setup(config, 181, 2, L);
    inputs.sequenceIds = idsOf([contiguous(lengths), contiguous([L])]);
    // Default tiles, then tiles of 7 score rows (tiles start inside a (b, h) segment).
    for (const opts of [{}, { fusedTileElements: 7 * L }]) await check(config, weights, inputs, opts);
  });

  it('where vertex shaders cannot read textures, passes 1 and 3 draw whole tiles and give the same results', async () => {
    const config: AttentionConfig = { dModel: 8, numHeads: 2, causal: true, window: 20, sinkTokens: 2, sinks: true };
    const L = 90;
    const { weights, inputs } = setup(config, 186, 1, L);
    inputs.sequenceIds = idsOf([contiguous([40, 3, 47])]);
    // The GL context (and its RawGl) is shared by every backend of a mode: a probe backend
    // holds it while the flag is off, as on a GPU with MAX_VERTEX_TEXTURE_IMAGE_UNITS = 0.
    const probe = await WebGLBackend.create();
    const raw = probe.device.raw;
    const had = raw.vertexTextures;
    Object.defineProperty(raw, 'vertexTextures', { value: false, configurable: true });
    try {
      await check(config, weights, inputs, {}, true);
    } finally {
      Object.defineProperty(raw, 'vertexTextures', { value: had, configurable: true });
      await probe.destroy();
    }
  });

  it('interleaved ids whose blocks all hold several sequences, bidirectional, window and sink tokens, ALiBi', async () => {
    const config: AttentionConfig = {
      dModel: 8,
      numHeads: 2,
      window: 24,
      sinkTokens: 3,
      positionalEncoding: 'alibi',
    };
    const L = 100;
    const { weights, inputs } = setup(config, 182, 1, L);
    // Runs of 7 tokens cycling through ids 0, 1, 2: every 32-key block holds the query's id or
    // not by its range only, so the per-key test inside a block does the hiding.
    inputs.sequenceIds = idsOf([Array.from({ length: L }, (_, j) => Math.floor(j / 7) % 3)]);
    inputs.keyPaddingMask = idsOf([Array.from({ length: L }, (_, j) => (j % 11 === 5 ? 1 : 0))]);
    await check(config, weights, inputs);
  });

  it('the gpu.js fallback (packed textures over MAX_TEXTURE_SIZE) runs packed sequences, softcap and sinks', async () => {
    const config: AttentionConfig = { dModel: 4, numHeads: 2, causal: true, softcap: 1.5, sinks: true, scale: 2 };
    const { weights, inputs } = setup(config, 183, 2, 16);
    inputs.sequenceIds = idsOf([contiguous([5, 11]), contiguous([3, 3, 10])]);
    // The [B, H, L, L] weights would not fit a 16-texel texture either: fused only.
    await check(config, weights, inputs, { maxTextureSize: 16, fusedTileElements: 64 }, true);
  });

  it('softcap: scores far past c saturate without overflow, tiny ones keep their digits', async () => {
    for (const [scale, softcap] of [
      [4000, 0.5],
      [1e-5, 2],
    ] as const) {
      const config: AttentionConfig = { dModel: 8, numHeads: 2, causal: true, scale, softcap };
      const { weights, inputs } = setup(config, 184, 1, 9);
      await check(config, weights, inputs);
    }
  });

  it('a window session (a wrapped ring) with ALiBi, sink tokens, sink logits and softcap matches one causal run', async () => {
    const w = 5;
    const config: AttentionConfig = {
      dModel: 8,
      numHeads: 2,
      causal: true,
      window: w,
      sinkTokens: 2,
      sinks: true,
      softcap: 2,
      positionalEncoding: 'alibi',
    };
    const L = 60;
    const { weights, inputs } = setup(config, 185, 1, L);
    const E = inputs.query as Tensor;
    const ref = referenceAttention(config, weights, { query: E });
    const attn = await createAttention(config, weights, { backend: 'webgl', registry });
    try {
      const s = attn.createSession({ maxLength: 10_000 });
      expect(s.info.cache).toBe('device');
      const D = 8;
      const got = new Float32Array(L * D);
      for (let at = 0; at < L - 1; ) {
        const t = Math.min([1, 3, 1, 2][at % 4] as number, L - 1 - at);
        const r = await s.step({ shape: [1, t, D], data: E.data.slice(at * D, (at + t) * D) });
        got.set(r.attention.data, at * D);
        at += t;
      }
      // The last token on the unfused chain: its weights over every position, zero outside the
      // window and the sink tokens (the ring no longer holds those rows).
      const last = await s.step({ shape: [1, 1, D], data: E.data.slice((L - 1) * D) }, { returnWeights: true });
      got.set(last.attention.data, (L - 1) * D);
      expectClose('session vs the float64 run', { shape: [1, L, D], data: got }, ref.attention);
      const lastRow = (h: number) => ref.weights.data.subarray((h * L + L - 1) * L, (h * L + L) * L);
      expectClose('last token weights', last.weights, {
        shape: [1, 2, 1, L],
        data: Float64Array.from([...lastRow(0), ...lastRow(1)]),
      });
      await s.dispose();
    } finally {
      await attn.dispose();
    }
  });
});
