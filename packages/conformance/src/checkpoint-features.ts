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
}
