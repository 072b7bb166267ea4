import { rng } from '@qkv/conformance';
import { describe, expect, it } from 'vitest';
import { fusedAttentionWith, STAGE_FLOATS } from '../src/fast/attention.js';
import { bestWasmBuild, buildExports } from '../src/fast/builds.js';
import { layout } from '../src/fast/resident.js';
import { cpuKernels as k } from '../src/index.js';

// The staging kernels (assembly/stage.ts) against plain loops and the packers they replace, and
// fused attention through both of its data paths: operand slabs copied whole (within
// STAGE_FLOATS) and one head row at a time (past it), over strided GQA sources, head widths off
// 4 and 8, padding masks and NaN in V.

const build = bestWasmBuild();
if (build === null) throw new Error('no WebAssembly SIMD in this runtime: these tests need it');
const m = buildExports(build);

/** Deterministic values in [−1, 1), so a failure replays. */
const rand = (n: number, r: () => number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
const up8 = (n: number) => (n + 7) & ~7;

/** Source [rows, ld] of random values, and `floats` floats of output, in the module (garbage-filled). */
function place(src: Float32Array, outFloats: number): { f32: Float32Array; s: number; o: number } {
  const { f32, ptr } = layout(m, [src.length, outFloats]);
  const [s, o] = ptr as [number, number];
  f32.set(src, s >>> 2);
  f32.fill(777, o >>> 2, (o >>> 2) + outFloats);
  return { f32, s, o };
}

// [rows, ld, col0, cols]: one head of hd = cols at column col0 of rows ld wide.
const heads = [
  [1, 1, 0, 1],
  [5, 12, 4, 4],
  [9, 21, 7, 7],
  [17, 40, 20, 20],
  [33, 192, 128, 64],
  [70, 36, 24, 12],
] as const;

describe('stage kernels', () => {
  for (const [rows, ld, col0, cols] of heads) {
    const r = rng(rows * 97 + ld * 7 + cols);
    const src = rand(rows * ld, r);
    const at = (i: number, c: number) => src[i * ld + col0 + c] as number;

    it(`gatherRows: ${rows} rows of ${cols} at column ${col0} of ${ld} → zero-padded [up4, up8]`, () => {
      const ldd = up8(cols);
      const padded = (rows + 3) & ~3;
      const { f32, s, o } = place(src, padded * ldd + 8);
      m.gatherRows(s + col0 * 4, ld, rows, cols, o, ldd, padded);
      const out = f32.subarray(o >>> 2);
      for (let i = 0; i < padded; i++)
        for (let c = 0; c < ldd; c++) expect(out[i * ldd + c]).toBe(i < rows && c < cols ? at(i, c) : 0);
      expect(out[padded * ldd]).toBe(777);
    });

    it(`scatterRows: ${rows} rows of ${cols} into column ${col0} of ${ld}, nothing else written`, () => {
      const lds = up8(cols);
      const rowsSrc = rand(rows * lds, r);
      const { f32, s, o } = place(rowsSrc, rows * ld);
      m.scatterRows(s, lds, rows, cols, o + col0 * 4, ld);
      const out = f32.subarray(o >>> 2);
      for (let i = 0; i < rows; i++)
        for (let c = 0; c < ld; c++) {
          const inHead = c >= col0 && c < col0 + cols;
          expect(out[i * ld + c]).toBe(inHead ? (rowsSrc[i * lds + c - col0] as number) : 777);
        }
    });

    it(`packKeys: Kᵀ of ${rows} × ${cols} from stride ${ld} equals packTransposed`, () => {
      const rp = up8(rows);
      const cp = up8(cols);
      const { f32, s, o } = place(src, 2 * rp * cp);
      const o2 = o + rp * cp * 4;
      m.packKeys(s + col0 * 4, ld, rows, cols, rp, cp, o);
      m.packTransposed(s + col0 * 4, rows, cols, ld, rp, cp, o2);
      expect(Array.from(f32.subarray(o >>> 2, (o >>> 2) + rp * cp))).toEqual(
        Array.from(f32.subarray(o2 >>> 2, (o2 >>> 2) + rp * cp)),
      );
    });

    it(`packValues: V of ${rows} × ${cols} from stride ${ld} into panels of up8(rows) rows, zero-padded`, () => {
      const panelRows = up8(rows) + 8; // more rows than keys: the pad rows must come out zero
      const panels = up8(cols) >> 3;
      const { f32, s, o } = place(src, panels * panelRows * 8);
      expect(m.packValues(s + col0 * 4, ld, rows, cols, panelRows, o)).toBe(0);
      const out = f32.subarray(o >>> 2);
      for (let p = 0; p < panels; p++)
        for (let i = 0; i < panelRows; i++)
          for (let t = 0; t < 8; t++) {
            const c = p * 8 + t;
            expect(out[(p * panelRows + i) * 8 + t]).toBe(i < rows && c < cols ? at(i, c) : 0);
          }
    });
  }

  it('packValues reports NaN and ±∞ in the head it packs, in full and partial panels, and only there', () => {
    for (const [bad, col] of [
      [Number.NaN, 0],
      [Number.POSITIVE_INFINITY, 9],
      [Number.NEGATIVE_INFINITY, 12],
    ] as const) {
      const ld = 30;
      const src = rand(6 * ld, rng(5));
      src[4 * ld + col] = bad;
      const { s, o } = place(src, 2 * 16 * 8);
      // Head [0, 13): the bad value is inside (columns 0 and 9 in the full panel, 12 in the partial one).
      expect(m.packValues(s, ld, 6, 13, 8, o)).toBe(1);
      // Head [16, 29): it is not.
      expect(m.packValues(s + 16 * 4, ld, 6, 13, 8, o)).toBe(0);
    }
  });
});

describe('fusedAttention data paths: slabs (within STAGE_FLOATS) and head rows (past it)', () => {
  // [B, H, KVH, Lq, Lk, hd]: grouped heads (strided K/V of another width than Q), hd off 4 and 8.
  const shapes = [
    [2, 4, 2, 37, 45, 12],
    [1, 6, 3, 70, 66, 7],
    [2, 2, 1, 20, 130, 20],
  ] as const;
  for (const [B, H, KVH, Lq, Lk, hd] of shapes) {
    it(`B${B} H${H}/${KVH} Lq${Lq} Lk${Lk} hd${hd}: both paths, whole and split ranges, pads and NaN in V`, () => {
      expect(Lk * KVH * hd).toBeLessThan(STAGE_FLOATS);
      const r = rng(B + H * 3 + Lq * 5 + Lk * 7 + hd * 11);
      const q = rand(B * Lq * H * hd, r);
      const kk = rand(B * Lk * KVH * hd, r);
      const v = rand(B * Lk * KVH * hd, r);
      // NaN in a padded key of batch 0's KV head 0 (hidden: must not leak), and in a visible key
      // of the last batch's last KV head (its rows come out NaN, as in the reference).
      v[(0 * Lk + 1) * KVH * hd + 2] = Number.NaN;
      v[((B - 1) * Lk + 3) * KVH * hd + (KVH - 1) * hd + hd - 1] = Number.NaN;
      const pad = new Float32Array(B * Lk);
      pad[1] = 1;
      pad[Lk - 2] = 1;
      const rows = B * H * Lq;
      for (const causal of [false, true]) {
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
        const ref = new Float32Array(rows * hd);
        const refLse = new Float32Array(rows);
        k.fusedAttention(q, kk, v, pad, null, ref, attrs, 0, rows, refLse);
        // 1 float: every operand goes head row by head row; the default: every one is a slab.
        for (const stage of [1, STAGE_FLOATS]) {
          const whole = new Float32Array(rows * hd);
          const lse = new Float32Array(rows);
          fusedAttentionWith(m, q, kk, v, pad, null, whole, attrs, 0, rows, lse, stage);
          expectClose(whole, ref, `whole range, stage ${stage}, causal ${causal}`);
          expectClose(lse, refLse, `lse, stage ${stage}, causal ${causal}`);
          // A thread's slices: rows outside each stay untouched (no heads slab copied over them).
          const split = new Float32Array(rows * hd).fill(42);
          const cut = Math.floor(rows / 3) + 1;
          fusedAttentionWith(m, q, kk, v, pad, null, split, attrs, 0, cut, null, stage);
          expect(split[cut * hd]).toBe(42);
          fusedAttentionWith(m, q, kk, v, pad, null, split, attrs, cut, rows, null, stage);
          expectClose(split, ref, `split, stage ${stage}, causal ${causal}`);
        }
      }
    });
  }
});

function expectClose(actual: Float32Array, expected: Float32Array, what: string, atol = 1e-5, rtol = 1e-4): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(e)) {
      if (!Number.isNaN(a)) expect.fail(`${what} [${i}]: fast ${a}, reference NaN`);
      continue;
    }
    if (a === e) continue; // ±∞ (an lse with no visible key) included
    if (Number.isNaN(a) || !(Math.abs(a - e) <= atol + rtol * Math.abs(e)))
      expect.fail(`${what} [${i}]: fast ${a}, reference ${e}`);
  }
}
