import { describe, expect, it } from 'vitest';
import {
  BackendRegistry,
  buildGraph,
  createAttention,
  isQkvError,
  mergeAttentionShards,
  planExecution,
  resolveConfig,
  type Tensor,
} from '../src/index.js';
import { naiveFactory } from './naive-backend.js';

const T = (shape: number[], data: number[]): Tensor => ({ shape, data: Float32Array.from(data) });
const eye = (n: number) =>
  T(
    [n, n],
    Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)),
  );

async function code(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (isQkvError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

describe('returnLse', () => {
  const config = resolveConfig({ dModel: 2, numHeads: 1, causal: true });
  const graph = buildGraph(config, {
    batch: 1,
    queryLength: 3,
    keyLength: 3,
    selfAttention: true,
    hasKeyPaddingMask: false,
    hasAttnMask: false,
  });

  it('is a graph node lse [B, H, Lq] read from the masked scores', () => {
    const node = graph.nodes.find((n) => n.name === 'lse');
    expect(node).toMatchObject({ op: 'logSumExp', inputs: ['masked'], shape: [1, 1, 3], dims: ['B', 'H', 'Lq'] });
  });

  it('stays fused only where the fused kernel also returns lse', () => {
    const outputs = ['attention', 'residual', 'lse'];
    expect(planExecution(graph, outputs, true, true).fused).toBe(true);
    expect(planExecution(graph, outputs, true, true).steps.some((s) => s.name === 'masked')).toBe(false);
    expect(planExecution(graph, outputs, true, false).fused).toBe(false);
    expect(planExecution(graph, outputs, true, false).steps.some((s) => s.name === 'masked')).toBe(true);
  });

  it('refuses a non-boolean, and a backend without logSumExp says so', async () => {
    const registry = new BackendRegistry().register(naiveFactory());
    const attn = await createAttention(
      { dModel: 2, numHeads: 1, bias: false },
      { wq: eye(2), wk: eye(2), wv: eye(2), wo: eye(2) },
      {
        registry,
        backend: 'naive',
      },
    );
    const query = T([2, 2], [1, 0, 0, 1]);
    expect(await code(attn.run({ query }, { returnLse: 1 as unknown as boolean }))).toMatch(
      /^INVALID_OPTION: options.returnLse: expected true or false, got 1/,
    );
    expect(await code(attn.run({ query }, { returnLse: true }))).toMatch(
      /^CAPABILITY: returnLse: backend "naive" has no logSumExp kernel/,
    );
    expect((await attn.run({ query }, { returnLse: false })).lse).toBeUndefined();
    await attn.dispose();
  });
});

describe('mergeAttentionShards', () => {
  // B = 1, Lq = 1, H = 2, hd = 1. Head 0: shard a saw keys with Σ exp = 1 (lse 0), shard b Σ exp = 3.
  const a = { heads: T([1, 1, 2], [10, 5]), lse: T([1, 2, 1], [0, Number.NEGATIVE_INFINITY]) };
  const b = { heads: T([1, 1, 2], [20, 7]), lse: T([1, 2, 1], [Math.log(3), Number.NEGATIVE_INFINITY]) };

  it('weighs each shard by its share of the softmax denominator', () => {
    const m = mergeAttentionShards(a, b);
    expect(m.heads.data[0]).toBeCloseTo((1 * 10 + 3 * 20) / 4, 5); // 17.5
    expect(m.lse.data[0]).toBeCloseTo(Math.log(4), 6);
    // Head 1 saw no key in either shard: zeros and −∞, never NaN.
    expect(m.heads.data[1]).toBe(0);
    expect(m.lse.data[1]).toBe(Number.NEGATIVE_INFINITY);
  });

  it('an empty shard (lse −∞) leaves the other one unchanged', () => {
    const empty = {
      heads: T([1, 1, 2], [0, 0]),
      lse: T([1, 2, 1], [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]),
    };
    const m = mergeAttentionShards(empty, b);
    expect([...m.heads.data]).toEqual([20, 0]);
    expect(m.lse.data[0]).toBeCloseTo(Math.log(3), 6);
  });

  it('refuses shards of different shapes', async () => {
    const other = { heads: T([1, 2, 2], [0, 0, 0, 0]), lse: T([1, 2, 2], [0, 0, 0, 0]) };
    expect(await code(() => mergeAttentionShards(a, other))).toMatch(
      /^INVALID_SHAPE: mergeAttentionShards: both shards need the same shapes/,
    );
    expect(await code(() => mergeAttentionShards({ heads: a.heads, lse: T([2], [0, 0]) }, b))).toMatch(
      /^INVALID_SHAPE: mergeAttentionShards: expected heads \[B, Lq, H·hd\] and lse \[B, H, Lq\]/,
    );
  });
});
