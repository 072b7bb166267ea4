import { cpuBackend } from '@qkv/backend-cpu';
import { GOLDEN_CASES, goldenToApi, loadGoldenCase } from '@qkv/conformance';
import { BackendRegistry, createAttention } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { webglBackend } from '../../src/index.js';
import { runtime } from './env.js';

const registry = new BackendRegistry().register(webglBackend).register(cpuBackend);

/** Largest |got − golden| over the case's outputs; the golden data is PyTorch float64. */
function maxErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as number;
    const g = got[i] as number;
    if (g === w) continue;
    m = Math.max(m, Math.abs(g - w));
  }
  return m;
}

describe('precision against the golden files (the README table)', () => {
  it('max |error| per output, unfused and fused, within every case tolerance', async () => {
    const worst = { attention: 0, residual: 0, weights: 0, fusedAttention: 0 };
    for (const name of GOLDEN_CASES) {
      const c = await loadGoldenCase(name);
      const { config, weights, inputs } = goldenToApi(c);
      const attn = await createAttention(config, weights, { backend: 'webgl', registry });
      try {
        const out = await attn.run(inputs, { returnWeights: c.outputs.weights !== undefined });
        const fused = await attn.run(inputs);
        const errs = {
          attention: maxErr(out.attention.data, c.outputs.attention?.data ?? []),
          residual: maxErr(out.residual.data, c.outputs.residual?.data ?? []),
          weights: out.weights ? maxErr(out.weights.data, c.outputs.weights?.data ?? []) : 0,
          fusedAttention: maxErr(fused.attention.data, c.outputs.attention?.data ?? []),
        };
        for (const k of Object.keys(errs) as (keyof typeof errs)[]) worst[k] = Math.max(worst[k], errs[k]);
        expect(Math.max(...Object.values(errs)), name).toBeLessThan(c.tolerance.atol * 10);
      } finally {
        await attn.dispose();
      }
    }
    console.log(
      `[webgl ${runtime()}] max |error| vs golden over ${GOLDEN_CASES.length} cases: ${JSON.stringify(worst)}`,
    );
  });
});
