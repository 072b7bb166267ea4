import { rng } from '@qkv/conformance';
import { describe, expect, it } from 'vitest';
import { createArena, type DecodeArena, decodeKernel } from '../src/fast/arena.js';

// The decode kernel alone (assembly/decode.ts), called as src/fast/decode.ts calls it, against a
// float64 reference of its contract: per row (h, r) over keys 0 … n−1 with count[r] visible,
// m = max_j s_j (base 2), l = Σ_j 2^(s_j − m), o = Σ_j 2^(s_j − m)·v_j, where hidden keys have
// p = 0 (0·v still enters o: a NaN in a hidden key's V reaches o, as it always has).
// Covers both passes' shapes: one row per head (quads of keys in four streams) and several
// (key-quad × row-pair tiles, four-row pass 4), ranges that end inside a quad, hidden keys.

interface Case {
  nq: number;
  heads: number;
  hd: number;
  n: number;
  /** Visible keys per row (default: all n). */
  counts?: number[];
  /** Floats between consecutive keys (default heads·hd, the cache layout). */
  stride?: number;
  /** Values written into K or V before the call: [tensor, key, head, channel, value]. */
  poke?: ['k' | 'v', number, number, number, number][];
}

interface Result {
  o: Float64Array | Float32Array;
  m: Float64Array | Float32Array;
  l: Float64Array | Float32Array;
}

function setup(c: Case, seed: number) {
  const random = rng(seed);
  const stride = c.stride ?? c.heads * c.hd;
  const q = Float32Array.from({ length: c.heads * c.nq * c.hd }, () => (random() * 2 - 1) * 0.6);
  const k = Float32Array.from({ length: c.n * stride }, () => random() * 2 - 1);
  const v = Float32Array.from({ length: c.n * stride }, () => random() * 2 - 1);
  for (const [t, j, h, ch, x] of c.poke ?? []) (t === 'k' ? k : v)[j * stride + h * c.hd + ch] = x;
  const counts = c.counts ?? new Array(c.nq).fill(c.n);
  return { q, k, v, stride, counts };
}

function reference(c: Case, { q, k, v, stride, counts }: ReturnType<typeof setup>): Result {
  const rows = c.heads * c.nq;
  const out = { o: new Float64Array(rows * c.hd), m: new Float64Array(rows), l: new Float64Array(rows) };
  for (let h = 0; h < c.heads; h++) {
    for (let r = 0; r < c.nq; r++) {
      const row = h * c.nq + r;
      const s = new Float64Array(c.n);
      for (let j = 0; j < c.n; j++) {
        let dot = 0;
        for (let ch = 0; ch < c.hd; ch++)
          dot += (q[row * c.hd + ch] as number) * (k[j * stride + h * c.hd + ch] as number);
        s[j] = j < (counts[r] as number) ? dot : Number.NEGATIVE_INFINITY;
      }
      const m = s.reduce((a, b) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b)), -Infinity);
      const sub = m === Number.NEGATIVE_INFINITY ? 0 : m;
      let l = 0;
      for (let j = 0; j < c.n; j++) {
        const p = 2 ** ((s[j] as number) - sub);
        l += p;
        for (let ch = 0; ch < c.hd; ch++) {
          const at = row * c.hd + ch;
          out.o[at] = (out.o[at] as number) + p * (v[j * stride + h * c.hd + ch] as number);
        }
      }
      out.m[row] = m;
      out.l[row] = l;
    }
  }
  return out;
}

/** One kernel call over an arena holding k and v; o, m, l of the real rows (padding rows dropped). */
function kernel(arena: DecodeArena, c: Case, { q, k, v, stride, counts }: ReturnType<typeof setup>): Result {
  const nqp = c.nq === 1 ? 1 : (c.nq + 3) & ~3;
  const rows = c.heads * nqp;
  const n4 = (c.n + 3) & ~3;
  const kP = arena.alloc(k.length * 4);
  const vP = arena.alloc(v.length * 4);
  arena.f32(kP, k.length).set(k);
  arena.f32(vP, v.length).set(v);
  const floats = rows * (2 * c.hd + n4 + 2) + nqp;
  const { kernel: e, scratch } = decodeKernel(arena.memory, arena.id, floats * 4);
  const qP = scratch;
  const countP = qP + rows * c.hd * 4;
  const sP = countP + nqp * 4;
  const oP = sP + rows * n4 * 4;
  const mP = oP + rows * c.hd * 4;
  const lP = mP + rows * 4;
  // Padding rows' q is whatever the scratch held: NaN here, so a padding row that leaked into a
  // real one would show.
  const qs = arena.f32(qP, rows * c.hd).fill(Number.NaN);
  for (let h = 0; h < c.heads; h++) qs.set(q.subarray(h * c.nq * c.hd, (h + 1) * c.nq * c.hd), h * nqp * c.hd);
  new Int32Array(arena.memory.buffer, countP, nqp).set([...counts, ...new Array(nqp - c.nq).fill(0)]);
  e.decode(qP, c.nq, c.heads, c.hd, kP, vP, stride * 4, c.n, countP, sP, oP, mP, lP);
  const out = {
    o: new Float32Array(c.heads * c.nq * c.hd),
    m: new Float32Array(c.heads * c.nq),
    l: new Float32Array(c.heads * c.nq),
  };
  for (let h = 0; h < c.heads; h++) {
    for (let r = 0; r < c.nq; r++) {
      const from = h * nqp + r;
      const to = h * c.nq + r;
      out.o.set(arena.f32(oP + from * c.hd * 4, c.hd), to * c.hd);
      out.m[to] = arena.f32(mP, rows)[from] as number;
      out.l[to] = arena.f32(lP, rows)[from] as number;
    }
  }
  arena.free(kP);
  arena.free(vP);
  return out;
}

/** Equal where finite (relative 1e-5 of the row's scale), and the same NaN / ±∞ elsewhere. */
function expectSame(got: Result, want: Result): void {
  for (const key of ['o', 'm', 'l'] as const) {
    const [g, w] = [got[key], want[key]];
    for (let i = 0; i < w.length; i++) {
      const [x, y] = [g[i] as number, w[i] as number];
      if (!Number.isFinite(y)) expect([key, i, x]).toEqual([key, i, y]);
      else expect(Math.abs(x - y), `${key}[${i}]: ${x} vs ${y}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(y)));
    }
  }
}

const cases: [string, Case][] = [
  ['one row, hd 64, 8 heads, n a multiple of 4', { nq: 1, heads: 8, hd: 64, n: 1024 }],
  ['one row, n = 1027 (the last quad reads key n − 1 again)', { nq: 1, heads: 2, hd: 64, n: 1027 }],
  ['one row, n = 3 (every stream but one empty)', { nq: 1, heads: 3, hd: 8, n: 3 }],
  ['one row, hd 12 (not a multiple of 8), padded key stride', { nq: 1, heads: 3, hd: 12, n: 45, stride: 44 }],
  ['one row, hidden keys (count < n) across the four streams', { nq: 1, heads: 2, hd: 16, n: 41, counts: [23] }],
  ['one row, nothing visible', { nq: 1, heads: 2, hd: 16, n: 9, counts: [0] }],
  ['two rows, hd 128', { nq: 2, heads: 4, hd: 128, n: 301 }],
  [
    'three rows (a padding row in the last pair), causal counts',
    { nq: 3, heads: 2, hd: 20, n: 37, counts: [35, 36, 37] },
  ],
  ['four rows, hd 128 (GQA, one token)', { nq: 4, heads: 4, hd: 128, n: 1024 }],
  [
    'five rows, hd 12, padded stride, one row sees nothing',
    { nq: 5, heads: 2, hd: 12, n: 30, counts: [30, 0, 7, 29, 30], stride: 28 },
  ],
];

describe('decode kernel (assembly/decode.ts) against a float64 reference', () => {
  const arena = createArena();
  if (typeof arena === 'string') throw new Error(arena);
  cases.forEach(([name, c], i) => {
    it(name, () => {
      const data = setup(c, 100 + i);
      expectSame(kernel(arena, c, data), reference(c, data));
    });
  });
  // Every n from 1 to 13 for both shapes of pass: quads ending at each offset.
  it('every range length 1 … 13, one row and three rows', () => {
    for (let n = 1; n <= 13; n++) {
      for (const nq of [1, 3]) {
        const c = { nq, heads: 2, hd: 8, n };
        const data = setup(c, n * 7 + nq);
        expectSame(kernel(arena, c, data), reference(c, data));
      }
    }
  });

  describe('NaN and ±∞ behave as the reference (a NaN score poisons its row, hidden keys do not)', () => {
    const poked: [string, Case][] = [
      [
        'NaN in a visible key of head 1 (one row)',
        { nq: 1, heads: 3, hd: 8, n: 21, poke: [['k', 10, 1, 3, Number.NaN]] },
      ],
      [
        'NaN in a hidden key (one row)',
        { nq: 1, heads: 2, hd: 8, n: 21, counts: [12], poke: [['k', 15, 0, 2, Number.NaN]] },
      ],
      [
        '+∞ in a visible key (rows)',
        { nq: 3, heads: 2, hd: 8, n: 21, poke: [['k', 4, 1, 0, Number.POSITIVE_INFINITY]] },
      ],
      [
        'NaN in a key only the later causal rows see',
        { nq: 3, heads: 2, hd: 8, n: 21, counts: [19, 20, 21], poke: [['k', 20, 0, 5, Number.NaN]] },
      ],
      [
        '+∞ in a visible value (one row)',
        { nq: 1, heads: 2, hd: 8, n: 17, poke: [['v', 16, 1, 7, Number.POSITIVE_INFINITY]] },
      ],
      [
        'NaN in a hidden value reaches o (0·NaN), rows',
        { nq: 2, heads: 1, hd: 8, n: 9, counts: [5, 9], poke: [['v', 7, 0, 1, Number.NaN]] },
      ],
    ];
    poked.forEach(([name, c], i) => {
      it(name, () => {
        const data = setup(c, 500 + i);
        const want = reference(c, data);
        const hidden = name.includes('a hidden key');
        expect([...want.o, ...want.m, ...want.l].every((x) => Number.isFinite(x))).toBe(hidden);
        expectSame(kernel(arena, c, data), want);
      });
    });
  });
});
