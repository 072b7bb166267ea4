/**
 * The core features real checkpoints need, on every backend, against the float64 reference:
 * separate key/value widths (PyTorch's kdim/vdim), any subset of projection biases (Qwen2: q/k/v
 * without o), and explicit positionIds (Hugging Face under left padding).
 */
import type { Attention, AttentionConfig, AttentionInputs, AttentionWeights, Tensor } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { compareArrays, type Tolerance } from './compare.js';
import { randomTensor, randomWeights, rng } from './random.js';
import { referenceAttention } from './reference.js';

type Make = (config: AttentionConfig, weights: AttentionWeights) => Promise<Attention>;

const TOL: Tolerance = { atol: 1e-4, rtol: 1e-3 };

function close(
  name: string,
  actual: Tensor | undefined,
  expected: { shape: readonly number[]; data: ArrayLike<number> },
) {
  expect(actual, `${name} missing`).toBeDefined();
  const c = compareArrays(name, actual as Tensor, expected, TOL);
  if (!c.ok) expect.fail(c.message);
}

/** Weights path, fused path and every captured step against the float64 reference. */
async function agrees(make: Make, config: AttentionConfig, weights: AttentionWeights, inputs: AttentionInputs) {
  const attn = await make(config, weights);
  try {
    const ref = referenceAttention(config, weights, inputs);
    const out = await attn.run(inputs, { returnWeights: true, capture: ['q', 'k', 'v', 'heads'] });
    for (const key of ['attention', 'residual', 'weights'] as const) close(key, out[key], ref[key]);
    for (const step of ['q', 'k', 'v', 'heads'] as const) close(step, out.captured[step], ref[step]);
    const fused = await attn.run(inputs);
    close(`attention (fused=${fused.fused})`, fused.attention, ref.attention);
  } finally {
    await attn.dispose();
  }
}

export function describeCheckpointFeatures(make: Make, options: { timeout: number }): void {
  const { timeout } = options;
  describe('keyDim / valueDim (cross-attention memory of another width)', () => {
    for (const [keyDim, valueDim] of [
      [12, 20],
      [5, 16],
      [16, 3],
    ] as const) {
      it(`dModel 16, keyDim ${keyDim}, valueDim ${valueDim}, GQA, padding`, { timeout }, async () => {
        const config: AttentionConfig = { dModel: 16, numHeads: 4, numKVHeads: 2, keyDim, valueDim };
        const random = rng(keyDim * 100 + valueDim);
        const weights = randomWeights(config, random);
        const [B, Lq, Lk] = [2, 5, 7];
        const inputs: AttentionInputs = {
          query: randomTensor([B, Lq, 16], random),
          key: randomTensor([B, Lk, keyDim], random),
          value: randomTensor([B, Lk, valueDim], random),
          keyPaddingMask: {
            shape: [B, Lk],
            data: Float32Array.from({ length: B * Lk }, (_, i) => (i % Lk >= 5 && i >= Lk ? 1 : 0)),
          },
        };
        await agrees(make, config, weights, inputs);
      });
    }
    it('refuses a key of dModel width when keyDim differs, and self-attention without key/value', {
      timeout,
    }, async () => {
      const config: AttentionConfig = { dModel: 8, numHeads: 2, keyDim: 6 };
      const random = rng(3);
      const attn = await make(config, randomWeights(config, random));
      try {
        const query = randomTensor([1, 3, 8], random);
        await expect(attn.run({ query, key: query, value: query })).rejects.toMatchObject({
          code: 'INVALID_SHAPE',
          message: 'key: expected [1, Lk, 6] (batch × length × keyDim), got [1, 3, 8]',
        });
        await expect(attn.run({ query })).rejects.toMatchObject({
          code: 'INVALID_DATA',
          message: /^key: missing; config\.keyDim 6/,
        });
      } finally {
        await attn.dispose();
      }
    });
  });

  describe('partial biases (absent = zero)', () => {
    const subsets = [['bq', 'bk', 'bv'], ['bo'], ['bk'], ['bq', 'bv', 'bo']] as const;
    for (const bias of subsets) {
      for (const cross of [false, true]) {
        it(`bias [${bias.join(', ')}]${cross ? ', cross-attention' : ', causal self-attention'}`, {
          timeout,
        }, async () => {
          const config: AttentionConfig = { dModel: 12, numHeads: 3, bias, causal: !cross };
          const random = rng(bias.length * 7 + (cross ? 1 : 0));
          const weights = randomWeights(config, random);
          for (const b of ['bq', 'bk', 'bv', 'bo'] as const)
            expect(weights[b] !== undefined).toBe(bias.includes(b as never));
          const inputs: AttentionInputs = { query: randomTensor([2, 6, 12], random) };
          if (cross) {
            inputs.key = randomTensor([2, 4, 12], random);
            inputs.value = randomTensor([2, 4, 12], random);
          }
          await agrees(make, config, weights, inputs);
        });
      }
    }
  });

  describe('positionIds (RoPE, learned and sinusoidal PE at explicit positions)', () => {
    const cases: [string, AttentionConfig][] = [
      [
        'RoPE, GQA, causal',
        { dModel: 16, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary', rotaryBase: 500 },
      ],
      ['RoPE interleaved', { dModel: 12, numHeads: 2, positionalEncoding: 'rotary', rotaryPairing: 'interleaved' }],
      ['learned', { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'learned' }],
      ['sinusoidal', { dModel: 8, numHeads: 2, positionalEncoding: 'sinusoidal' }],
    ];
    for (const [name, config] of cases) {
      it(`${name}: vs the float64 reference`, { timeout }, async () => {
        const random = rng(name.length);
        const weights = randomWeights(config, random);
        if (config.positionalEncoding === 'learned')
          weights.positionalEmbedding = randomTensor([40, config.dModel], random);
        const inputs: AttentionInputs = {
          query: randomTensor([2, 6, config.dModel], random),
          // Batch 0 left-padded as Hugging Face numbers it (padding at 1), batch 1 far along.
          positionIds: { shape: [2, 6], data: Int32Array.from([1, 1, 0, 1, 2, 3, 30, 31, 32, 33, 34, 35]) },
        };
        await agrees(make, config, weights, inputs);
      });
    }
    // Learned PE, because RoPE scores depend only on relative positions and would not notice a shift.
    it('left padding with positionIds reproduces the unpadded run for the real tokens (learned PE)', {
      timeout,
    }, async () => {
      const config: AttentionConfig = { dModel: 16, numHeads: 2, causal: true, positionalEncoding: 'learned' };
      const random = rng(99);
      const weights = { ...randomWeights(config, random), positionalEmbedding: randomTensor([8, 16], random) };
      const tokens = randomTensor([1, 5, 16], random);
      const padded = new Float32Array(7 * 16);
      padded.set(tokens.data, 2 * 16);
      const attn = await make(config, weights);
      try {
        const alone = await attn.run({ query: tokens });
        const query = { shape: [1, 7, 16], data: padded };
        const keyPaddingMask = { shape: [1, 7], data: Uint8Array.from([1, 1, 0, 0, 0, 0, 0]) };
        const positionIds = { shape: [1, 7], data: Int32Array.from([1, 1, 0, 1, 2, 3, 4]) };
        const out = await attn.run({ query, keyPaddingMask, positionIds });
        const real = (t: Tensor) => ({ shape: [1, 5, 16], data: t.data.subarray(2 * 16) });
        close('attention of the real tokens', real(out.attention), alone.attention);
        close('residual of the real tokens', real(out.residual), alone.residual);
        // Without positionIds the real tokens sit at positions 2 … 6 and their outputs differ.
        const shifted = await attn.run({ query, keyPaddingMask });
        expect(compareArrays('shifted', real(shifted.residual), alone.residual, TOL).ok).toBe(false);
      } finally {
        await attn.dispose();
      }
    });
    it('refuses positionIds nothing reads, of the wrong shape, or not integers', { timeout }, async () => {
      const rope: AttentionConfig = { dModel: 8, numHeads: 2, positionalEncoding: 'rotary' };
      const random = rng(5);
      const query = randomTensor([1, 3, 8], random);
      const attn = await make(rope, randomWeights(rope, random));
      const plain = await make({ dModel: 8, numHeads: 2 }, randomWeights({ dModel: 8, numHeads: 2 }, random));
      try {
        await expect(attn.run({ query, positionIds: { shape: [1, 4], data: [0, 1, 2, 3] } })).rejects.toMatchObject({
          code: 'INVALID_SHAPE',
          message: 'positionIds: expected [1, 3] (batch × query length), got [1, 4]',
        });
        await expect(attn.run({ query, positionIds: { shape: [1, 3], data: [0, 1.5, 2] } })).rejects.toMatchObject({
          code: 'INVALID_DATA',
          message: /^positionIds\.data\[1\]: expected an integer position/,
        });
        await expect(plain.run({ query, positionIds: { shape: [1, 3], data: [0, 1, 2] } })).rejects.toMatchObject({
          code: 'INVALID_OPTION',
          message: /^positionIds: only used by positionalEncoding 'rotary', 'learned' or 'sinusoidal'/,
        });
      } finally {
        await attn.dispose();
        await plain.dispose();
      }
    });
  });
}
