import type { FusedAttentionAttrs, MaskAttrs } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { cpuKernels as k } from '../src/index.js';

// The reference kernels' optional features, one block per op (rotary, writeRows) or per
// attr family (mask/fusedAttention score modifiers). End to end they are covered by the
// conformance suite's feature blocks; these pin the formulas on hand-computed cases.
const seq = (n: number, f = 1) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3 + 0.2) * f);

describe('rotary', () => {
  const attrs = { batch: 1, length: 2, heads: 1, headDim: 4, offset: 0, base: 10000, pairing: 'half' as const };
  it("'half' pairs c with c + hd/2, 'interleaved' pairs 2c with 2c + 1 (hand-computed)", () => {
    // Position 0 is the identity; position 1 rotates pair 0 by θ_0 = 1 rad and pair 1 by
    // θ_1 = 10000^(−2/4) = 0.01 rad.
    const x = Float32Array.from([1, 2, 3, 4, 1, 2, 3, 4]); // [1, 2, 1·4]
    const half = new Float32Array(8);
    k.rotary(x, half, attrs);
    expect([...half.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
    const [c0, s0, c1, s1] = [Math.cos(1), Math.sin(1), Math.cos(0.01), Math.sin(0.01)];
    // pairs (x0, x2) = (1, 3) by 1 rad and (x1, x3) = (2, 4) by 0.01 rad
    const wantHalf = [1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1];
    wantHalf.forEach((v, i) => expect(half[4 + i]).toBeCloseTo(v, 6));
    const inter = new Float32Array(8);
    k.rotary(x, inter, { ...attrs, pairing: 'interleaved' });
    // pairs (x0, x1) = (1, 2) by 1 rad and (x2, x3) = (3, 4) by 0.01 rad
    const wantInter = [1 * c0 - 2 * s0, 2 * c0 + 1 * s0, 3 * c1 - 4 * s1, 4 * c1 + 3 * s1];
    wantInter.forEach((v, i) => expect(inter[4 + i]).toBeCloseTo(v, 6));
  });
  it('scores depend only on the relative position, and the offset continues positions', () => {
    const hd = 8;
    const a = { batch: 1, length: 1, heads: 1, headDim: hd, base: 10000, pairing: 'half' as const };
    const q = seq(hd);
    const key = seq(hd, 0.7).reverse();
    const dot = (m: number, n: number) => {
      const qr = new Float32Array(hd);
      const kr = new Float32Array(hd);
      k.rotary(q, qr, { ...a, offset: m });
      k.rotary(key, kr, { ...a, offset: n });
      return qr.reduce((s, v, i) => s + v * (kr[i] as number), 0);
    };
    expect(dot(7, 3)).toBeCloseTo(dot(104, 100), 4);
    expect(dot(7, 3)).not.toBeCloseTo(dot(7, 4), 4);
    // Row ranges compose: [B=2, L=3, heads=2·4] in two slices equals one pass.
    const big = { batch: 2, length: 3, heads: 2, headDim: 4, offset: 5, base: 500, pairing: 'interleaved' as const };
    const xs = seq(2 * 3 * 8);
    const full = new Float32Array(48);
    const split = new Float32Array(48);
    k.rotary(xs, full, big);
    k.rotary(xs, split, big, 0, 4);
    k.rotary(xs, split, big, 4, 6);
    expect(split).toEqual(full);
    // Row 4 is batch 1, position 5 + 1: the same as a lone row at offset 6.
    const lone = new Float32Array(8);
    k.rotary(xs.subarray(32, 40), lone, { ...big, batch: 1, length: 1, offset: 6 });
    expect([...full.subarray(32, 40)]).toEqual([...lone]);
  });
});

describe('writeRows', () => {
  it('appends [B, t, width] rows at offset of every batch of a [B, capacity, width] cache, in place', () => {
    const cache = new Float32Array(2 * 4 * 2); // B=2, capacity 4, width 2
    k.writeRows(cache, Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), {
      batch: 2,
      rows: 2,
      capacity: 4,
      offset: 1,
      width: 2,
    });
    expect([...cache]).toEqual([0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0]);
    expect(() =>
      k.writeRows(cache, new Float32Array(8), { batch: 2, rows: 2, capacity: 4, offset: 3, width: 2 }),
    ).toThrow(RangeError);
  });
});

/** One head, B = 1: scaled scores s[i, j] = 0, so the output is the bias/mask pattern itself. */
const base: MaskAttrs = {
  batch: 1,
  numHeads: 2,
  numKVHeads: 2,
  queryLength: 4,
  keyLength: 4,
  headDim: 1,
  causal: false,
};
const runMask = (attrs: MaskAttrs, scaled = new Float32Array(2 * 16), am: Float32Array | null = null) => {
  const out = new Float32Array(2 * 16);
  k.mask(scaled, null, am, out, attrs);
  const rows = (h: number) => [0, 1, 2, 3].map((i) => [...out.subarray((h * 4 + i) * 4, (h * 4 + i + 1) * 4)]);
  return rows;
};
const X = Number.NEGATIVE_INFINITY;

describe('mask: score modifiers', () => {
  it('window: causal keeps i−w+1 … i, bidirectional keeps |i − j| < w', () => {
    expect(runMask({ ...base, causal: true, window: 2 })(0)).toEqual([
      [0, X, X, X],
      [0, 0, X, X],
      [X, 0, 0, X],
      [X, X, 0, 0],
    ]);
    expect(runMask({ ...base, window: 2 })(1)).toEqual([
      [0, 0, X, X],
      [0, 0, 0, X],
      [X, 0, 0, 0],
      [X, X, 0, 0],
    ]);
  });
  it('ALiBi subtracts slope_h·|p − j| per head; queryOffset shifts query positions', () => {
    const rows = runMask({ ...base, causal: true, alibiSlopes: [0.5, 0.25] });
    expect(rows(0)[3]).toEqual([-1.5, -1, -0.5, 0]);
    expect(rows(1)[2]).toEqual([-0.5, -0.25, 0, X]);
    // A session step: one query at position 3 over 4 keys.
    const step = new Float32Array(2 * 4);
    k.mask(new Float32Array(8), null, null, step, {
      ...base,
      queryLength: 1,
      causal: true,
      queryOffset: 3,
      alibiSlopes: [0.5, 0.25],
    });
    expect([...step.subarray(0, 4)]).toEqual([-1.5, -1, -0.5, 0]);
  });
  it('maskMod hides keys, scoreMod rewrites the score before attnMask is added (document mask + softcap)', () => {
    const doc = [0, 0, 1, 1]; // two documents of two tokens
    const scaled = Float32Array.from({ length: 32 }, () => 3);
    const am = Float32Array.from({ length: 16 }, () => 0.5);
    const calls: number[][] = [];
    const rows = runMask(
      {
        ...base,
        maskMod: (_b, _h, q, kk) => doc[q] === doc[kk],
        scoreMod: (s, b, h, q, kk) => {
          calls.push([b, h, q, kk]);
          return 2 * Math.tanh(s / 2);
        },
      },
      scaled,
      am,
    );
    const c = Math.fround(2 * Math.tanh(1.5) + 0.5);
    expect(rows(1)).toEqual([
      [c, c, X, X],
      [c, c, X, X],
      [X, X, c, c],
      [X, X, c, c],
    ]);
    // scoreMod is only asked about visible keys: 2 heads × 4 queries × 2 same-document keys.
    expect(calls.length).toBe(16);
    expect(calls).toContainEqual([0, 1, 2, 3]);
  });
});

describe('fusedAttention: score modifiers and KV cache', () => {
  const H = 2;
  const KVH = 1;
  const hd = 3;
  const Lq = 5;
  const Lk = 5;
  const B = 2;
  const q = seq(B * Lq * H * hd);
  const kk = seq(B * Lk * KVH * hd, 0.8).reverse();
  const v = seq(B * Lk * KVH * hd, 0.6);
  const dims = { batch: B, numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd };
  const unfused = (attrs: FusedAttentionAttrs) => {
    const S = B * H * Lq * Lk;
    const s = new Float32Array(S);
    const sc = new Float32Array(S);
    const m = new Float32Array(S);
    const w = new Float32Array(S);
    const out = new Float32Array(B * Lq * H * hd);
    k.scores(q, kk, s, attrs);
    k.scale(s, sc, attrs);
    k.mask(sc, null, null, m, attrs);
    k.softmax(m, w, { rows: B * H * Lq, cols: Lk });
    k.weightedSum(w, v, out, attrs);
    return out;
  };
  const fused = (attrs: FusedAttentionAttrs, kIn = kk, vIn = v) => {
    const out = new Float32Array(B * Lq * H * hd);
    k.fusedAttention(q, kIn, vIn, null, null, out, attrs);
    return out;
  };
  it('matches the unfused chain with window, ALiBi, maskMod and scoreMod', () => {
    const attrs: FusedAttentionAttrs = {
      ...dims,
      scale: 0.7,
      causal: true,
      window: 3,
      alibiSlopes: [0.5, 0.125],
      maskMod: (b, _h, qq, kx) => b === 0 || (qq + kx) % 3 !== 1,
      scoreMod: (s) => 1.5 * Math.tanh(s / 1.5),
    };
    const a = fused(attrs);
    const b = unfused(attrs);
    a.forEach((x, i) => expect(x).toBeCloseTo(b[i] as number, 6));
    // And the modifiers changed something (the test would pass vacuously otherwise).
    const plain = fused({ ...dims, scale: 0.7, causal: true });
    expect(plain.some((x, i) => Math.abs(x - (a[i] as number)) > 1e-3)).toBe(true);
  });
  it('with a window, visits only keys inside it (blocks outside are skipped)', () => {
    let visited = 0;
    const scoreMod = (s: number) => (visited++, s);
    fused({ ...dims, scale: 1, causal: true, window: 2, scoreMod });
    // Per (b, h): query 0 sees 1 key, queries 1…4 see 2 → 9; × B·H = 4.
    expect(visited).toBe(36);
  });
  it('reads K/V from caches [B, keyCapacity, KVH·hd] at stride keyCapacity', () => {
    const cap = 8;
    const kc = new Float32Array(B * cap * KVH * hd).fill(99);
    const vc = new Float32Array(B * cap * KVH * hd).fill(-99);
    k.writeRows(kc, kk, { batch: B, rows: Lk, capacity: cap, offset: 0, width: KVH * hd });
    k.writeRows(vc, v, { batch: B, rows: Lk, capacity: cap, offset: 0, width: KVH * hd });
    const attrs = { ...dims, scale: 0.5, causal: true };
    expect([...fused({ ...attrs, keyCapacity: cap }, kc, vc)]).toEqual([...fused(attrs)]);
    const s1 = new Float32Array(B * H * Lq * Lk);
    const s2 = new Float32Array(B * H * Lq * Lk);
    k.scores(q, kk, s1, dims);
    k.scores(q, kc, s2, { ...dims, keyCapacity: cap });
    expect(s2).toEqual(s1);
    const w = seq(B * H * Lq * Lk, 0.3).map(Math.abs);
    const o1 = new Float32Array(B * Lq * H * hd);
    const o2 = new Float32Array(B * Lq * H * hd);
    k.weightedSum(w, v, o1, dims);
    k.weightedSum(w, vc, o2, { ...dims, keyCapacity: cap });
    expect(o2).toEqual(o1);
  });
});
