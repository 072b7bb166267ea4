import type { AttentionConfig, AttentionInputs, BackendFactory, Tensor } from '@qkv/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareArrays } from './compare.js';
import { checkAgainstReference, close, type FeatureSuiteOptions, type Make, setup, withSupport } from './features.js';
import { randomTensor, rng } from './random.js';
import { referenceAttention } from './reference.js';
import { ids, packed, rowsOf, sinkWeights, tokens } from './serving-helpers.js';
import { describeServingSessions } from './serving-sessions.js';

/**
 * The serving features (issue #18) on one backend, against the float64 reference: softcap, sink
 * logits, sink tokens with a window, packed sequences (`sequenceIds`), and the session controls
 * (bounded window caches, fork, truncate). Config features run where `supports()` accepts them
 * and are otherwise checked to be refused with CAPABILITY; `sequenceIds` runs where the backend
 * lists it in `Backend.inputs`, and is otherwise checked to be refused with CAPABILITY at run().
 */

export function describeServingConformance(factory: BackendFactory, make: Make, options: FeatureSuiteOptions): void {
  const { timeout } = options;
  const runs = (name: string, config: AttentionConfig, seed: number, L = 7, inputs?: (i: AttentionInputs) => void) =>
    it(name, { timeout }, async () => {
      const extra = config.sinks ? { sinks: randomTensor([config.numHeads], rng(seed + 1000), 2) } : {};
      const { weights, inputs: inp } = setup(config, seed, 2, L, extra);
      inputs?.(inp);
      await withSupport(factory, make, config, weights, (attn) => checkAgainstReference(attn, config, weights, inp));
    });

  describe('serving features', () => {
    describe('softcap', () => {
      runs('c = 2 with large scores, causal', { dModel: 8, numHeads: 2, causal: true, scale: 4, softcap: 2 }, 71);
      runs(
        'before ALiBi and the window, grouped-query',
        { dModel: 12, numHeads: 4, numKVHeads: 2, positionalEncoding: 'alibi', window: 3, scale: 3, softcap: 1.5 },
        72,
      );
    });

    describe('sink logits (sinks: true)', () => {
      runs(
        'one logit per head joins the denominator, causal',
        { dModel: 12, numHeads: 3, causal: true, sinks: true },
        81,
      );
      it('rows sum to < 1, and a row that sees no key stays zero', { timeout }, async () => {
        const config = { dModel: 8, numHeads: 2, causal: true, sinks: true, softcap: 3 };
        const { weights, inputs } = setup(config, 82, 1, 5, sinkWeights(config, 820));
        inputs.keyPaddingMask = { shape: [1, 5], data: Float32Array.from([1, 0, 0, 1, 0]) };
        await withSupport(factory, make, config, weights, async (attn) => {
          await checkAgainstReference(attn, config, weights, inputs);
          const w = (await attn.run(inputs, { returnWeights: true })).weights as Tensor;
          for (let r = 0; r < 2 * 5; r++) {
            const sum = w.data.subarray(r * 5, r * 5 + 5).reduce((a, b) => a + b, 0);
            // Query 0 sees only padding: zeros; every other row loses the sink's share.
            if (r % 5 === 0) expect(sum).toBe(0);
            else expect(sum).toBeLessThan(1);
          }
        });
      });
    });

    describe('sinkTokens with a window (StreamingLLM)', () => {
      runs('causal, s = 2, w = 3', { dModel: 8, numHeads: 2, causal: true, window: 3, sinkTokens: 2 }, 91, 11);
      runs(
        'bidirectional, s = 1, w = 2, with sinks',
        { dModel: 8, numHeads: 2, window: 2, sinkTokens: 1, sinks: true },
        92,
        9,
      );
    });

    describe('packed sequences (sequenceIds)', () => {
      const packedCase = (
        name: string,
        config: AttentionConfig,
        seed: number,
        rows: number[][],
        padding?: number[][],
      ) =>
        it(name, { timeout }, async () => {
          const L = (rows[0] as number[]).length;
          const { weights, inputs } = setup(config, seed, rows.length, L, sinkWeights(config, seed + 1));
          inputs.sequenceIds = ids(rows.length, L, rows);
          if (padding) inputs.keyPaddingMask = ids(rows.length, L, padding);
          await withSupport(factory, make, config, weights, (attn) =>
            packed(attn, () => checkAgainstReference(attn, config, weights, inputs)),
          );
        });
      packedCase('contiguous runs, causal', { dModel: 8, numHeads: 2, causal: true }, 101, [
        [0, 0, 0, 1, 1, 2, 2, 2, 2],
        [7, 7, 7, 7, 7, 7, 7, 7, 7],
      ]);
      packedCase(
        'interleaved ids, bidirectional, padding, softcap and sinks',
        { dModel: 8, numHeads: 2, numKVHeads: 1, softcap: 2, sinks: true },
        102,
        [
          [0, 1, 0, 1, 2, 2, 0, 1],
          [3, 3, -4, -4, 3, 3, 9, 9],
        ],
        [
          [0, 0, 0, 0, 1, 0, 0, 0],
          [0, 1, 0, 0, 0, 0, 0, 1],
        ],
      );
      packedCase(
        'with rotary, ALiBi-free window and sink tokens',
        { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'rotary', window: 3, sinkTokens: 1 },
        103,
        [[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]],
      );
      it('each packed sequence equals a run of that sequence alone (fused path)', { timeout }, async () => {
        const config = { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'alibi' as const };
        const lengths = [3, 70, 1, 40];
        const L = lengths.reduce((a, b) => a + b, 0);
        const { weights, inputs } = setup(config, 104, 1, L);
        const row = lengths.flatMap((n, s) => new Array(n).fill(s) as number[]);
        await withSupport(factory, make, config, weights, (attn) =>
          packed(attn, async () => {
            const out = await attn.run({ ...inputs, sequenceIds: ids(1, L, [row]) });
            let at = 0;
            for (const n of lengths) {
              const alone = await attn.run({ query: tokens(inputs.query as Tensor, at, n) });
              close(`sequence at ${at} (${n} tokens)`, rowsOf(out.attention, at, n), alone.attention);
              at += n;
            }
          }),
        );
      });
    });

    describeServingSessions(factory, make, options);

    describe('fuzz: serving features vs the float64 reference', () => {
      const numRuns = Number((typeof process !== 'undefined' && process.env?.QKV_FUZZ_RUNS) || 25);
      it(`${numRuns} seeded cases (softcap, sinks, sinkTokens + window, sequenceIds)`, {
        timeout: timeout * 8,
      }, async () => {
        const arb = fc.record({
          numHeads: fc.constantFrom(1, 2, 4),
          causal: fc.boolean(),
          softcap: fc.option(fc.double({ min: 0.25, max: 8, noNaN: true }), { nil: null }),
          sinks: fc.boolean(),
          window: fc.option(fc.integer({ min: 1, max: 6 }), { nil: null }),
          sinkTokens: fc.integer({ min: 0, max: 3 }),
          packing: fc.constantFrom('none', 'contiguous', 'random'),
          L: fc.integer({ min: 1, max: 14 }),
          B: fc.integer({ min: 1, max: 2 }),
          dataSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        });
        await fc.assert(
          fc.asyncProperty(arb, async (p) => {
            const random = rng(p.dataSeed);
            const config: AttentionConfig = {
              dModel: 8,
              numHeads: p.numHeads,
              causal: p.causal,
              scale: 2,
              softcap: p.softcap,
              sinks: p.sinks,
              window: p.window,
              sinkTokens: p.window !== null && p.sinkTokens > 0 ? p.sinkTokens : null,
            };
            const extra = p.sinks ? { sinks: randomTensor([p.numHeads], random, 3) } : {};
            const { weights, inputs } = setup(config, p.dataSeed, p.B, p.L, extra);
            if (p.packing !== 'none') {
              const row = (b: number) =>
                Array.from({ length: p.L }, (_, j) =>
                  p.packing === 'contiguous' ? Math.floor((j * (b + 2)) / p.L) : Math.floor(random() * 3),
                );
              inputs.sequenceIds = ids(
                p.B,
                p.L,
                Array.from({ length: p.B }, (_, b) => row(b)),
              );
            }
            await withSupport(factory, make, config, weights, (attn) =>
              packed(attn, async () => {
                const ref = referenceAttention(config, weights, inputs);
                const got = await attn.run(inputs, { returnWeights: true });
                const fused = await attn.run(inputs);
                const why = `case ${JSON.stringify(p)}`;
                for (const [name, t, r] of [
                  ['attention', got.attention, ref.attention],
                  ['weights', got.weights as Tensor, ref.weights],
                  ['attention (fused)', fused.attention, ref.attention],
                ] as const) {
                  const c = compareArrays(name, t, r, { atol: 1e-4, rtol: 1e-3 });
                  if (!c.ok) throw new Error(`${c.message}\n${why}`);
                }
              }),
            );
          }),
          { seed: 18, numRuns },
        );
      });
    });
  });
}
