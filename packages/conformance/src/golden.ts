import type { AttentionConfig, AttentionInputs, AttentionWeights, TensorLike } from '@qkv/core';

/**
 * The golden vectors (PyTorch 1.13.1, float64), copied unchanged from the project's shared
 * conformance folder; `GOLDEN-FORMAT.md` beside this package describes the format.
 */
export const GOLDEN_CASES = [
  'cross_b2_lq4_lk9_d16_h4',
  'cross_kv_distinct_padding_b2_lq6_lk3_d8_h2',
  'gqa_b2_l6_d32_h8_kv2',
  'mha_attnmask_b1_l6_d16_h2',
  'mha_b1_l6_d16_h2',
  'mha_b1_l9_d32_h8',
  'mha_b2_l7_d16_h4',
  'mha_causal_b2_l7_d16_h4',
  'mha_causal_padding_b2_l8_d16_h4',
  'mha_fully_masked_rows_b2_l5_d8_h2',
  'mha_large_scores_b1_l8_d16_h2',
  'mha_len1_b3_l1_d8_h2',
  'mha_long_causal_b1_l256_d64_h4',
  'mha_nobias_b2_l5_d12_h3',
  'mha_padding_b3_l6_d16_h2',
  'mha_posenc_b2_l10_d16_h4',
  'mha_scale_b1_l6_d16_h4',
  'mha_single_head_b1_l5_d8_h1',
  'mqa_b1_l5_d16_h4_kv1',
] as const;
export type GoldenCaseName = (typeof GOLDEN_CASES)[number];

export interface GoldenTensor {
  shape: number[];
  data: number[];
}

export interface GoldenCase {
  name: string;
  description: string;
  reference: string;
  config: Required<Omit<AttentionConfig, 'scale' | 'positionalEncoding'>> & {
    scale: number | null;
    positionalEncoding: 'sinusoidal' | null;
  };
  inputs: Record<'query' | 'key' | 'value', GoldenTensor> &
    Partial<Record<'keyPaddingMask' | 'attnMask', GoldenTensor>>;
  weights: Record<string, GoldenTensor>;
  outputs: Partial<Record<'attention' | 'residual' | 'weights' | 'positionalEncoding', GoldenTensor>>;
  tolerance: { atol: number; rtol: number };
  omittedOutputs?: string[];
  semantics?: string;
  fullyMaskedRows?: [number, number][];
}

const urls: Record<GoldenCaseName, () => URL> = {
  cross_b2_lq4_lk9_d16_h4: () => new URL('../golden/cross_b2_lq4_lk9_d16_h4.json', import.meta.url),
  cross_kv_distinct_padding_b2_lq6_lk3_d8_h2: () =>
    new URL('../golden/cross_kv_distinct_padding_b2_lq6_lk3_d8_h2.json', import.meta.url),
  gqa_b2_l6_d32_h8_kv2: () => new URL('../golden/gqa_b2_l6_d32_h8_kv2.json', import.meta.url),
  mha_attnmask_b1_l6_d16_h2: () => new URL('../golden/mha_attnmask_b1_l6_d16_h2.json', import.meta.url),
  mha_b1_l6_d16_h2: () => new URL('../golden/mha_b1_l6_d16_h2.json', import.meta.url),
  mha_b1_l9_d32_h8: () => new URL('../golden/mha_b1_l9_d32_h8.json', import.meta.url),
  mha_b2_l7_d16_h4: () => new URL('../golden/mha_b2_l7_d16_h4.json', import.meta.url),
  mha_causal_b2_l7_d16_h4: () => new URL('../golden/mha_causal_b2_l7_d16_h4.json', import.meta.url),
  mha_causal_padding_b2_l8_d16_h4: () => new URL('../golden/mha_causal_padding_b2_l8_d16_h4.json', import.meta.url),
  mha_fully_masked_rows_b2_l5_d8_h2: () => new URL('../golden/mha_fully_masked_rows_b2_l5_d8_h2.json', import.meta.url),
  mha_large_scores_b1_l8_d16_h2: () => new URL('../golden/mha_large_scores_b1_l8_d16_h2.json', import.meta.url),
  mha_len1_b3_l1_d8_h2: () => new URL('../golden/mha_len1_b3_l1_d8_h2.json', import.meta.url),
  mha_long_causal_b1_l256_d64_h4: () => new URL('../golden/mha_long_causal_b1_l256_d64_h4.json', import.meta.url),
  mha_nobias_b2_l5_d12_h3: () => new URL('../golden/mha_nobias_b2_l5_d12_h3.json', import.meta.url),
  mha_padding_b3_l6_d16_h2: () => new URL('../golden/mha_padding_b3_l6_d16_h2.json', import.meta.url),
  mha_posenc_b2_l10_d16_h4: () => new URL('../golden/mha_posenc_b2_l10_d16_h4.json', import.meta.url),
  mha_scale_b1_l6_d16_h4: () => new URL('../golden/mha_scale_b1_l6_d16_h4.json', import.meta.url),
  mha_single_head_b1_l5_d8_h1: () => new URL('../golden/mha_single_head_b1_l5_d8_h1.json', import.meta.url),
  mqa_b1_l5_d16_h4_kv1: () => new URL('../golden/mqa_b1_l5_d16_h4_kv1.json', import.meta.url),
};

const cache = new Map<string, Promise<GoldenCase>>();

/** Reads a golden file: from disk in Node, over HTTP in a browser (vite serves the package). */
export function loadGoldenCase(name: GoldenCaseName): Promise<GoldenCase> {
  let p = cache.get(name);
  if (!p) {
    const make = urls[name];
    if (!make) return Promise.reject(new Error(`no golden case named "${name}"`));
    p = readJson(make()) as Promise<GoldenCase>;
    cache.set(name, p);
  }
  return p;
}

export async function readJson(url: URL): Promise<unknown> {
  if (typeof window === 'undefined' && typeof process !== 'undefined' && url.protocol === 'file:') {
    const fsName = 'node:fs/promises';
    const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
    return JSON.parse(await fs.readFile(url, 'utf8'));
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`golden file ${url.href}: HTTP ${res.status}`);
  return res.json();
}

/** JSON cannot hold −∞; the golden files write it as −1e30 in attnMask. */
const MINUS_INFINITY_STANDIN = -1e30;

function toTensorLike(t: GoldenTensor, infinities = false): TensorLike {
  const data = Float32Array.from(t.data, (v) =>
    infinities && v <= MINUS_INFINITY_STANDIN ? Number.NEGATIVE_INFINITY : v,
  );
  return { shape: t.shape, data };
}

/** Maps a case 1:1 onto the public API: config → config, inputs → inputs, weights → weights. */
export function goldenToApi(c: GoldenCase): {
  config: AttentionConfig;
  weights: AttentionWeights;
  inputs: AttentionInputs;
} {
  const inputs: AttentionInputs = {
    query: toTensorLike(c.inputs.query),
    key: toTensorLike(c.inputs.key),
    value: toTensorLike(c.inputs.value),
  };
  if (c.inputs.keyPaddingMask) inputs.keyPaddingMask = toTensorLike(c.inputs.keyPaddingMask);
  if (c.inputs.attnMask) inputs.attnMask = toTensorLike(c.inputs.attnMask, true);
  const weights = Object.fromEntries(
    Object.entries(c.weights).map(([k, v]) => [k, toTensorLike(v)]),
  ) as unknown as AttentionWeights;
  return { config: { ...c.config }, weights, inputs };
}
