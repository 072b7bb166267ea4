import { describe, expect, it } from 'vitest';
import { buildGraph, formatGraph, resolveConfig, STEP_NAMES } from '../src/index.js';

const shape = {
  batch: 2,
  queryLength: 5,
  keyLength: 5,
  selfAttention: true,
  hasKeyPaddingMask: false,
  hasAttnMask: false,
};

describe('buildGraph', () => {
  it('has one node per step of the seed, in order, with their shapes', () => {
    const g = buildGraph(
      resolveConfig({ dModel: 16, numHeads: 4, numKVHeads: 2, positionalEncoding: 'sinusoidal' }),
      shape,
    );
    const steps = g.nodes.filter((n) => (STEP_NAMES as readonly string[]).includes(n.name));
    expect(steps.map((n) => n.name)).toEqual([...STEP_NAMES]);
    const by = Object.fromEntries(g.nodes.map((n) => [n.name, n]));
    expect(by.q?.shape).toEqual([2, 5, 16]);
    expect(by.k?.shape).toEqual([2, 5, 8]);
    expect(by.scores?.shape).toEqual([2, 4, 5, 5]);
    expect(by.heads?.shape).toEqual([2, 5, 16]);
    expect(by.residual?.inputs).toEqual(['x', 'attention']);
    expect(by.x?.op).toBe('add');
  });
  it('is plain data that survives JSON', () => {
    const g = buildGraph(resolveConfig({ dModel: 8, numHeads: 2, causal: true }), {
      ...shape,
      hasKeyPaddingMask: true,
    });
    expect(JSON.parse(JSON.stringify(g))).toEqual(g);
  });
  it('wires cross-attention K/V to the key and value inputs, and drops biases when bias is false', () => {
    const g = buildGraph(resolveConfig({ dModel: 8, numHeads: 2, bias: false }), {
      ...shape,
      keyLength: 3,
      selfAttention: false,
    });
    const by = Object.fromEntries(g.nodes.map((n) => [n.name, n]));
    expect(by.k?.inputs).toEqual(['key', 'wk', null]);
    expect(by.v?.inputs).toEqual(['value', 'wv', null]);
    expect(by.scores?.shape).toEqual([2, 2, 5, 3]);
    expect(g.nodes.some((n) => n.name === 'bq')).toBe(false);
    expect(by.x?.op).toBe('identity');
  });
  it('prints each node with its op, inputs and shape', () => {
    const text = formatGraph(buildGraph(resolveConfig({ dModel: 8, numHeads: 2, causal: true }), shape));
    const scoresLine = text.split('\n').find((l) => l.startsWith('scores')) as string;
    expect(scoresLine).toMatch(/^scores\s+scores\s+\(q, k\)\s+\[2, 2, 5, 5\]\s+B=2 H=2 Lq=5 Lk=5\s+# raw_score/);
    expect(text).toMatch(/^masked\s+mask\s+\(scaled\)/m);
    expect(text.split('\n')).toHaveLength(buildGraph(resolveConfig({ dModel: 8, numHeads: 2 }), shape).nodes.length);
  });
});
