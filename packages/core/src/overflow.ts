/**
 * Real magnitudes: finite inputs whose projections, scores or sums would overflow float32 are
 * refused before any backend runs, with `NUMERIC_OVERFLOW` naming the step, batch, head and row.
 * Backends overflow differently (NaN on cpu/workers, clamped or garbage values in GLSL), so the
 * decision is made here, on the host, from the inputs and the weights alone: every backend gets
 * the same answer, and whatever passes runs without any float32 overflow on any of them.
 *
 * The check bounds every value AND every partial sum a kernel may form, in any summation order,
 * by Cauchy–Schwarz (|Σ_{i∈S} a_i·b_i| ≤ ‖a‖·‖b‖), in float64:
 *   x      = E + PE                 |x|        ≤ max_c |e_c + pe_c|, ‖x_r‖     (row r = b, i)
 *   q, k, v per head h              ‖q_{r,h}‖  ≤ ‖x_r‖·‖Wq_h‖_F + ‖bq_h‖       (RoPE keeps norms)
 *   scores (also base-2, pre-scaled) |s|       ≤ ‖q_{r,h}‖·max_j ‖k_{j,g}‖·max(1, |scale|)·log₂e
 *                                                + max |attnMask| + ALiBi
 *   heads  (online-softmax sums)    |acc|      ≤ visible keys · max_j ‖v_{j,g}‖
 *   attention = heads·Wo + bo       |ΔE|       ≤ √(Σ_h max_j ‖v_{j,g(h)}‖²)·max_c ‖Wo_{:,c}‖ + max|bo|
 *   residual  = x + ΔE              |E'|       ≤ max_c |x_c| + that
 * and refuses where a bound passes LIMIT, a quarter of float32's largest value (headroom for
 * rounding and for the softmax's s − max). The bounds are tight when vectors align (as huge
 * activations do) and cost O(B·L·(dModel + H)) per run: row norms plus a few products.
 */
import type { ResolvedConfig } from './config.js';
import { QkvError } from './errors.js';
import type { GraphShape } from './graph.js';
import { alibiSlopes } from './positional.js';
import type { Tensor } from './tensor.js';

/** float32's largest finite value. */
export const FLOAT32_MAX = 3.4028234663852886e38;
/** Where a bound is refused: FLOAT32_MAX / 4. */
export const OVERFLOW_LIMIT = FLOAT32_MAX / 4;

/** Norms of the weights that the bounds need, computed once per handle. */
export interface WeightNorms {
  /** Frobenius norm of each head's columns of wq [H], wk, wv [KVH]. */
  readonly wq: Float64Array;
  readonly wk: Float64Array;
  readonly wv: Float64Array;
  /** L2 norm of each head's slice of bq [H], bk, bv [KVH] (0 when absent). */
  readonly bq: Float64Array;
  readonly bk: Float64Array;
  readonly bv: Float64Array;
  /** Largest column norm of wo, largest |bo|. */
  readonly woColumn: number;
  readonly bo: number;
}

function headNorms(t: Tensor | undefined, heads: number, hd: number): Float64Array {
  const out = new Float64Array(heads);
  if (!t) return out;
  const cols = heads * hd;
  const rows = t.data.length / cols;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = t.data[r * cols + c] as number;
      out[Math.floor(c / hd)] = (out[Math.floor(c / hd)] as number) + v * v;
    }
  }
  for (let h = 0; h < heads; h++) out[h] = Math.sqrt(out[h] as number);
  return out;
}

export function weightNorms(config: ResolvedConfig, weights: ReadonlyMap<string, Tensor>): WeightNorms {
  const { numHeads: H, numKVHeads: KVH, headDim: hd, dModel } = config;
  const wo = weights.get('wo') as Tensor;
  const col = new Float64Array(dModel);
  for (let i = 0; i < wo.data.length; i++) col[i % dModel] = (col[i % dModel] as number) + (wo.data[i] as number) ** 2;
  let bo = 0;
  for (const v of weights.get('bo')?.data ?? []) bo = Math.max(bo, Math.abs(v));
  return {
    wq: headNorms(weights.get('wq'), H, hd),
    wk: headNorms(weights.get('wk'), KVH, hd),
    wv: headNorms(weights.get('wv'), KVH, hd),
    bq: headNorms(weights.get('bq'), H, hd),
    bk: headNorms(weights.get('bk'), KVH, hd),
    bv: headNorms(weights.get('bv'), KVH, hd),
    woColumn: Math.sqrt(Math.max(...col)),
    bo,
  };
}

/**
 * Per row of a [rows, width] array (plus, optionally, a PE [peRows, width] broadcast over it):
 * the L2 norm and the largest |value|, both widened by `peBound` (a bound on a PE not fed here).
 */
function rowStats(
  data: Float32Array,
  width: number,
  pe: Float32Array | null,
  peBound: number,
): { norm: Float64Array; maxAbs: Float64Array } {
  const rows = data.length / width;
  const norm = new Float64Array(rows);
  const maxAbs = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * width;
    let s = 0;
    let m = 0;
    if (pe) {
      const p = (r * width) % pe.length;
      for (let c = 0; c < width; c++) {
        const v = (data[o + c] as number) + (pe[p + c] as number);
        s += v * v;
        const a = Math.abs(v);
        if (a > m) m = a;
      }
    } else {
      // No PE (the usual case): two independent chains, ~2× the single chain's rate; this runs
      // over every row of every run.
      let s1 = 0;
      let m1 = 0;
      let c = 0;
      for (; c + 1 < width; c += 2) {
        const v0 = data[o + c] as number;
        const v1 = data[o + c + 1] as number;
        s += v0 * v0;
        s1 += v1 * v1;
        const a0 = Math.abs(v0);
        const a1 = Math.abs(v1);
        if (a0 > m) m = a0;
        if (a1 > m1) m1 = a1;
      }
      if (c < width) {
        const v = data[o + c] as number;
        s += v * v;
        if (Math.abs(v) > m) m = Math.abs(v);
      }
      s += s1;
      if (m1 > m) m = m1;
    }
    norm[r] = Math.sqrt(s) + peBound;
    maxAbs[r] = m + peBound;
  }
  return { norm, maxAbs };
}

/**
 * The largest key and value norm bound per (b, KV head) of a session's cached tokens, so a step
 * checks its new queries against every key it will see. Updated only by steps that pass.
 */
export interface CachedNorms {
  k: Float64Array;
  v: Float64Array;
}

function refuse(step: string, where: string, what: string, bound: number): never {
  throw new QkvError(
    'NUMERIC_OVERFLOW',
    `${step}: ${where}: ${what} may reach ${bound.toExponential(2)}, past float32's safe range (${OVERFLOW_LIMIT.toExponential(2)} = float32 max / 4); qkv refuses it on every backend instead of returning Infinity/NaN. Scale the inputs down (activations this large usually mean a missing normalisation)`,
  );
}

/**
 * Throws NUMERIC_OVERFLOW for the first (step, batch, head, row), in graph order, whose bound
 * passes the limit. `feeds` are the run's host inputs; `cached` a session's cached-token norms
 * (read and, when the check passes, extended with this step's keys).
 */
export function checkOverflow(
  config: ResolvedConfig,
  norms: WeightNorms,
  feeds: ReadonlyMap<string, Tensor>,
  shape: GraphShape,
  cached?: CachedNorms,
): void {
  const { dModel: D, numHeads: H, numKVHeads: KVH, causal, scale } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk } = shape;
  const group = H / KVH;
  const input = feeds.get('input') as Tensor;
  const fedPE = feeds.get('positionalEncoding')?.data ?? null;
  // Sinusoidal PE computed by the kernel: every pair (sin, cos) has norm 1, so ‖PE_r‖ ≤ √dModel.
  const kernelPE = config.positionalEncoding === 'sinusoidal' && !fedPE ? Math.sqrt(D) : 0;
  const { norm: xNorm, maxAbs: xMax } = rowStats(input.data, D, fedPE, kernelPE);
  const at = (b: number, h: number | null, rowName: string, row: number) =>
    `batch ${b}${h === null ? '' : `, head ${h}`}, ${rowName} ${row}`;
  // X = E + PE is the one sum that may reach float32's largest value itself (E alone is valid input).
  const addsPE = fedPE !== null || kernelPE > 0;
  for (let r = 0; addsPE && r < B * Lq; r++) {
    if ((xMax[r] as number) > FLOAT32_MAX) {
      refuse('x', at(Math.floor(r / Lq), null, 'query row', r % Lq), '|E + PE|', xMax[r] as number);
    }
  }
  // ‖q_{b,i,h}‖ bounds, checked in (b, i, h) order.
  const qNorm = new Float64Array(B * Lq * H);
  for (let r = 0; r < B * Lq; r++) {
    for (let h = 0; h < H; h++) {
      const n = (xNorm[r] as number) * (norms.wq[h] as number) + (norms.bq[h] as number);
      if (n > OVERFLOW_LIMIT) refuse('q', at(Math.floor(r / Lq), h, 'query row', r % Lq), '|X·Wq + bq|', n);
      qNorm[r * H + h] = n;
    }
  }
  // Keys and values: the new rows (self-attention: x; cross: the key/value inputs), then the cache.
  const key = feeds.get('key');
  const value = feeds.get('value');
  const kRows = key ? rowStats(key.data, config.keyDim, null, 0).norm : xNorm;
  const vRows = value ? rowStats(value.data, config.valueDim, null, 0).norm : xNorm;
  const rowsPerBatch = kRows.length / B;
  const kMax = new Float64Array(B * KVH);
  const vMax = new Float64Array(B * KVH);
  if (cached) {
    kMax.set(cached.k);
    vMax.set(cached.v);
  }
  for (const [step, rows, w, bias, maxes, what] of [
    ['k', kRows, norms.wk, norms.bk, kMax, '|X·Wk + bk|'],
    ['v', vRows, norms.wv, norms.bv, vMax, '|X·Wv + bv|'],
  ] as const) {
    for (let r = 0; r < rows.length; r++) {
      const b = Math.floor(r / rowsPerBatch);
      for (let g = 0; g < KVH; g++) {
        const n = (rows[r] as number) * (w[g] as number) + (bias[g] as number);
        if (n > OVERFLOW_LIMIT) refuse(step, at(b, g, 'key row', (cached ? Lk - Lq : 0) + (r % rowsPerBatch)), what, n);
        if (n > (maxes[b * KVH + g] as number)) maxes[b * KVH + g] = n;
      }
    }
  }
  let additive = 0;
  for (const m of feeds.get('attnMask')?.data ?? [])
    if (m > Number.NEGATIVE_INFINITY) additive = Math.max(additive, Math.abs(m));
  if (config.positionalEncoding === 'alibi') additive += Math.max(...alibiSlopes(H)) * Math.max(Lq, Lk);
  // Kernels may scale q before the dot product and work in base 2 (exp2(s·log₂e)).
  const scoreFactor = Math.max(1, Math.abs(scale)) * Math.LOG2E;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const s = (qNorm[(b * Lq + i) * H + h] as number) * (kMax[b * KVH + g] as number) * scoreFactor + additive;
        if (s > OVERFLOW_LIMIT) refuse('scores', at(b, h, 'query row', i), '|Q·Kᵀ · scale| (+ masks)', s);
        // An online softmax sums up to (visible keys) terms of weight ≤ 1 before normalising.
        const visible = causal ? Math.min(Lk, i + 1 + (Lk - Lq)) : Lk;
        const acc = visible * (vMax[b * KVH + g] as number);
        if (acc > OVERFLOW_LIMIT) refuse('heads', at(b, h, 'query row', i), 'Σ_j exp(s_j − max)·V_j', acc);
      }
    }
  }
  for (let b = 0; b < B; b++) {
    let sq = 0;
    for (let h = 0; h < H; h++) sq += (vMax[b * KVH + Math.floor(h / group)] as number) ** 2;
    const out = Math.sqrt(sq) * norms.woColumn + norms.bo;
    if (out > OVERFLOW_LIMIT) refuse('attention', at(b, null, 'query row', 0), '|concat(heads)·Wo + bo|', out);
    for (let i = 0; i < Lq; i++) {
      const res = (xMax[b * Lq + i] as number) + out;
      if (res > OVERFLOW_LIMIT) refuse('residual', at(b, null, 'query row', i), '|X + ΔE|', res);
    }
  }
  if (cached) {
    cached.k.set(kMax);
    cached.v.set(vMax);
  }
}
