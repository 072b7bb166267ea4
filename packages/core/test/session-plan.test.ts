import { describe, expect, it } from 'vitest';
import {
  type AttentionConfig,
  type Backend,
  buildGraph,
  type ExecutionPlan,
  type GraphShape,
  planFor,
  resolveConfig,
} from '../src/index.js';
import { StepPlans } from '../src/session-plan.js';

/** planFor reads only whether the backend has the fused kernels. */
const backendWith = (lse: boolean) =>
  ({
    name: 'plan-only',
    fused: lse ? { fusedAttention() {}, fusedAttentionLse() {} } : { fusedAttention() {} },
  }) as unknown as Backend;

/** A plan without the graph nodes' docs (what a moved plan carries). */
const bare = (p: ExecutionPlan) => ({
  ...p,
  steps: p.steps.map(({ name, shape, dims, op, inputs, attrs }) => ({ name, shape, dims, op, inputs, attrs })),
});

/** A device-cache session step of t tokens after `offset` of them. */
function step(B: number, t: number, offset: number, ids = false): GraphShape {
  return {
    batch: B,
    queryLength: t,
    keyLength: offset + t,
    selfAttention: true,
    hasKeyPaddingMask: false,
    hasAttnMask: false,
    ...(ids ? { hasSequenceIds: true } : {}),
    positionOffset: offset,
    cache: { capacity: 64, mode: 'device' },
  };
}

const CASES: [string, AttentionConfig][] = [
  ['plain', { dModel: 16, numHeads: 4, causal: true }],
  ['GQA, biases bo only', { dModel: 32, numHeads: 8, numKVHeads: 2, causal: true, bias: ['bo'] }],
  ['rotary', { dModel: 16, numHeads: 2, causal: true, positionalEncoding: 'rotary' }],
  ['sinusoidal', { dModel: 16, numHeads: 2, causal: true, positionalEncoding: 'sinusoidal' }],
  ['learned', { dModel: 16, numHeads: 2, causal: true, positionalEncoding: 'learned' }],
  ['alibi + window', { dModel: 16, numHeads: 4, causal: true, positionalEncoding: 'alibi', window: 5 }],
  [
    'softcap + sinks + maskMod',
    { dModel: 16, numHeads: 2, causal: true, softcap: 30, sinks: true, maskMod: () => true },
  ],
];

describe('session step plans (StepPlans)', () => {
  for (const [label, c] of CASES) {
    it(`${label}: a moved plan equals the fresh plan at every position`, () => {
      const config = resolveConfig(c);
      const constants = config.sinks ? { sinks: [0.5, -0.25] } : {};
      for (const lse of [false, true]) {
        const backend = backendWith(lse);
        const plans = new StepPlans(config, constants, backend);
        const outputs = lse ? ['attention', 'residual', 'lse'] : ['attention', 'residual'];
        // Prefill, then tokens one by one, a truncation back (3), a 2-token step, tokens again.
        const pieces: [number, number][] = [
          [0, 4],
          [4, 1],
          [5, 1],
          [6, 1],
          [3, 1],
          [4, 2],
          [6, 1],
          [7, 1],
        ];
        for (const [offset, t] of pieces) {
          for (const B of [1, 2]) {
            const shape = step(B, t, offset);
            const got = plans.plan(shape, outputs);
            const fresh = planFor(buildGraph(config, shape, constants), outputs, backend);
            expect(bare(got)).toEqual(bare(fresh));
          }
        }
        // The same structure twice in a row reuses the unmoved steps (the plan was moved, not rebuilt).
        const a = plans.plan(step(2, 1, 8), outputs);
        const b = plans.plan(step(2, 1, 9), outputs);
        expect(b.steps.find((s) => s.name === 'v')).toBe(a.steps.find((s) => s.name === 'v'));
      }
    });
  }

  it('packed steps (sequenceIds [B, Lk]) move with the cache length', () => {
    const config = resolveConfig({ dModel: 16, numHeads: 2, causal: true });
    const backend = backendWith(false);
    const plans = new StepPlans(config, {}, backend);
    for (const offset of [4, 5, 6, 2, 3]) {
      const shape = step(2, 1, offset, true);
      const fresh = planFor(buildGraph(config, shape), ['attention', 'residual'], backend);
      expect(bare(plans.plan(shape, ['attention', 'residual']))).toEqual(bare(fresh));
    }
  });

  it('plans that hold the score chain, a host cache or a wrapped ring are planned afresh every step', () => {
    const config = resolveConfig({ dModel: 16, numHeads: 2, causal: true, window: 4 });
    const backend = backendWith(false);
    const plans = new StepPlans(config, {}, backend);
    const weights = ['attention', 'residual', 'weights'];
    const a = plans.plan(step(1, 1, 5), weights);
    const b = plans.plan(step(1, 1, 6), weights);
    expect(b.steps.find((s) => s.name === 'v')).not.toBe(a.steps.find((s) => s.name === 'v'));
    expect(bare(b)).toEqual(bare(planFor(buildGraph(config, step(1, 1, 6)), weights, backend)));
    const host = (o: number): GraphShape => ({ ...step(1, 1, o), cache: { capacity: 64, mode: 'host' } });
    const h = plans.plan(host(5), ['attention', 'residual']);
    expect(plans.plan(host(6), ['attention', 'residual']).steps[0]).not.toBe(h.steps[0]);
    const ring = (o: number): GraphShape => ({
      ...step(1, 1, o),
      keyLength: 4,
      cache: { capacity: 4, mode: 'device', ring: { writeRow: o % 4, split: (o + 1) % 4, size: 4, keyOffset: o - 3 } },
    });
    const r = plans.plan(ring(9), ['attention', 'residual']);
    const r2 = plans.plan(ring(10), ['attention', 'residual']);
    expect(r2.steps.find((s) => s.name === 'v')).not.toBe(r.steps.find((s) => s.name === 'v'));
    expect(bare(r2)).toEqual(bare(planFor(buildGraph(config, ring(10)), ['attention', 'residual'], backend)));
  });
});
