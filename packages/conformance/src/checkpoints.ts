import type { Attention, AttentionConfig, AttentionWeights, Tensor } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_CASES, type CheckpointCaseName, checkpointToApi, loadCheckpointCase } from './checkpoint-cases.js';
import { compareArrays } from './compare.js';

type Make = (config: AttentionConfig, weights: AttentionWeights) => Promise<Attention>;

function close(
  name: string,
  actual: Tensor | undefined,
  expected: { shape: number[]; data: number[] },
  tol: {
    atol: number;
    rtol: number;
  },
) {
  expect(actual, `${name} missing`).toBeDefined();
  const c = compareArrays(name, actual as Tensor, expected, tol);
  if (!c.ok) expect.fail(c.message);
}

/**
 * Every shared checkpoint, read the way a user reads it (readSafetensors + fromCheckpoint, the
 * framework's own config and masks), on this backend: the weights path (returnWeights) against
 * the framework's attention and per-head weights, and the fused path against its attention.
 */
export function describeCheckpointConformance(
  make: Make,
  options: { timeout: number; cases?: readonly CheckpointCaseName[] },
): void {
  describe('real checkpoints (readSafetensors + fromCheckpoint)', () => {
    for (const name of options.cases ?? CHECKPOINT_CASES) {
      it(name, { timeout: options.timeout }, async () => {
        const c = await loadCheckpointCase(name);
        const { config, weights, inputs } = await checkpointToApi(c);
        const attn = await make(config, weights);
        try {
          const out = await attn.run(inputs, { returnWeights: true });
          expect(out.fused).toBe(false);
          close(`${name}.attention`, out.attention, c.outputs.attention, c.tolerance);
          close(`${name}.weights`, out.weights, c.outputs.weights, c.tolerance);
          const fused = await attn.run(inputs);
          close(`${name}.attention (fused=${fused.fused})`, fused.attention, c.outputs.attention, c.tolerance);
          // Fully-masked rows (causal + left padding): zero weights, attention = the o bias or 0.
          for (const [b, i] of c.fullyMaskedRows ?? []) {
            const [, H, L, S] = (out.weights as Tensor).shape as [number, number, number, number];
            for (let h = 0; h < H; h++) {
              const row = (out.weights as Tensor).data.subarray(
                ((b * H + h) * L + i) * S,
                ((b * H + h) * L + i + 1) * S,
              );
              expect([...row], `weights[${b}, ${h}, ${i}, :] of a fully-masked row`).toEqual(new Array(S).fill(0));
            }
          }
        } finally {
          await attn.dispose();
        }
      });
    }
  });
}
