import type { Attention, AttentionConfig, AttentionWeights, Tensor } from '@qkv/core';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { compareArrays, type Tolerance } from './compare.js';
import { randomCase } from './random.js';
import { referenceAttention } from './reference.js';
import { env, type ReliabilityOptions } from './reliability-options.js';

/**
 * Differential fuzzing against the float64 reference: random configs, shapes, masks and
 * magnitudes, fused and materialised. A failure prints the seed and path that replay it.
 */
export function describeFuzz(
  make: (config: AttentionConfig, weights: AttentionWeights) => Promise<Attention>,
  options: ReliabilityOptions,
  timeout: number,
): void {
  describe('fuzz', () => {
    const seed = Number(env('QKV_FUZZ_SEED') ?? options.seed ?? 7_777);
    const numRuns = Number(env('QKV_FUZZ_RUNS') ?? options.fuzzRuns ?? 60);
    const path = env('QKV_FUZZ_PATH');
    it(`differential fuzz vs the float64 reference: ${numRuns} cases, seed ${seed}`, {
      timeout: timeout * 3,
    }, async () => {
      const arb = fc.record({
        numKVHeads: fc.integer({ min: 1, max: 3 }),
        group: fc.integer({ min: 1, max: 3 }),
        headDim: fc.integer({ min: 1, max: 16 }),
        dModel: fc.integer({ min: 1, max: 32 }),
        batch: fc.integer({ min: 1, max: 3 }),
        queryLength: fc.integer({ min: 1, max: 64 }),
        keyLength: fc.integer({ min: 1, max: 64 }),
        cross: fc.boolean(),
        causal: fc.boolean(),
        bias: fc.boolean(),
        positional: fc.boolean(),
        padding: fc.constantFrom('none', 'random', 'allPaddingRow'),
        attnMask: fc.constantFrom('none', 'additive', 'withInfinity'),
        scale: fc.option(fc.double({ min: 0.01, max: 4, noNaN: true }), { nil: null }),
        magnitude: fc.constantFrom(1, 100, 1e4),
        unbatched: fc.boolean(),
        dataSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      });
      const details: string[] = [];
      await fc.assert(
        fc.asyncProperty(arb, async (p) => {
          // Inputs up to 1e4: the scale shrinks by magnitude² so scores stay O(1) and the test
          // checks large inputs/outputs, not the ill-conditioning of a one-hot softmax.
          const { config, weights: w, inputs } = randomCase({ ...p, normaliseScale: true, infinityShare: 0.3 });
          const m = p.magnitude;
          const tol: Tolerance = { atol: 1e-4 * m, rtol: 2e-3 };
          const attn = await make(config, w);
          try {
            const ref = referenceAttention(config, w, inputs);
            const materialised = await attn.run(inputs, { returnWeights: true });
            const fused = await attn.run(inputs);
            const checks: [string, Tensor, { shape: readonly number[]; data: ArrayLike<number> }, Tolerance][] = [
              ['attention', materialised.attention, ref.attention, tol],
              ['residual', materialised.residual, ref.residual, tol],
              ['weights', materialised.weights as Tensor, ref.weights, { atol: 1e-4, rtol: 2e-3 }],
              ['attention (fused)', fused.attention, ref.attention, tol],
            ];
            for (const [name, got, want, t] of checks) {
              const c = compareArrays(name, got, want, t);
              if (!c.ok) {
                details.push(JSON.stringify(p));
                throw new Error(c.message);
              }
            }
          } finally {
            await attn.dispose();
          }
        }),
        {
          seed,
          numRuns,
          ...(path ? { path } : {}),
          reporter: (out) => {
            if (out.failed) {
              throw new Error(
                `${fc.defaultReportMessage(out)}\nreplay this case: QKV_FUZZ_SEED=${out.seed} QKV_FUZZ_PATH=${out.counterexamplePath} QKV_FUZZ_RUNS=${numRuns} pnpm --filter <this package> test -t fuzz\nlast failing case: ${details.at(-1) ?? '?'}`,
              );
            }
          },
        },
      );
    });
  });
}
