import { type AttentionConfig, mergeAttentionShards } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { referenceAlibiSlopes, referenceAttention } from '../src/index.js';

// The hand-computed cases written in docs/FEATURES.md, checked against the float64 reference
// (which the conformance suite then holds every backend to).
const eye = (n: number) => ({
  shape: [n, n],
  data: Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)),
});
const zeros = (r: number, c: number) => ({ shape: [r, c], data: new Float32Array(r * c) });
const near = (got: ArrayLike<number>, want: readonly number[], digits = 6) =>
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, digits));

describe('docs/FEATURES.md hand-computed cases', () => {
  it('RoPE of [1, 2, 3, 4] at position 1, both pairings', () => {
    for (const [pairing, want] of [
      ['half', [-1.984111, 1.959901, 2.462378, 4.0198]],
      ['interleaved', [-1.14264, 1.922076, 2.959851, 4.0298]],
    ] as const) {
      const config: AttentionConfig = {
        dModel: 4,
        numHeads: 1,
        bias: false,
        positionalEncoding: 'rotary',
        rotaryPairing: pairing,
      };
      const ref = referenceAttention(
        config,
        { wq: eye(4), wk: eye(4), wv: eye(4), wo: eye(4) },
        {
          query: { shape: [1, 2, 4], data: Float32Array.from([1, 2, 3, 4, 1, 2, 3, 4]) },
        },
      );
      near(ref.q.data.subarray(0, 4), [1, 2, 3, 4]); // position 0: identity
      near(ref.q.data.subarray(4, 8), want);
      near(ref.k.data.subarray(4, 8), want); // K is rotated the same way
    }
  });
  it('ALiBi slopes for H = 6 and the weights of head 0, H = 4, with zero raw scores', () => {
    expect(referenceAlibiSlopes(6)).toEqual([0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
    const config: AttentionConfig = { dModel: 4, numHeads: 4, causal: true, bias: false, positionalEncoding: 'alibi' };
    const ref = referenceAttention(
      config,
      { wq: zeros(4, 4), wk: eye(4), wv: eye(4), wo: eye(4) },
      {
        query: { shape: [1, 3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i) },
      },
    );
    // weights [1, H, 3, 3]: head 0, query 2
    near(ref.weights.data.subarray(6, 9), [0.254275, 0.326496, 0.419229]);
  });
  it('window w = 2 on L = 4: the causal and bidirectional visibility patterns', () => {
    for (const [causal, pattern] of [
      [true, ['1000', '1100', '0110', '0011']],
      [false, ['1100', '1110', '0111', '0011']],
    ] as const) {
      const config: AttentionConfig = { dModel: 2, numHeads: 1, causal, window: 2, bias: false };
      const ref = referenceAttention(
        config,
        { wq: zeros(2, 2), wk: eye(2), wv: eye(2), wo: eye(2) },
        {
          query: { shape: [1, 4, 2], data: Float32Array.from({ length: 8 }, (_, i) => i) },
        },
      );
      const rows = [0, 1, 2, 3].map((i) =>
        [...ref.weights.data.subarray(i * 4, i * 4 + 4)].map((w) => (w > 0 ? '1' : '0')).join(''),
      );
      expect(rows).toEqual(pattern);
    }
  });
  it('learned table rows are added to E', () => {
    const config: AttentionConfig = { dModel: 2, numHeads: 1, bias: false, positionalEncoding: 'learned' };
    const ref = referenceAttention(
      config,
      {
        wq: eye(2),
        wk: eye(2),
        wv: eye(2),
        wo: eye(2),
        positionalEmbedding: { shape: [2, 2], data: Float32Array.from([0.1, 0.2, 0.3, 0.4]) },
      },
      { query: { shape: [1, 2, 2], data: Float32Array.from([1, 1, 2, 2]) } },
    );
    near(ref.x.data, [1.1, 1.2, 2.3, 2.4]);
  });
  it('softcapping 2·tanh(s/2) of the scaled scores 3 and 10', () => {
    // One key per query, so the masked score is exactly scoreMod(scaled).
    const seen: number[] = [];
    const config: AttentionConfig = {
      dModel: 1,
      numHeads: 1,
      bias: false,
      scale: 1,
      scoreMod: (s: number) => (seen.push(s), 2 * Math.tanh(s / 2)),
    };
    const q = (v: number) =>
      referenceAttention(
        config,
        { wq: eye(1), wk: eye(1), wv: eye(1), wo: eye(1) },
        { query: { shape: [1, 1, 1], data: Float32Array.from([v]) } },
      );
    near(q(Math.sqrt(3)).masked.data, [1.810297], 5); // √3 rounds to float32
    near(q(Math.sqrt(10)).masked.data, [1.999818], 5);
    expect(seen.length).toBe(2);
  });
  it('log-sum-exp of scaled scores [1, 2, 3], and the two-shard merge example', () => {
    // One query x = 1 against keys 1, 2, 3 (dModel 1, identity weights, scale 1): scores = keys.
    const ref = referenceAttention(
      { dModel: 1, numHeads: 1, bias: false, scale: 1, selfAttention: false },
      { wq: eye(1), wk: eye(1), wv: eye(1), wo: eye(1) },
      {
        query: { shape: [1, 1, 1], data: Float32Array.from([1]) },
        key: { shape: [1, 3, 1], data: Float32Array.from([1, 2, 3]) },
        value: { shape: [1, 3, 1], data: Float32Array.from([1, 2, 3]) },
      },
    );
    near(ref.lse.data, [3.407606]);
    near(ref.weights.data, [0.090031, 0.244728, 0.665241]);
    const shard = (heads: number, lse: number) => ({
      heads: { shape: [1, 1, 1], data: Float32Array.from([heads]) },
      lse: { shape: [1, 1, 1], data: Float32Array.from([lse]) },
    });
    const merged = mergeAttentionShards(shard(10, 0), shard(20, Math.log(3)));
    near(merged.heads.data, [17.5], 5);
    near(merged.lse.data, [1.386294]);
  });
});
