import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compareArrays, GOLDEN_CASES, goldenToApi, loadGoldenCase, referenceAttention } from '../src/index.js';

describe('golden files', () => {
  it('the case list names exactly the files in golden/', () => {
    const files = readdirSync(new URL('../golden/', import.meta.url))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.replace(/\.json$/, ''));
    expect([...GOLDEN_CASES].sort()).toEqual(files.sort());
  });

  // The float64 reference is the yardstick of the differential tests, so it must itself
  // reproduce PyTorch's numbers on every golden case.
  for (const name of GOLDEN_CASES) {
    it(`the float64 reference reproduces ${name}`, async () => {
      const c = await loadGoldenCase(name);
      const { config, weights, inputs } = goldenToApi(c);
      const ref = referenceAttention(config, weights, inputs);
      for (const [key, expected] of Object.entries(c.outputs)) {
        const got = ref[key as 'attention'];
        const cmp = compareArrays(key, got, expected, c.tolerance);
        expect(cmp.ok, cmp.message).toBe(true);
      }
    });
  }

  it('maps attnMask −1e30 to −Infinity and keeps everything else exact', async () => {
    const c = await loadGoldenCase('mha_attnmask_b1_l6_d16_h2');
    const { inputs } = goldenToApi(c);
    const raw = c.inputs.attnMask?.data ?? [];
    const mapped = inputs.attnMask?.data as Float32Array;
    expect(raw.some((v) => v <= -1e30)).toBe(true);
    raw.forEach((v, i) => {
      expect(mapped[i]).toBe(v <= -1e30 ? Number.NEGATIVE_INFINITY : Math.fround(v));
    });
  });
});

describe('compareArrays', () => {
  it('passes within atol + rtol·|expected| and fails outside it, naming the index', () => {
    const e = { shape: [2, 2], data: [1, 2, 3, 100] };
    expect(compareArrays('t', { shape: [2, 2], data: [1, 2, 3.0001, 100.05] }, e).ok).toBe(true);
    const bad = compareArrays('t', { shape: [2, 2], data: [1, 2, 3.01, 100] }, e);
    expect(bad.ok).toBe(false);
    expect(bad.message).toContain('[1, 0]');
  });
  it('treats equal infinities as equal and NaN only as NaN', () => {
    const inf = Number.NEGATIVE_INFINITY;
    expect(
      compareArrays('t', { shape: [2], data: [inf, Number.NaN] }, { shape: [2], data: [inf, Number.NaN] }).ok,
    ).toBe(true);
    expect(compareArrays('t', { shape: [1], data: [Number.NaN] }, { shape: [1], data: [0] }).ok).toBe(false);
  });
  it('refuses a shape mismatch', () => {
    expect(compareArrays('t', { shape: [4], data: [1, 2, 3, 4] }, { shape: [2, 2], data: [1, 2, 3, 4] }).ok).toBe(
      false,
    );
  });
});
