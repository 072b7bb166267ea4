import type { AttentionConfig, AttentionWeights, Tensor } from '@qkv/core';

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
  const w: AttentionWeights = {
    wq: randomTensor([D, H * hd], random, a),
    wk: randomTensor([D, KVH * hd], random, a),
    wv: randomTensor([D, KVH * hd], random, a),
    wo: randomTensor([H * hd, D], random, 1 / Math.sqrt(H * hd)),
  };
  if (config.bias !== false) {
    w.bq = randomTensor([H * hd], random, 0.1);
    w.bk = randomTensor([KVH * hd], random, 0.1);
    w.bv = randomTensor([KVH * hd], random, 0.1);
    w.bo = randomTensor([D], random, 0.1);
  }
  return w;
}
