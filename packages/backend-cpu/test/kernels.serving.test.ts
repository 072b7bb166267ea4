import type { FusedAttentionAttrs, MaskAttrs } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { cpuKernels as k } from '../src/index.js';

// The serving features in the reference kernels (softcap, sink logits, sink tokens, packed
// sequences), pinned on hand-computed cases; end to end they are in the conformance suite.
const seq = (n: number, f = 1) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3 + 0.2) * f);
const dims = { batch: 1, numHeads: 1, numKVHeads: 1, headDim: 2 };

describe('mask: softcap and sink tokens', () => {
  it('softcap c·tanh(s/c) comes first (hand-computed: 3 → 1.810297 and 10 → 1.999818 for c = 2)', () => {
    const attrs: MaskAttrs = { ...dims, queryLength: 1, keyLength: 2, causal: false, softcap: 2 };
    const out = new Float32Array(2);
    k.mask(Float32Array.from([3, 10]), null, null, out, attrs);
    expect(out[0]).toBeCloseTo(1.810297, 6);
    expect(out[1]).toBeCloseTo(1.999818, 6);
    // Before ALiBi: −slope·|p − j| is added to the capped score, not capped itself.
    k.mask(Float32Array.from([3, 10]), null, null, out, { ...attrs, alibiSlopes: [1] });
    expect(out[0]).toBeCloseTo(1.810297, 6);
    expect(out[1]).toBeCloseTo(1.999818 - 1, 6);
  });
  it('sinkTokens s keeps keys 0 … s−1 visible besides a causal window (L = 6, w = 2, s = 1)', () => {
    const L = 6;
    const attrs: MaskAttrs = { ...dims, queryLength: L, keyLength: L, causal: true, window: 2, sinkTokens: 1 };
    const out = new Float32Array(L * L);
    k.mask(new Float32Array(L * L), null, null, out, attrs);
    const seen = Array.from({ length: L }, (_, i) =>
      [...out.subarray(i * L, (i + 1) * L)].map((v) => (v === Number.NEGATIVE_INFINITY ? '·' : '✓')).join(''),
    );
    expect(seen).toEqual(['✓·····', '✓✓····', '✓✓✓···', '✓·✓✓··', '✓··✓✓·', '✓···✓✓']);
  });
  it('a compacted cache (keyOffset) puts rows past the sinks at row + keyOffset for the window and ALiBi', () => {
    // Rows: [sink at position 0, positions 10, 11, 12]; query at position 12 (the last row), w = 2.
    const attrs: MaskAttrs = {
      ...dims,
      queryLength: 1,
      keyLength: 4,
      causal: true,
      window: 2,
      sinkTokens: 1,
      keyOffset: 9,
      queryOffset: 12,
      alibiSlopes: [0.5],
    };
    const out = new Float32Array(4);
    k.mask(new Float32Array(4), null, null, out, attrs);
    expect([...out]).toEqual([-6, Number.NEGATIVE_INFINITY, -0.5, 0]);
  });
});

describe('softmax: sink logits', () => {
  it('exp(sink) joins the denominator (hand-computed: scores [0, 0], sink ln 2 → 1/4 each)', () => {
    const out = new Float32Array(4);
    // Two rows of one head each (queryLength 1, H = 2): sinks ln 2 and −∞-like −80.
    k.softmax(Float32Array.from([0, 0, 1, 1]), out, { rows: 2, cols: 2, sinks: [Math.LN2, -80], queryLength: 1 });
    expect(out[0]).toBeCloseTo(0.25, 7);
    expect(out[1]).toBeCloseTo(0.25, 7);
    expect(out[2]).toBeCloseTo(0.5, 7);
  });
  it('a row with no visible key stays zero', () => {
    const out = new Float32Array(2).fill(7);
    k.softmax(Float32Array.from([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]), out, {
      rows: 1,
      cols: 2,
      sinks: [3],
      queryLength: 1,
    });
    expect([...out]).toEqual([0, 0]);
  });
});

describe('fusedAttention: packed sequences', () => {
  const L = 256;
  const hd = 4;
  const attrs: FusedAttentionAttrs = {
    batch: 1,
    numHeads: 1,
    numKVHeads: 1,
    queryLength: L,
    keyLength: L,
    headDim: hd,
    scale: 0.5,
    causal: false,
  };
  const q = seq(L * hd);
  const key = seq(L * hd, 0.8).reverse();
  const v = seq(L * hd, 1.1);
  // Ids 0 on keys 0…127 and 1 on 128…255, except one key of id 0 at 200: not contiguous, so the
  // reference path (per-block id ranges) runs.
  const ids = Float32Array.from({ length: L }, (_, j) => (j < 128 || j === 200 ? 0 : 1));

  it('skips whole blocks whose id range misses the query id (ids read per visited key only)', () => {
    let reads = 0;
    const counted = new Proxy(ids, {
      get(target, p, recv) {
        if (typeof p === 'string' && /^\d+$/.test(p)) reads++;
        const value = Reflect.get(target, p, target);
        return typeof value === 'function' ? value.bind(target) : (value ?? recv);
      },
    });
    const out = new Float32Array(L * hd);
    k.fusedAttention(q, key, v, null, null, out, attrs, 0, L, null, counted);
    // Blocks of 32: id-0 queries visit 4 blocks of id 0 and the mixed block 192…223; id-1
    // queries the 4 id-1 blocks. Without skipping every query would read all 256 ids.
    const rows0 = 129;
    const rows1 = L - rows0;
    const expected = L /* block ranges */ + L /* query ids */ + rows0 * (128 + 32) + rows1 * 128;
    expect(reads).toBe(expected);
    // And equals the dense masked chain.
    const dense = new Float32Array(L * hd);
    const am = new Float32Array(L * L);
    for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) if (ids[i] !== ids[j]) am[i * L + j] = -Infinity;
    k.fusedAttention(q, key, v, null, am, dense, attrs);
    for (let e = 0; e < L * hd; e++) expect(out[e]).toBeCloseTo(dense[e] as number, 6);
  });
  it('contiguous runs go to the kernel one sequence at a time', () => {
    const runs = Float32Array.from({ length: L }, (_, j) => (j < 10 ? 4 : j < 200 ? 5 : 6));
    expect(k.contiguousRuns(runs, 0, L)).toEqual([0, 10, 10, 200, 200, 256]);
    expect(k.contiguousRuns(ids, 0, L)).toBeNull();
    const calls: [number, number, number][] = [];
    const out = new Float32Array(L * hd);
    const spy: typeof k.fusedAttention = (qq, kk, vv, pad, am, o, a, from, to, lse) => {
      calls.push([a.queryLength, from ?? 0, to ?? 0]);
      k.fusedAttention(qq, kk, vv, pad, am, o, a, from, to, lse);
    };
    const lse = new Float32Array(L);
    k.packedFusedAttention(spy, q, key, v, null, null, out, attrs, 0, L, lse, runs);
    expect(calls).toEqual([
      [10, 0, 10],
      [190, 0, 190],
      [56, 0, 56],
    ]);
    const ref = new Float32Array(L * hd);
    const refLse = new Float32Array(L);
    k.fusedAttention(q, key, v, null, null, ref, attrs, 0, L, refLse, runs);
    for (let e = 0; e < L * hd; e++) expect(out[e]).toBeCloseTo(ref[e] as number, 6);
    // Each sequence's lse lands on its own rows of the whole lse [B, H, L].
    for (let i = 0; i < L; i++) expect(lse[i]).toBeCloseTo(refLse[i] as number, 5);
  });
});
