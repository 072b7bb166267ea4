/**
 * Real magnitudes: activations whose projections or scores overflow float32 give the same outcome
 * on every backend (NUMERIC_OVERFLOW naming step, batch, head and row, before any result), and
 * large activations that do not overflow give finite results equal to the float64 reference.
 */
import type { Attention, AttentionConfig, AttentionInputs, AttentionWeights, Tensor } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { compareArrays } from './compare.js';
import { randomTensor, randomWeights, rng } from './random.js';
import { referenceAttention } from './reference.js';

type Make = (config: AttentionConfig, weights: AttentionWeights) => Promise<Attention>;

const CONFIGS: [string, AttentionConfig][] = [
  ['plain', { dModel: 16, numHeads: 4 }],
  ['causal GQA + RoPE', { dModel: 16, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary' }],
  ['no biases, scale 1', { dModel: 16, numHeads: 2, bias: false, scale: 1 }],
];

function scaled(t: Tensor, by: number): Tensor {
  return { shape: t.shape, data: Float32Array.from(t.data, (v) => v * by) };
}

async function expectOverflow(p: Promise<unknown>, message: RegExp): Promise<void> {
  const e = await p.then(
    (r) => r,
    (err: unknown) => err,
  );
  expect(e, 'a result came back for inputs that overflow float32').toBeInstanceOf(Error);
  expect((e as { code?: string }).code, String(e)).toBe('NUMERIC_OVERFLOW');
  expect((e as Error).message).toMatch(message);
}

export function describeMagnitudeConformance(make: Make, options: { timeout: number }): void {
  const { timeout } = options;
  describe('real magnitudes (NUMERIC_OVERFLOW or float64-exact)', () => {
    for (const [name, config] of CONFIGS) {
      for (const magnitude of [1e19, 1e24, 1e30, 1e38]) {
        it(`${name}: activations ~${magnitude} are refused before any result, on every path`, { timeout }, async () => {
          const random = rng(Math.round(Math.log10(magnitude)));
          const weights = randomWeights(config, random);
          const query = scaled(randomTensor([2, 5, 16], random), magnitude);
          const attn = await make(config, weights);
          try {
            // Up to 1e30 the projections fit and their dot products do not; at 1e38 Q itself does not.
            const first =
              magnitude >= 1e38 ? /^q: batch 0, head 0, query row 0: / : /^scores: batch 0, head 0, query row 0: /;
            await expectOverflow(attn.run({ query }), first);
            await expectOverflow(attn.run({ query }, { returnWeights: true }), first);
            await expectOverflow(attn.run({ query }, { capture: 'all' }), first);
          } finally {
            await attn.dispose();
          }
        });
      }
    }
    it('names the batch, head and row that overflows; a session refuses the step', { timeout }, async () => {
      const config: AttentionConfig = { dModel: 16, numHeads: 4, causal: true };
      const random = rng(11);
      const attn = await make(config, randomWeights(config, random));
      try {
        const query = randomTensor([2, 5, 16], random);
        for (let c = 0; c < 16; c++) query.data[(1 * 5 + 3) * 16 + c] = 1e30; // batch 1, row 3
        // Rows 0 … 2 of batch 1 meet a huge key 3 (~1e30 · 1 fits); row 3 meets itself (~1e60).
        await expectOverflow(
          attn.run({ query }),
          /^scores: batch 1, head 0, query row 3: \|Q·Kᵀ · scale\| \(\+ masks\) may reach /,
        );
        // Cross-attention: only the keys are huge.
        const key = scaled(randomTensor([2, 4, 16], random), 1e38);
        await expectOverflow(
          attn.run({ query: randomTensor([2, 5, 16], random), key, value: randomTensor([2, 4, 16], random) }),
          /^k: batch 0, head 0, key row 0: /,
        );
        const session = attn.createSession({ maxLength: 8 });
        await session.step(randomTensor([1, 2, 16], random));
        await expectOverflow(
          session.step(scaled(randomTensor([1, 1, 16], random), 1e30)),
          /^scores: batch 0, head 0, query row 0: /,
        );
        // The refused step left nothing behind: the session goes on from 2 tokens.
        const next = await session.step(randomTensor([1, 1, 16], random));
        expect(next.positions).toEqual([2, 3]);
        await session.dispose();
      } finally {
        await attn.dispose();
      }
    });
    for (const magnitude of [1e8, 1e15]) {
      it(`activations ~${magnitude} (scores ~${magnitude ** 2}) are finite and equal the float64 reference`, {
        timeout,
      }, async () => {
        const config: AttentionConfig = { dModel: 16, numHeads: 4, numKVHeads: 2, causal: true };
        const random = rng(Math.round(Math.log10(magnitude)));
        const weights = randomWeights(config, random);
        const inputs: AttentionInputs = { query: scaled(randomTensor([2, 6, 16], random), magnitude) };
        const ref = referenceAttention(config, weights, inputs);
        const attn = await make(config, weights);
        try {
          const tol = { atol: 1e-5 * magnitude, rtol: 1e-3 };
          for (const run of [await attn.run(inputs, { returnWeights: true }), await attn.run(inputs)]) {
            for (const key of ['attention', 'residual'] as const) {
              const c = compareArrays(`${key} (fused=${run.fused})`, run[key], ref[key], tol);
              if (!c.ok) expect.fail(c.message);
            }
          }
        } finally {
          await attn.dispose();
        }
      });
    }
  });
}
