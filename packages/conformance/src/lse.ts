import {
  type Attention,
  type AttentionConfig,
  type AttentionInputs,
  type AttentionResult,
  type AttentionWeights,
  mergeAttentionShards,
  type Tensor,
} from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { close } from './features.js';
import { GOLDEN_CASES, goldenToApi, loadGoldenCase } from './golden.js';
import { randomTensor, randomWeights, rng } from './random.js';
import { referenceAttention } from './reference.js';

type Make = (config: AttentionConfig, weights: AttentionWeights) => Promise<Attention>;

/** Keys [from, to) of a [B, L, d] tensor (or mask [B, L]) along axis 1. */
function keyRange(t: Tensor, from: number, to: number): Tensor {
  const [B, L] = t.shape as [number, number];
  const w = t.shape.length === 3 ? (t.shape[2] as number) : 1;
  const data = new Float32Array(B * (to - from) * w);
  for (let b = 0; b < B; b++) data.set(t.data.subarray((b * L + from) * w, (b * L + to) * w), b * (to - from) * w);
  return { shape: t.shape.length === 3 ? [B, to - from, w] : [B, to - from], data };
}

/** The run with lse unfused (weights asked for) and fused (where the backend can), labelled. */
export async function runLseBothWays(
  attn: Attention,
  inputs: AttentionInputs,
): Promise<readonly [readonly [string, AttentionResult], readonly [string, AttentionResult]]> {
  const unfused = await attn.run(inputs, { returnLse: true, returnWeights: 'perHead' });
  const fused = await attn.run(inputs, { returnLse: true });
  expect(unfused.fused).toBe(false);
  // Asking for lse never costs the fused path: every backend's fused kernel also returns it.
  expect(fused.fused, 'returnLse keeps the path a plain run takes').toBe((await attn.run(inputs)).fused);
  return [
    ['unfused', unfused],
    [`fused=${fused.fused}`, fused],
  ];
}

/** softmax rebuilt from lse: exp(masked − lse) per row of masked [B, H, Lq, Lk] (0 where −∞). */
export function weightsFromLse(masked: { shape: readonly number[]; data: ArrayLike<number> }, lse: Tensor) {
  const Lk = masked.shape[masked.shape.length - 1] as number;
  const data = Float64Array.from(masked.data, (s, idx) =>
    s === Number.NEGATIVE_INFINITY ? 0 : Math.exp(s - (lse.data[Math.floor(idx / Lk)] as number)),
  );
  return { shape: masked.shape, data };
}

/**
 * returnLse: lse [B, H, Lq] = log Σ_j exp(masked score) over the visible keys, −∞ for a query that
 * sees none; checked fused and unfused against the float64 reference and PyTorch's weights
 * (softmax = exp(s − lse)), through sessions, and as the primitive that merges key shards.
 */
export function describeLseConformance(make: Make, options: { timeout: number }): void {
  const { timeout } = options;
  describe('returnLse', () => {
    describe('golden cases with weights: exp(masked − lse) = PyTorch weights, lse = float64 log Σ exp', () => {
      for (const name of GOLDEN_CASES) {
        it(name, { timeout }, async () => {
          const c = await loadGoldenCase(name);
          if (c.outputs.weights === undefined) return; // no weights to tie lse to; the float64 block covers it
          const { config, weights, inputs } = goldenToApi(c);
          const ref = referenceAttention(config, weights, inputs);
          const attn = await make(config, weights);
          try {
            const runs = await runLseBothWays(attn, inputs);
            for (const [label, out] of runs) {
              close(`${name}.lse (${label})`, out.lse, ref.lse, c.tolerance);
              // softmax from the backend's lse and the float64 masked scores reproduces PyTorch.
              close(
                `${name}: exp(masked − lse) (${label}) vs golden weights`,
                weightsFromLse(ref.masked, out.lse as Tensor),
                c.outputs.weights as { shape: number[]; data: number[] },
                c.tolerance,
              );
            }
            const fused = runs[1][1];
            if (c.fullyMaskedRows) {
              const [, H, Lq] = (fused.lse as Tensor).shape as [number, number, number];
              for (const [b, i] of c.fullyMaskedRows)
                for (let h = 0; h < H; h++)
                  expect((fused.lse as Tensor).data[(b * H + h) * Lq + i], `lse[${b}, ${h}, ${i}]`).toBe(
                    Number.NEGATIVE_INFINITY,
                  );
            }
          } finally {
            await attn.dispose();
          }
        });
      }
    });

    it('two disjoint key shards merge (mergeAttentionShards) into the run over all keys', { timeout }, async () => {
      const config: AttentionConfig = { dModel: 16, numHeads: 4, numKVHeads: 2, selfAttention: false };
      const random = rng(1707);
      const weights = randomWeights(config, random);
      const [B, Lq, Lk, split] = [2, 5, 11, 4];
      const query = randomTensor([B, Lq, 16], random);
      const key = randomTensor([B, Lk, 16], random);
      const value = randomTensor([B, Lk, 16], random);
      // Batch 1's first shard is all padding: that shard's lse is −∞ and it must weigh nothing.
      const pad = new Float32Array(B * Lk);
      for (let j = 0; j < split; j++) pad[Lk + j] = 1;
      const keyPaddingMask: Tensor = { shape: [B, Lk], data: pad };
      const attn = await make(config, weights);
      try {
        const opts = { returnLse: true, capture: ['heads'] } as const;
        const all = await attn.run({ query, key, value, keyPaddingMask }, opts);
        const part = async (from: number, to: number) => {
          const r = await attn.run(
            {
              query,
              key: keyRange(key, from, to),
              value: keyRange(value, from, to),
              keyPaddingMask: keyRange(keyPaddingMask, from, to),
            },
            opts,
          );
          return { heads: r.captured.heads as Tensor, lse: r.lse as Tensor };
        };
        const first = await part(0, split);
        expect(first.lse.data[4 * Lq], 'lse of a shard that is all padding').toBe(Number.NEGATIVE_INFINITY);
        const merged = mergeAttentionShards(first, await part(split, Lk));
        close('merged heads', merged.heads, all.captured.heads as Tensor);
        close('merged lse', merged.lse, all.lse as Tensor);
        const ref = referenceAttention(config, weights, { query, key, value, keyPaddingMask });
        close('merged lse vs float64', merged.lse, ref.lse);
      } finally {
        await attn.dispose();
      }
    });

    it('a session token by token gives the lse of one causal run', { timeout }, async () => {
      const config: AttentionConfig = { dModel: 16, numHeads: 4, numKVHeads: 2, causal: true };
      const random = rng(1708);
      const weights = randomWeights(config, random);
      const L = 40;
      const query = randomTensor([1, L, 16], random);
      const attn = await make(config, weights);
      try {
        const whole = await attn.run({ query }, { returnLse: true });
        const session = attn.createSession({ maxLength: L });
        const lse = new Float32Array(4 * L);
        for (let t = 0; t < L; t++) {
          const step = await session.step(
            { shape: [1, 1, 16], data: query.data.subarray(t * 16, (t + 1) * 16) },
            { returnLse: true },
          );
          for (let h = 0; h < 4; h++) lse[h * L + t] = (step.lse as Tensor).data[h] as number;
        }
        await session.dispose();
        close('session lse', { shape: [1, 4, L], data: lse }, whole.lse as Tensor);
      } finally {
        await attn.dispose();
      }
    });
  });
}
