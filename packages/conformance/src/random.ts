import type { AttentionConfig, AttentionInputs, AttentionWeights, Tensor } from '@qkv/core';

/** mulberry32: a tiny seeded PRNG, so every generated case can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-amplitude, amplitude). */
export function randomTensor(shape: number[], random: () => number, amplitude = 1): Tensor {
  let n = 1;
  for (const d of shape) n *= d;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (random() * 2 - 1) * amplitude;
  return { shape, data };
}

/** Weights for a config, scaled like a typical initialisation (1/sqrt(fan-in)). */
export function randomWeights(config: AttentionConfig, random: () => number): AttentionWeights {
  const H = config.numHeads;
  const KVH = config.numKVHeads ?? H;
  const hd = config.headDim ?? config.dModel / H;
  const D = config.dModel;
  const a = 1 / Math.sqrt(D);
  const KD = config.keyDim ?? D;
  const VD = config.valueDim ?? D;
  const w: AttentionWeights = {
    wq: randomTensor([D, H * hd], random, a),
    wk: randomTensor([KD, KVH * hd], random, 1 / Math.sqrt(KD)),
    wv: randomTensor([VD, KVH * hd], random, 1 / Math.sqrt(VD)),
    wo: randomTensor([H * hd, D], random, 1 / Math.sqrt(H * hd)),
  };
  // bias: true/absent = all four, false = none, a list = those (absent ones are zero).
  const has = (name: 'bq' | 'bk' | 'bv' | 'bo') =>
    config.bias === undefined || config.bias === true || (Array.isArray(config.bias) && config.bias.includes(name));
  if (has('bq')) w.bq = randomTensor([H * hd], random, 0.1);
  if (has('bk')) w.bk = randomTensor([KVH * hd], random, 0.1);
  if (has('bv')) w.bv = randomTensor([KVH * hd], random, 0.1);
  if (has('bo')) w.bo = randomTensor([D], random, 0.1);
  return w;
}

/** The knobs of one generated attention case (the fuzzers draw them with fast-check). */
export interface RandomCaseParams {
  numKVHeads: number;
  /** Query heads per KV head: numHeads = numKVHeads · group. */
  group: number;
  headDim: number;
  dModel: number;
  batch: number;
  queryLength: number;
  /** Used for cross-attention only; self-attention has Lk = Lq. */
  keyLength: number;
  cross: boolean;
  causal: boolean;
  bias: boolean;
  /** 'allPaddingRow': batch 0 sees no key at all (its rows must come out as zero weights). */
  padding: 'none' | 'random' | 'allPaddingRow';
  attnMask: 'none' | 'additive' | 'withInfinity';
  scale: number | null;
  /** Inputs are uniform in ±magnitude. */
  magnitude: number;
  dataSeed: number;
  positional?: boolean;
  /** With batch 1: pass [L, dModel] instead of [1, L, dModel]. */
  unbatched?: boolean;
  /** Divide the scale by magnitude² so scores stay O(1) however large the inputs. */
  normaliseScale?: boolean;
  /** Share of attnMask entries set to −∞ with 'withInfinity' (default 0.25). */
  infinityShare?: number;
}

/** Builds the config, weights and inputs of one generated case, deterministically from its params. */
export function randomCase(p: RandomCaseParams): {
  config: AttentionConfig;
  weights: AttentionWeights;
  inputs: AttentionInputs;
} {
  const random = rng(p.dataSeed);
  const Lk = p.cross ? p.keyLength : p.queryLength;
  const m = p.magnitude;
  const unbatched = (p.unbatched ?? false) && p.batch === 1;
  const scale = p.normaliseScale ? (p.scale ?? 1 / Math.sqrt(p.headDim)) / (m * m) : p.scale;
  const config: AttentionConfig = {
    dModel: p.dModel,
    numHeads: p.numKVHeads * p.group,
    numKVHeads: p.numKVHeads,
    headDim: p.headDim,
    causal: p.causal,
    bias: p.bias,
    scale,
    ...(p.positional && !p.cross ? { positionalEncoding: 'sinusoidal' as const } : {}),
  };
  const weights = randomWeights(config, random);
  const lead = unbatched ? [] : [p.batch];
  const inputs: AttentionInputs = { query: randomTensor([...lead, p.queryLength, p.dModel], random, m) };
  if (p.cross) {
    inputs.key = randomTensor([...lead, Lk, p.dModel], random, m);
    inputs.value = randomTensor([...lead, Lk, p.dModel], random, m);
  }
  if (p.padding !== 'none') {
    const data = Float32Array.from({ length: p.batch * Lk }, (_, i) =>
      p.padding === 'allPaddingRow' && i < Lk ? 1 : random() < 0.3 ? 1 : 0,
    );
    inputs.keyPaddingMask = { shape: [...lead, Lk], data };
  }
  if (p.attnMask !== 'none') {
    const am = randomTensor([p.queryLength, Lk], random, 2);
    if (p.attnMask === 'withInfinity') {
      const share = p.infinityShare ?? 0.25;
      for (let i = 0; i < am.data.length; i++) if (random() < share) am.data[i] = Number.NEGATIVE_INFINITY;
    }
    inputs.attnMask = am;
  }
  return { config, weights, inputs };
}
