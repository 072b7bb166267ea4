import {
  type Attention,
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  type BackendFactory,
  mergeAttentionShards,
  type Tensor,
} from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { close, type Make, setup, withSupport } from './features.js';
import { runLseBothWays, weightsFromLse } from './lse.js';
import { randomTensor, randomWeights, rng } from './random.js';
import { referenceAttention } from './reference.js';
import { ids, packed, tokens } from './serving-helpers.js';

/**
 * returnLse with the serving features (issue #18): softcap, sink logits, sink tokens with a
 * window, packed sequences, window sessions. lse is the log of the whole softmax denominator
 * over the scores the query sees (its own sequence, its window and sink tokens, after the
 * softcap), with exp(sink_h) in it when `sinks` is on, so weights = exp(masked − lse) still
 * holds; a query that sees no key has lse −∞, or sink_h with sinks. Shards merge with the sink
 * counted once: exactly one shard is computed with the sinks (docs/FEATURES.md › Log-sum-exp).
 */

/** lse fused and unfused vs float64, and exp(masked − lse) = the reference weights. */
async function checkLse(attn: Attention, config: AttentionConfig, weights: AttentionWeights, inputs: AttentionInputs) {
  const ref = referenceAttention(config, weights, inputs);
  const runs = await runLseBothWays(attn, inputs);
  for (const [label, out] of runs) {
    close(`lse (${label})`, out.lse, ref.lse);
    close(`attention (${label})`, out.attention, ref.attention);
    close(
      `exp(masked − lse) (${label}) vs float64 weights`,
      weightsFromLse(ref.masked, out.lse as Tensor),
      ref.weights,
    );
  }
  const fused = runs[1][1];
  return { ref, fused };
}

const sinkWeights = (config: AttentionConfig, seed: number): Partial<AttentionWeights> =>
  config.sinks ? { sinks: randomTensor([config.numHeads], rng(seed), 2) } : {};

export function describeLseServingConformance(factory: BackendFactory, make: Make, options: { timeout: number }): void {
  const { timeout } = options;
  const lseCase = (name: string, config: AttentionConfig, seed: number, L = 7) =>
    it(name, { timeout }, async () => {
      const { weights, inputs } = setup(config, seed, 2, L, sinkWeights(config, seed + 1));
      await withSupport(factory, make, config, weights, async (attn) => {
        await checkLse(attn, config, weights, inputs);
      });
    });

  describe('returnLse with the serving features', () => {
    lseCase(
      'sinks: exp(sink_h) is in the denominator, grouped-query, causal',
      {
        dModel: 12,
        numHeads: 4,
        numKVHeads: 2,
        causal: true,
        sinks: true,
      },
      1711,
    );
    lseCase(
      'softcap (lse of the capped scores), causal',
      { dModel: 8, numHeads: 2, causal: true, scale: 4, softcap: 2 },
      1712,
    );
    lseCase(
      'sinkTokens with a window: the window and the sink tokens only',
      {
        dModel: 8,
        numHeads: 2,
        causal: true,
        window: 3,
        sinkTokens: 2,
      },
      1713,
      11,
    );

    it('sinks: a query that sees no key has lse = sink_h (the sink is the whole denominator)', {
      timeout,
    }, async () => {
      const config: AttentionConfig = { dModel: 8, numHeads: 2, sinks: true };
      const { weights, inputs } = setup(config, 1714, 2, 5, sinkWeights(config, 1715));
      // Batch 1 is all padding: none of its queries sees a key.
      inputs.keyPaddingMask = { shape: [2, 5], data: Float32Array.from([0, 1, 0, 0, 0, 1, 1, 1, 1, 1]) };
      await withSupport(factory, make, config, weights, async (attn) => {
        const { fused } = await checkLse(attn, config, weights, inputs);
        const sinks = (weights.sinks as Tensor).data;
        for (let h = 0; h < 2; h++)
          for (let i = 0; i < 5; i++)
            expect((fused.lse as Tensor).data[(2 + h) * 5 + i], `lse[1, ${h}, ${i}]`).toBeCloseTo(
              sinks[h] as number,
              5,
            );
      });
    });

    describe("sequenceIds: lse over the query's own sequence", () => {
      const packedLse = (name: string, config: AttentionConfig, seed: number, rows: number[][]) =>
        it(name, { timeout }, async () => {
          const L = (rows[0] as number[]).length;
          const { weights, inputs } = setup(config, seed, rows.length, L, sinkWeights(config, seed + 1));
          inputs.sequenceIds = ids(rows.length, L, rows);
          await withSupport(factory, make, config, weights, (attn) =>
            packed(attn, async () => {
              await checkLse(attn, config, weights, inputs);
            }),
          );
        });
      packedLse(
        'contiguous runs (one problem per sequence), causal, grouped-query',
        {
          dModel: 12,
          numHeads: 4,
          numKVHeads: 2,
          causal: true,
        },
        1716,
        [
          [0, 0, 0, 1, 1, 2, 2, 2, 2],
          [7, 7, 7, 7, 7, 7, 7, 7, 7],
        ],
      );
      packedLse(
        'interleaved ids, with sinks and softcap',
        {
          dModel: 8,
          numHeads: 2,
          softcap: 2,
          sinks: true,
        },
        1717,
        [
          [0, 1, 0, 1, 2, 2, 0, 1],
          [3, 3, -4, -4, 3, 3, 9, 9],
        ],
      );
    });

    it('a window session with sink tokens and sinks, in steps longer than the window, gives the lse of one causal run', {
      timeout: timeout * 4,
    }, async () => {
      const config: AttentionConfig = { dModel: 8, numHeads: 2, causal: true, window: 3, sinkTokens: 1, sinks: true };
      const L = 20;
      const { weights, inputs } = setup(config, 1718, 1, L, sinkWeights(config, 1719));
      await withSupport(factory, make, config, weights, async (attn) => {
        const E = inputs.query as Tensor;
        const whole = await attn.run({ query: E }, { returnLse: true });
        close('run lse vs float64', whole.lse, referenceAttention(config, weights, { query: E }).lse);
        const session = attn.createSession({ maxLength: L });
        const lse = new Float32Array(2 * L);
        const sizes = [1, 5, 2, 4];
        for (let at = 0, s = 0; at < L; s++) {
          const t = Math.min(sizes[s % sizes.length] as number, L - at);
          const step = await session.step(tokens(E, at, t), { returnLse: true });
          expect((step.lse as Tensor).shape).toEqual([1, 2, t]);
          for (let h = 0; h < 2; h++) lse.set((step.lse as Tensor).data.subarray(h * t, (h + 1) * t), h * L + at);
          at += t;
        }
        await session.dispose();
        close('session lse (compacted cache, steps in pieces)', { shape: [1, 2, L], data: lse }, whole.lse as Tensor);
      });
    });

    it('shards merge with the sink counted once: one shard carries the sinks', { timeout }, async () => {
      const plain: AttentionConfig = { dModel: 16, numHeads: 4, numKVHeads: 2, selfAttention: false };
      const withSinks: AttentionConfig = { ...plain, sinks: true };
      const random = rng(1720);
      const base = randomWeights(plain, random);
      const sunk = { ...base, sinks: randomTensor([4], random, 2) };
      const [B, Lq, Lk, split] = [2, 5, 11, 4];
      const query = randomTensor([B, Lq, 16], random);
      const key = randomTensor([B, Lk, 16], random);
      const value = randomTensor([B, Lk, 16], random);
      const keyRange = (t: Tensor, from: number, to: number): Tensor => {
        const data = new Float32Array(B * (to - from) * 16);
        for (let b = 0; b < B; b++)
          data.set(t.data.subarray((b * Lk + from) * 16, (b * Lk + to) * 16), b * (to - from) * 16);
        return { shape: [B, to - from, 16], data };
      };
      await withSupport(factory, make, withSinks, sunk, async (attnSinks) => {
        const attnPlain = await make(plain, base);
        try {
          const opts = { returnLse: true, capture: ['heads'] } as const;
          const part = async (attn: Attention, from: number, to: number) => {
            const r = await attn.run({ query, key: keyRange(key, from, to), value: keyRange(value, from, to) }, opts);
            return { heads: r.captured.heads as Tensor, lse: r.lse as Tensor };
          };
          const all = await attnSinks.run({ query, key, value }, opts);
          const merged = mergeAttentionShards(await part(attnSinks, 0, split), await part(attnPlain, split, Lk));
          close('merged heads (sinks on shard 1 only)', merged.heads, all.captured.heads as Tensor);
          close('merged lse', merged.lse, all.lse as Tensor);
          close('merged lse vs float64', merged.lse, referenceAttention(withSinks, sunk, { query, key, value }).lse);
        } finally {
          await attnPlain.dispose();
        }
      });
    });
  });
}
