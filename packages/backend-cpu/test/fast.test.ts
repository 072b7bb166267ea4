import { describe, expect, it } from 'vitest';
import { fastKernelMemoryBytes } from '../src/fast/index.js';
import { cpuKernels as k } from '../src/index.js';

// The SIMD kernels against the reference kernels on random shapes: odd sizes and tails of every
// blocking factor (4-row quads, 8-wide panels, 64-row / 64-key blocks, 256-row chunks), grouped
// heads, masks, and row ranges split the way the workers backend splits them.

/** Deterministic uniform [−1, 1) (mulberry32), so a failure replays. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}
const rand = (n: number, r: () => number) => Float32Array.from({ length: n }, r);

/** |a − e| ≤ atol + rtol·|e| everywhere (the conformance rule); NaN only where NaN is expected. */
function expectClose(actual: Float32Array, expected: Float32Array, atol = 1e-5, rtol = 1e-4): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(e)) {
      expect(a, `[${i}]`).toBeNaN();
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) expect.fail(`[${i}]: fast ${a}, reference ${e}`);
  }
}

it('the SIMD kernels are available in this runtime (else every test below would test the fallback)', () => {
  expect(k.fastKernelsAvailable()).toBe(true);
});

describe('linearFast', () => {
  // [rows, in, out]: tails of the 4-row quad, the 8-wide panel and the 256-row chunk.
  const shapes = [
    [1, 1, 1],
    [3, 5, 7],
    [4, 8, 8],
    [9, 17, 13],
    [67, 64, 72],
    [257, 33, 9],
    [300, 96, 40],
  ] as const;
  for (const [rows, nIn, nOut] of shapes) {
    for (const withBias of [true, false]) {
      it(`[${rows}, ${nIn}] · [${nIn}, ${nOut}]${withBias ? ' + bias' : ''} equals the reference`, () => {
        const r = rng(rows * 1000 + nIn * 10 + nOut);
        const x = rand(rows * nIn, r);
        const w = rand(nIn * nOut, r);
        const bias = withBias ? rand(nOut, r) : null;
        const attrs = { rows, inFeatures: nIn, outFeatures: nOut };
        const ref = new Float32Array(rows * nOut);
        k.linear(x, w, bias, ref, attrs);
        const full = new Float32Array(rows * nOut);
        k.linearFast(x, w, bias, full, attrs);
        expectClose(full, ref);
        // Row ranges compose (the workers backend's slices), and rows outside a range are untouched.
        const split = new Float32Array(rows * nOut).fill(42);
        const cut = Math.floor(rows / 3);
        k.linearFast(x, w, bias, split, attrs, 0, cut);
        if (cut < rows) expect(split[cut * nOut]).toBe(42);
        k.linearFast(x, w, bias, split, attrs, cut, rows);
        expectClose(split, ref);
      });
    }
  }
});

describe('fusedAttentionFast', () => {
  // [B, H, KVH, Lq, Lk, hd]: hd off the 8-wide panel, Lk off the 8 / 64 key blocks, Lq off the
  // 4-row quad, the 64-row block and the 256-row chunk; Lq < Lk (KV-cache decode shapes).
  const shapes = [
    [1, 1, 1, 1, 1, 1],
    [1, 2, 2, 5, 5, 8],
    [2, 4, 2, 70, 90, 12],
    [1, 3, 1, 1, 77, 20],
    [1, 2, 1, 300, 300, 16],
    [2, 1, 1, 129, 129, 64],
    [1, 2, 2, 33, 260, 7],
  ] as const;
  for (const [B, H, KVH, Lq, Lk, hd] of shapes) {
    for (const causal of [false, true]) {
      it(`B${B} H${H}/${KVH} Lq${Lq} Lk${Lk} hd${hd}${causal ? ' causal' : ''}: every mask combination equals the reference`, () => {
        const r = rng(B * 7 + H * 31 + Lq * 101 + Lk * 13 + hd + (causal ? 5 : 0));
        const q = rand(B * Lq * H * hd, r);
        const kk = rand(B * Lk * KVH * hd, r);
        const v = rand(B * Lk * KVH * hd, r);
        const attrs = {
          batch: B,
          numHeads: H,
          numKVHeads: KVH,
          queryLength: Lq,
          keyLength: Lk,
          headDim: hd,
          scale: 1 / Math.sqrt(hd),
          causal,
        };
        expect(k.fusedAttentionIsFast(attrs)).toBe(true);
        // Batch 0 hides its first and last key; the last batch hides every key (rows → 0).
        const pad = new Float32Array(B * Lk);
        pad[0] = 1;
        pad[Lk - 1] = 1;
        if (B > 1) pad.fill(1, (B - 1) * Lk);
        // An additive mask with −∞ holes and large finite values (stresses the online max).
        const am = Float32Array.from(rand(Lq * Lk, r), (x, i) => (i % 7 === 3 ? Number.NEGATIVE_INFINITY : x * 30));
        const rows = B * H * Lq;
        for (const [p, m] of [
          [null, null],
          [pad, null],
          [null, am],
          [pad, am],
        ] as const) {
          const ref = new Float32Array(rows * hd);
          k.fusedAttention(q, kk, v, p, m, ref, attrs);
          const out = new Float32Array(rows * hd);
          const cuts = [0, Math.floor(rows / 3), Math.floor(rows / 2) + 1, rows];
          for (let c = 0; c + 1 < cuts.length; c++)
            k.fusedAttentionFast(q, kk, v, p, m, out, attrs, cuts[c], cuts[c + 1]);
          expectClose(out, ref);
        }
      });
    }
  }

  it('a NaN score poisons only its own rows, as in the reference', () => {
    const attrs = {
      batch: 1,
      numHeads: 1,
      numKVHeads: 1,
      queryLength: 6,
      keyLength: 6,
      headDim: 4,
      scale: 0.5,
      causal: true,
    };
    const r = rng(9);
    const q = rand(24, r);
    q[2 * 4 + 1] = Number.NaN; // query row 2
    const kk = rand(24, r);
    const v = rand(24, r);
    const ref = new Float32Array(24);
    const out = new Float32Array(24);
    k.fusedAttention(q, kk, v, null, null, ref, attrs);
    k.fusedAttentionFast(q, kk, v, null, null, out, attrs);
    expectClose(out, ref);
    expect(out[8]).toBeNaN();
    expect(out[0]).not.toBeNaN();
  });

  it('attrs with extras it does not implement (window, ALiBi, mods) go to the reference kernel', () => {
    const base = {
      batch: 1,
      numHeads: 1,
      numKVHeads: 1,
      queryLength: 4,
      keyLength: 4,
      headDim: 2,
      scale: 1,
      causal: true,
    };
    expect(k.fusedAttentionIsFast(base)).toBe(true);
    expect(k.fusedAttentionIsFast({ ...base, window: 2 } as typeof base)).toBe(false);
    expect(k.fusedAttentionIsFast({ ...base, alibiSlopes: [0.5] } as typeof base)).toBe(false);
    expect(k.fusedAttentionIsFast({ ...base, maskMod: () => true } as typeof base)).toBe(false);
    expect(k.fusedAttentionIsFast({ ...base, someFutureFeature: 1 } as typeof base)).toBe(false);
    // An optional key left undefined is no extra; queryOffset alone (KV-cache steps) changes nothing.
    expect(k.fusedAttentionIsFast({ ...base, window: undefined } as typeof base)).toBe(true);
    expect(k.fusedAttentionIsFast({ ...base, queryLength: 1, queryOffset: 3 } as typeof base)).toBe(true);
  });

  it('never allocates an [Lq, Lk] buffer: L = 4096 causal runs in a few MiB of kernel memory', () => {
    const L = 4096;
    const hd = 64;
    const r = rng(4096);
    const q = rand(L * hd, r);
    const kk = rand(L * hd, r);
    const v = rand(L * hd, r);
    const out = new Float32Array(L * hd);
    const attrs = {
      batch: 1,
      numHeads: 1,
      numKVHeads: 1,
      queryLength: L,
      keyLength: L,
      headDim: hd,
      scale: 0.125,
      causal: true,
    };
    const before = process.memoryUsage().arrayBuffers;
    k.fusedAttentionFast(q, kk, v, null, null, out, attrs);
    const scoreBytes = L * L * 4; // 64 MiB for one head's score matrix
    // The module's memory is one head's K/V (3 · L · hd floats) plus 256-row chunks: ~3 MiB.
    expect(fastKernelMemoryBytes()).toBeLessThan(scoreBytes / 8);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(scoreBytes / 8);
    // And the result is attention, not garbage: the last row (it sees all L keys) matches the reference.
    const ref = new Float32Array(L * hd);
    k.fusedAttention(q, kk, v, null, null, ref, attrs, L - 1, L);
    expectClose(out.subarray((L - 1) * hd), ref.subarray((L - 1) * hd));
  });
});

describe('pack scopes (packed W / K·V reused across the row blocks of one op)', () => {
  it('linear: blocks inside one scope reuse the packed W and equal the reference; a new scope repacks changed weights', () => {
    const r = rng(77);
    const attrs = { rows: 300, inFeatures: 40, outFeatures: 24 };
    const x = rand(300 * 40, r);
    const w = rand(40 * 24, r);
    const bias = rand(24, r);
    const ref = new Float32Array(300 * 24);
    k.linear(x, w, bias, ref, attrs);
    const out = new Float32Array(300 * 24);
    k.beginPackScope();
    for (let from = 0; from < 300; from += 64) k.linearFast(x, w, bias, out, attrs, from, Math.min(300, from + 64));
    k.endPackScope();
    expectClose(out, ref);
    // Same arrays, new contents, new scope: a stale pack would give the old product.
    w.set(rand(40 * 24, r));
    bias.set(rand(24, r));
    k.linear(x, w, bias, ref, attrs);
    k.beginPackScope();
    k.linearFast(x, w, bias, out, attrs, 0, 150);
    k.linearFast(x, w, bias, out, attrs, 150, 300);
    k.endPackScope();
    expectClose(out, ref);
    // Outside any scope nothing is reused either.
    w.set(rand(40 * 24, r));
    k.linear(x, w, bias, ref, attrs);
    k.linearFast(x, w, bias, out, attrs);
    expectClose(out, ref);
  });

  it('fusedAttention: blocks of a head inside one scope reuse its K/V, interleaved with linear calls, and equal the reference', () => {
    const r = rng(78);
    const attrs = {
      batch: 2,
      numHeads: 4,
      numKVHeads: 2,
      queryLength: 150,
      keyLength: 150,
      headDim: 16,
      scale: 0.25,
      causal: true,
    };
    const n = 2 * 150 * 4 * 16;
    const nkv = 2 * 150 * 2 * 16;
    const q = rand(n, r);
    const kk = rand(nkv, r);
    const v = rand(nkv, r);
    const pad = Float32Array.from({ length: 2 * 150 }, (_, i) => (i % 7 === 3 ? 1 : 0));
    const ref = new Float32Array(n);
    k.fusedAttention(q, kk, v, pad, null, ref, attrs);
    const out = new Float32Array(n);
    const rows = 2 * 4 * 150;
    const x = rand(8 * 16, r);
    const w = rand(16 * 16, r);
    const lin = new Float32Array(8 * 16);
    k.beginPackScope();
    for (let from = 0; from < rows; from += 64) {
      k.fusedAttentionFast(q, kk, v, pad, null, out, attrs, from, Math.min(rows, from + 64));
      // A linear call in between overwrites the module's memory: the next block must repack.
      if (from % 192 === 0) k.linearFast(x, w, null, lin, { rows: 8, inFeatures: 16, outFeatures: 16 });
    }
    k.endPackScope();
    expectClose(out, ref);
    // New K/V contents in the same arrays, new scope: no stale K/V.
    kk.set(rand(nkv, r));
    v.set(rand(nkv, r));
    k.fusedAttention(q, kk, v, pad, null, ref, attrs);
    k.beginPackScope();
    for (let from = 0; from < rows; from += 100)
      k.fusedAttentionFast(q, kk, v, pad, null, out, attrs, from, Math.min(rows, from + 100));
    k.endPackScope();
    expectClose(out, ref);
  });
});
