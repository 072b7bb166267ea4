import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  prepareInputs,
  resolveConfig,
  type StepName,
  sinusoidalPositionalEncoding,
  validateWeights,
} from '@qkv/core';

export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/**
 * ALiBi slopes written from the paper's reference code (Press et al. 2021, `get_slopes`):
 *   get_slopes_power_of_2(n): start = 2^(−2^(−(log2 n − 3))), slope_i = start · start^i
 *   n not a power of two: get_slopes_power_of_2(closest lower power of two c), then
 *   get_slopes(2c)[0::2][: n − c].
 * Independent of core's `alibiSlopes`, which the conformance tests check against it.
 */
export function referenceAlibiSlopes(n: number): number[] {
  const powerOf2 = (m: number): number[] => {
    const start = 2 ** -(2 ** -(Math.log2(m) - 3));
    return Array.from({ length: m }, (_, i) => start * start ** i);
  };
  if (Number.isInteger(Math.log2(n))) return powerOf2(n);
  const closest = 2 ** Math.floor(Math.log2(n));
  return [
    ...powerOf2(closest),
    ...referenceAlibiSlopes(2 * closest)
      .filter((_, i) => i % 2 === 0)
      .slice(0, n - closest),
  ];
}

/**
 * RoPE on one head's channels at position p, from RoFormer (Su et al. 2021) eq. 34: the 2D
 * rotation R(p·θ_c) applied to each channel pair, θ_c = base^(−2c/d). `pairs(c)` gives the
 * channel indices of pair c ('half': c, c + d/2; 'interleaved': 2c, 2c + 1).
 */
function ropeInPlace(x: Float64Array, off: number, d: number, p: number, base: number, interleaved: boolean): void {
  for (let c = 0; c < d / 2; c++) {
    const a = interleaved ? off + 2 * c : off + c;
    const b = interleaved ? off + 2 * c + 1 : off + c + d / 2;
    const theta = p * base ** ((-2 * c) / d);
    const [x1, x2] = [x[a] as number, x[b] as number];
    x[a] = x1 * Math.cos(theta) - x2 * Math.sin(theta);
    x[b] = x1 * Math.sin(theta) + x2 * Math.cos(theta);
  }
}

/**
 * A plain float64 implementation of the whole block, written straight from the conventions
 * (GOLDEN-FORMAT.md) and independent of every backend: the yardstick for differential tests.
 * Returns every step by its graph name.
 *
 * The optional features follow their papers / definitions (docs/FEATURES.md), with query i at
 * position i and key j at position j:
 *   learned PE  x = E + table[i]
 *   RoPE        q, k rotated per head after the projections (`ropeInPlace`)
 *   ALiBi       score − m_h·|i − j| (`referenceAlibiSlopes`)
 *   window w    hidden unless i−w < j ≤ i (causal) or |i − j| < w
 *   scoreMod    score = scoreMod(score, b, h, i, j) after ALiBi, before attnMask
 *   maskMod     hidden where maskMod(b, h, i, j) is false
 *   softcap c   score = c·tanh(score / c) right after scaling (Gemma 2)
 *   sinkTokens  keys j < s visible besides the window, unless causal hides them (StreamingLLM)
 *   sequenceIds hidden unless ids[b, i] = ids[b, j] (packed sequences)
 *   sinks       weights = exp(s_j) / (Σ_k exp(s_k) + exp(sink_h)) over visible keys (gpt-oss);
 *               a row with no visible key stays zero
 * and `lse` [B, H, Lq] = the log of each row's softmax denominator, log(Σ_j exp(masked[i, j]) + exp(sink_h)),
 * the sink term only with sinks: −∞ for a query that sees no key (sink_h with sinks).
 */
export function referenceAttention(
  configIn: AttentionConfig,
  weightsIn: AttentionWeights,
  inputsIn: AttentionInputs,
): Record<StepName, RefTensor> & { lse: RefTensor; unbatched: boolean } {
  const config = resolveConfig(configIn);
  const w = validateWeights(config, weightsIn);
  const { shape, feeds, unbatched } = prepareInputs(config, inputsIn);
  const { dModel: D, numHeads: H, numKVHeads: KVH, headDim: hd, scale, causal } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk } = shape;
  const f64 = (n: number) => new Float64Array(n);
  const get = (name: string) => feeds.get(name)?.data ?? null;
  const param = (name: string) => w.get(name)?.data ?? null;

  const input = Float64Array.from(get('input') as Float32Array);
  const table = w.get('positionalEmbedding');
  // Query token (b, i) sits at positionIds[b, i] when given, else at i; self-attention keys too.
  const ids = shape.positionIds;
  const pos = (b: number, i: number) => (ids ? (ids[b * Lq + i] as number) : i);
  const peRow = (p: number): ArrayLike<number> =>
    config.positionalEncoding === 'sinusoidal'
      ? sinusoidalPositionalEncoding(1, D, p).data
      : (table as { data: Float32Array }).data.subarray(p * D, (p + 1) * D);
  const additive = config.positionalEncoding === 'sinusoidal' || (config.positionalEncoding === 'learned' && table);
  // PE as the API returns it: [Lq, dModel] at 0 … Lq−1, or [B, Lq, dModel] at positionIds.
  const pe = additive ? f64((ids ? B : 1) * Lq * D) : null;
  if (pe) for (let r = 0; r < pe.length / D; r++) pe.set(peRow(ids ? pos(Math.floor(r / Lq), r % Lq) : r), r * D);
  const x = Float64Array.from(input, (v, idx) => (pe ? v + (pe[idx % pe.length] as number) : v));
  const kvIn = shape.selfAttention
    ? [x, x]
    : [Float64Array.from(get('key') as Float32Array), Float64Array.from(get('value') as Float32Array)];

  const project = (
    src: ArrayLike<number>,
    rows: number,
    wt: Float32Array,
    b: Float32Array | null,
    nIn: number,
    nOut: number,
  ) => {
    const out = f64(rows * nOut);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < nOut; o++) {
        let s = b ? (b[o] as number) : 0;
        for (let i = 0; i < nIn; i++) s += (src[r * nIn + i] as number) * (wt[i * nOut + o] as number);
        out[r * nOut + o] = s;
      }
    }
    return out;
  };
  const q = project(x, B * Lq, param('wq') as Float32Array, param('bq'), D, H * hd);
  // Cross-attention's key and value inputs have their own widths (keyDim, valueDim).
  const { keyDim: KD, valueDim: VD } = config;
  const k = project(kvIn[0] as Float64Array, B * Lk, param('wk') as Float32Array, param('bk'), KD, KVH * hd);
  const v = project(kvIn[1] as Float64Array, B * Lk, param('wv') as Float32Array, param('bv'), VD, KVH * hd);
  if (config.positionalEncoding === 'rotary') {
    const inter = config.rotaryPairing === 'interleaved';
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < Lq; i++)
        for (let h = 0; h < H; h++)
          ropeInPlace(q, (b * Lq + i) * H * hd + h * hd, hd, pos(b, i), config.rotaryBase, inter);
      // Self-attention keys are the query tokens (Lk = Lq), at the same positions.
      for (let j = 0; j < Lk; j++)
        for (let h = 0; h < KVH; h++)
          ropeInPlace(k, (b * Lk + j) * KVH * hd + h * hd, hd, ids ? pos(b, j) : j, config.rotaryBase, inter);
    }
  }
  const slopes = config.positionalEncoding === 'alibi' ? referenceAlibiSlopes(H) : null;
  const win = config.window;
  const { softcap, sinkTokens } = config;
  const sinks = w.get('sinks')?.data ?? null;
  const seqIds = get('sequenceIds');

  const S = B * H * Lq * Lk;
  const scores = f64(S);
  const scaled = f64(S);
  const masked = f64(S);
  const weights = f64(S);
  const heads = f64(B * Lq * H * hd);
  const lse = f64(B * H * Lq).fill(Number.NEGATIVE_INFINITY);
  const pad = get('keyPaddingMask');
  const am = get('attnMask');
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / KVH));
      for (let i = 0; i < Lq; i++) {
        const row = ((b * H + h) * Lq + i) * Lk;
        for (let j = 0; j < Lk; j++) {
          let s = 0;
          for (let c = 0; c < hd; c++)
            s +=
              (q[(b * Lq + i) * H * hd + h * hd + c] as number) * (k[(b * Lk + j) * KVH * hd + kvh * hd + c] as number);
          scores[row + j] = s;
          scaled[row + j] = s * scale;
          const sinkToken = sinkTokens !== null && j < sinkTokens;
          const outsideWindow = win !== null && (causal ? j <= i - win || j > i : Math.abs(i - j) >= win);
          const hidden =
            (causal && j > i + (Lk - Lq)) ||
            (pad !== null && pad[b * Lk + j] !== 0) ||
            (outsideWindow && !sinkToken) ||
            (seqIds !== null && seqIds[b * Lk + j] !== seqIds[b * Lk + i]) ||
            (config.maskMod !== null && !config.maskMod(b, h, i, j));
          let biased = s * scale;
          if (softcap !== null) biased = softcap * Math.tanh(biased / softcap);
          if (slopes) biased -= (slopes[h] as number) * Math.abs(i - j);
          if (config.scoreMod) biased = config.scoreMod(biased, b, h, i, j);
          masked[row + j] = hidden ? Number.NEGATIVE_INFINITY : biased + (am ? (am[i * Lk + j] as number) : 0);
        }
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < Lk; j++) max = Math.max(max, masked[row + j] as number);
        const sink = sinks === null ? null : (sinks[h] as number);
        if (max === Number.NEGATIVE_INFINITY) {
          // Nothing visible: weights stay 0; the denominator is the sink's exp alone, if any.
          if (sink !== null) lse[(b * H + h) * Lq + i] = sink;
          continue;
        }
        if (sink !== null) max = Math.max(max, sink);
        let sum = sink === null ? 0 : Math.exp(sink - max);
        for (let j = 0; j < Lk; j++) sum += Math.exp((masked[row + j] as number) - max);
        lse[(b * H + h) * Lq + i] = max + Math.log(sum);
        for (let j = 0; j < Lk; j++) weights[row + j] = Math.exp((masked[row + j] as number) - max) / sum;
        for (let c = 0; c < hd; c++) {
          let acc = 0;
          for (let j = 0; j < Lk; j++)
            acc += (weights[row + j] as number) * (v[(b * Lk + j) * KVH * hd + kvh * hd + c] as number);
          heads[((b * Lq + i) * H + h) * hd + c] = acc;
        }
      }
    }
  }
  const attention = project(heads, B * Lq, param('wo') as Float32Array, param('bo'), H * hd, D);
  const residual = Float64Array.from(x, (val, idx) => val + (attention[idx] as number));

  // Unbatched calls answer without the batch dim, like the API.
  const bs = (rest: number[]) => (unbatched ? rest : [B, ...rest]);
  return {
    unbatched,
    input: { shape: bs([Lq, D]), data: input },
    positionalEncoding: { shape: ids ? bs([Lq, D]) : [Lq, D], data: pe ?? f64(0) },
    x: { shape: bs([Lq, D]), data: x },
    q: { shape: bs([Lq, H * hd]), data: q },
    k: { shape: bs([Lk, KVH * hd]), data: k },
    v: { shape: bs([Lk, KVH * hd]), data: v },
    scores: { shape: bs([H, Lq, Lk]), data: scores },
    scaled: { shape: bs([H, Lq, Lk]), data: scaled },
    masked: { shape: bs([H, Lq, Lk]), data: masked },
    weights: { shape: bs([H, Lq, Lk]), data: weights },
    lse: { shape: bs([H, Lq]), data: lse },
    heads: { shape: bs([Lq, H * hd]), data: heads },
    attention: { shape: bs([Lq, D]), data: attention },
    residual: { shape: bs([Lq, D]), data: residual },
  };
}
