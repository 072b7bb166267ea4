import type { MaskMod, RotaryPairing, ScoreMod } from './config.js';

/**
 * The op vocabulary: every op's name and the attrs its graph node carries. One op, one name:
 * graph op = kernel name (`Kernels`) = kernel file = kernel test, and `OpAttrs` is the one table
 * that ties an op to its attrs, so the executor's dispatch and the graph builder are typed by op.
 */

/** One op, one name: graph op = kernel name = kernel file = kernel test. */
export type KernelOp =
  | 'positionalEncoding'
  | 'add'
  | 'linear'
  | 'scores'
  | 'scale'
  | 'mask'
  | 'softmax'
  | 'weightedSum'
  | 'rotary'
  | 'writeRows'
  | 'logSumExp';
/** Graph ops: the kernels plus the nodes the executor resolves itself (feeds, params, aliases). */
export type OpName = 'input' | 'param' | 'identity' | KernelOp;

export interface AttentionDims {
  readonly batch: number;
  readonly numHeads: number;
  readonly numKVHeads: number;
  readonly queryLength: number;
  readonly keyLength: number;
  readonly headDim: number;
  /**
   * Rows allocated per batch in k and v when they are a KV cache ([B, maxLength, KVH·hd] of which
   * the first Lk rows are valid): batch b starts at row b·keyCapacity. Absent: Lk (dense).
   */
  readonly keyCapacity?: number;
}

/**
 * Optional score modifiers, shared by `mask` and `fusedAttention`. Every field absent = the base
 * behaviour, so kernels written before them stay correct for configs that do not use them (and
 * a backend only gets them once its `supports()` says yes).
 * Per visible key, in this order:  s = c·tanh(scaled / c)        (softcap)
 *                                  s = s − slope_h·|p − j|        (ALiBi)
 *                                  s = scoreMod(s, b, h, p, j)
 *                                  s = s + attnMask[i, j]
 * and the key is hidden (−∞) when causal/padding hide it, when outside the window, or when
 * maskMod(b, h, p, j) is false; p = queryOffset + i is query row i's position and j the key's
 * position (row j, or shifted in a window session's cache; see `keyPosition`). With
 * sinkTokens s, keys at positions 0 … s−1 are visible besides the window (causal permitting).
 * A `sequenceIds` input [B, Lk] (when given) hides key row j from query row i unless
 * ids[b, j] = ids[b, i + Lk − Lq] (the query's own row: queries are the last Lq key rows).
 */
export interface ScoreModifiers {
  /** Position of query row 0: 0 in run(), the cache length before the step in a session. */
  readonly queryOffset?: number;
  /** Sliding window w: causal → keys p−w+1 … p; otherwise |p − j| < w. */
  readonly window?: number;
  /** ALiBi slope per query head, [H]. */
  readonly alibiSlopes?: readonly number[];
  readonly maskMod?: MaskMod;
  readonly scoreMod?: ScoreMod;
  /** Softcap c: s = c·tanh(s/c), applied first (right after scaling). */
  readonly softcap?: number;
  /** StreamingLLM: key rows 0 … s−1 (positions 0 … s−1) stay visible besides the window. */
  readonly sinkTokens?: number;
  /** A window cache's rows past the sinks: key row j ≥ sinkTokens sits at position j + keyOffset. */
  readonly keyOffset?: number;
  /**
   * A window session's ring cache once it has wrapped (s sink rows, then a ring of size = w + r
   * rows holding the last w + r positions): rows sinkTokens ≤ j < split are the ring's newer
   * segment, at position j + keyOffset + size; rows from split on the older one, at
   * j + keyOffset. `window` is absent then: with r = 0 the step's one query sees every row, with
   * r > 0 core sends an attnMask that hides, by position, what each query must not see (and no
   * causal rule); only what reads key positions (ALiBi, maskMod, scoreMod) needs keyRing.
   */
  readonly keyRing?: { readonly split: number; readonly size: number };
}

/**
 * The position of key row j: row j itself, or past the sink rows of a window cache j + keyOffset
 * (+ keyRing.size in a wrapped ring's newer segment).
 */
export function keyPosition(j: number, mods: Pick<ScoreModifiers, 'sinkTokens' | 'keyOffset' | 'keyRing'>): number {
  if (j < (mods.sinkTokens ?? 0)) return j;
  const ring = mods.keyRing !== undefined && j < mods.keyRing.split ? mods.keyRing.size : 0;
  return j + (mods.keyOffset ?? 0) + ring;
}

export interface PositionalEncodingAttrs {
  readonly kind: 'sinusoidal';
  readonly length: number;
  readonly dModel: number;
  /** First position (non-zero inside a KV-cache session). */
  readonly offset: number;
}
export interface LinearAttrs {
  readonly rows: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
}
export interface ScaleAttrs {
  readonly scale: number;
}
export interface MaskAttrs extends AttentionDims, ScoreModifiers {
  readonly causal: boolean;
}
export interface SoftmaxAttrs {
  readonly rows: number;
  readonly cols: number;
  /**
   * Sink logits [H] (config.sinks): row r belongs to head floor(r / queryLength) mod H, and
   * exp(sinks[h]) joins its denominator: w_j = exp(s_j) / (Σ_k exp(s_k) + exp(sinks[h])).
   */
  readonly sinks?: readonly number[];
  readonly queryLength?: number;
}
/**
 * lse[r] = log(Σ_j exp(s[r, j]) + exp(sinks[h])) over rows [rows, cols] of masked scores, the sink
 * term only with `sinks` (row r's head as in `SoftmaxAttrs`): the log of softmax's denominator, so
 * softmax(s)[r, j] = exp(s[r, j] − lse[r]). An all −∞ row gives −∞ (sinks[h] with sinks).
 */
export type LogSumExpAttrs = SoftmaxAttrs;
export type ScoresAttrs = AttentionDims;
export type WeightedSumAttrs = AttentionDims;
/** scores → scale → mask → softmax → weightedSum in one kernel, never holding [Lq, Lk]. */
export interface FusedAttentionAttrs extends AttentionDims, ScoreModifiers {
  readonly scale: number;
  readonly causal: boolean;
  /** Sink logits [H], as in `SoftmaxAttrs`. */
  readonly sinks?: readonly number[];
}
/**
 * RoPE (Su et al. 2021) on x [B, L, heads·hd], each head's channels rotated in pairs (x1, x2):
 *   x1' = x1·cos(p·θ_c) − x2·sin(p·θ_c),  x2' = x2·cos(p·θ_c) + x1·sin(p·θ_c),
 *   θ_c = base^(−2c/hd), c = 0 … hd/2 − 1, p = offset + row position.
 * 'half' pairs channel c with c + hd/2; 'interleaved' pairs 2c with 2c + 1.
 */
export interface RotaryAttrs {
  readonly batch: number;
  readonly length: number;
  /** Heads in this tensor: H for q, KVH for k. */
  readonly heads: number;
  readonly headDim: number;
  readonly offset: number;
  readonly base: number;
  readonly pairing: RotaryPairing;
  /** Explicit position of every row [B·L] (`positionIds`); absent: offset + row position. */
  readonly positions?: readonly number[];
}
/**
 * Copies rows [B, t, width] into a KV cache [B, maxLength, width] at rows offset … offset+t−1 of
 * every batch, in place, and returns the cache (the one kernel that writes into an input).
 */
export interface WriteRowsAttrs {
  readonly batch: number;
  readonly rows: number;
  readonly capacity: number;
  readonly offset: number;
  readonly width: number;
}

/** Attrs of an `input` node: the learned positional rows also say which positions they are. */
export interface InputAttrs {
  /** 'positionIds': PE rows at explicit positions, gathered by core ([B, Lq, dModel]). */
  readonly kind?: 'learned' | 'positionIds';
  readonly offset?: number;
}
/** Ops whose node carries nothing beyond its inputs. */
export type NoAttrs = Readonly<Record<string, never>>;

/**
 * Every op → the attrs of its node. Plain values, plus number arrays (ALiBi slopes) and the
 * user's own maskMod/scoreMod functions, which JSON drops (`describe()` and the docs show them
 * as present or not).
 */
export interface OpAttrs {
  readonly input: InputAttrs;
  readonly param: NoAttrs;
  readonly identity: NoAttrs;
  readonly positionalEncoding: PositionalEncodingAttrs;
  readonly add: NoAttrs;
  readonly linear: LinearAttrs;
  readonly scores: ScoresAttrs;
  readonly scale: ScaleAttrs;
  readonly mask: MaskAttrs;
  readonly softmax: SoftmaxAttrs;
  readonly weightedSum: WeightedSumAttrs;
  readonly rotary: RotaryAttrs;
  readonly writeRows: WriteRowsAttrs;
  readonly logSumExp: LogSumExpAttrs;
}
export type NodeAttrs = OpAttrs[OpName];
