import { describe, expect, it } from 'vitest';
import { cpuKernels as k } from '../src/index.js';

// One test block per op, named like the op, its kernel and its file. The conformance suite
// covers the kernels end to end; these pin the row-range contract the workers backend relies on.
const dims = { batch: 2, numHeads: 2, numKVHeads: 1, queryLength: 3, keyLength: 4, headDim: 2 };
const seq = (n: number, f = 0.1) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3) * f * 10);

describe('linear', () => {
  it('x·w + b with row-vector weights, and ranges compose', () => {
    const x = Float32Array.from([1, 2, 3, 4]); // [2, 2]
    const w = Float32Array.from([1, 0, 2, 0, 1, 3]); // [2, 3]
    const out = new Float32Array(6);
    k.linear(x, w, Float32Array.from([1, 1, 1]), out, { rows: 2, inFeatures: 2, outFeatures: 3 }, 0, 1);
    k.linear(x, w, Float32Array.from([1, 1, 1]), out, { rows: 2, inFeatures: 2, outFeatures: 3 }, 1, 2);
    expect([...out]).toEqual([2, 3, 9, 4, 5, 19]);
  });
});

describe('add', () => {
  it('broadcasts b over leading dims, per range', () => {
    const out = new Float32Array(6);
    k.add(Float32Array.from([1, 2, 3, 4, 5, 6]), Float32Array.from([10, 20]), out, 3, 6);
    expect([...out]).toEqual([0, 0, 0, 24, 15, 26]);
  });
});

describe('scores / weightedSum / fusedAttention', () => {
  const q = seq(2 * 3 * 4);
  const kk = seq(2 * 4 * 2, 0.07);
  const v = seq(2 * 4 * 2, 0.05);
  const rows = 2 * 2 * 3;
  it('split ranges give the same result as one full range', () => {
    const full = new Float32Array(rows * 4);
    const split = new Float32Array(rows * 4);
    k.scores(q, kk, full, dims);
    k.scores(q, kk, split, dims, 0, 5);
    k.scores(q, kk, split, dims, 5, rows);
    expect(split).toEqual(full);
  });
  it('fusedAttention equals scores → scale → mask → softmax → weightedSum', () => {
    const attrs = { ...dims, scale: 0.7, causal: true };
    const pad = Float32Array.from([0, 0, 0, 1, 0, 0, 0, 0]);
    const s = new Float32Array(rows * 4);
    k.scores(q, kk, s, dims);
    k.scale(s, s, { scale: 0.7 });
    const m = new Float32Array(rows * 4);
    k.mask(s, pad, null, m, attrs);
    const w = new Float32Array(rows * 4);
    k.softmax(m, w, { rows, cols: 4 });
    const heads = new Float32Array(2 * 3 * 2 * 2);
    k.weightedSum(w, v, heads, dims);
    const fused = new Float32Array(heads.length);
    k.fusedAttention(q, kk, v, pad, null, fused, attrs);
    fused.forEach((x, i) => expect(x).toBeCloseTo(heads[i] as number, 6));
  });
});

describe('mask', () => {
  it('hides the causal future (bottom-right aligned) and padding with −∞, adds attnMask', () => {
    const attrs = {
      batch: 1,
      numHeads: 1,
      numKVHeads: 1,
      queryLength: 2,
      keyLength: 3,
      headDim: 1,
      causal: true,
    };
    const out = new Float32Array(6);
    k.mask(new Float32Array(6), Float32Array.from([1, 0, 0]), Float32Array.from([0, 0.5, 0, 0, 0.5, 0]), out, attrs);
    const I = Number.NEGATIVE_INFINITY;
    expect([...out]).toEqual([I, 0.5, I, I, 0.5, 0]);
  });
});

describe('softmax', () => {
  it('rows sum to 1, huge scores do not overflow, fully-masked rows are 0, NaN propagates', () => {
    const I = Number.NEGATIVE_INFINITY;
    const out = new Float32Array(9);
    k.softmax(Float32Array.from([1000, 1000, I, I, I, I, 1, Number.NaN, 2]), out, {
      rows: 3,
      cols: 3,
    });
    expect([...out.subarray(0, 6)]).toEqual([0.5, 0.5, 0, 0, 0, 0]);
    expect(out.subarray(6).every(Number.isNaN)).toBe(true);
  });
});

describe('logSumExp', () => {
  it('log Σ exp per row, −∞ for an all −∞ row, NaN propagates; ranges compose', () => {
    const ninf = Number.NEGATIVE_INFINITY;
    const s = Float32Array.from([1, 2, 3, ninf, ninf, ninf, 1000, ninf, 1000, 0, Number.NaN, 0]);
    const out = new Float32Array(4);
    k.logSumExp(s, out, { rows: 4, cols: 3 }, 0, 2);
    k.logSumExp(s, out, { rows: 4, cols: 3 }, 2, 4);
    expect(out[0]).toBeCloseTo(Math.log(Math.E + Math.E ** 2 + Math.E ** 3), 5);
    expect(out[1]).toBe(ninf);
    expect(out[2]).toBeCloseTo(1000 + Math.LN2, 3); // max-subtracted: no overflow
    expect(out[3]).toBeNaN();
  });
  it('fusedAttention (reference and SIMD) fills lse like logSumExp over the masked scores', () => {
    const q = seq(2 * 3 * 4);
    const kk = seq(2 * 4 * 2, 0.07);
    const v = seq(2 * 4 * 2, 0.05);
    const rows = 2 * 2 * 3;
    const attrs = { ...dims, scale: 0.7, causal: true };
    const pad = Float32Array.from([0, 0, 0, 0, 1, 1, 1, 1]); // batch 1 sees nothing
    const s = new Float32Array(rows * 4);
    k.scores(q, kk, s, dims);
    k.scale(s, s, { scale: 0.7 });
    k.mask(s, pad, null, s, attrs);
    const want = new Float32Array(rows);
    k.logSumExp(s, want, { rows, cols: 4 });
    for (const fused of [k.fusedAttention, k.fusedAttentionFast]) {
      const lse = new Float32Array(rows);
      fused(q, kk, v, pad, null, new Float32Array(2 * 3 * 2 * 2), attrs, 0, rows, lse);
      lse.forEach((x, i) =>
        i >= 6 ? expect(x).toBe(Number.NEGATIVE_INFINITY) : expect(x).toBeCloseTo(want[i] as number, 5),
      );
    }
  });
});

describe('scale', () => {
  it('multiplies', () => {
    const out = new Float32Array(2);
    k.scale(Float32Array.from([2, -4]), out, { scale: 0.5 });
    expect([...out]).toEqual([1, -2]);
  });
});

describe('positionalEncoding', () => {
  it('matches the sinusoid formula, odd widths included', () => {
    const pe = k.positionalEncoding({ kind: 'sinusoidal', length: 3, dModel: 5, offset: 0 });
    expect(pe[5 * 2 + 2]).toBeCloseTo(Math.sin(2 / 10000 ** (2 / 5)), 6);
    expect(pe[5 * 2 + 3]).toBeCloseTo(Math.cos(2 / 10000 ** (2 / 5)), 6);
    expect(pe[5 * 1 + 4]).toBeCloseTo(Math.sin(1 / 10000 ** (4 / 5)), 6);
  });
});
