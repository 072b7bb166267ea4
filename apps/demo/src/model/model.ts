import type { AttentionConfig, AttentionWeights, Tensor } from '@qkv/core';
import { seeded } from './rng';
import { MAX_STEP_TOKENS } from './tokenize';

/**
 * The toy model the demo runs: one attention layer whose weights are either random or built by
 * hand so that a head has a pattern you can name.
 *
 * Layout of the model width (dModel columns), chosen so each constructed head has something clean
 * to read:
 *   columns [0, dModel/2)       "where": E is zero here, so E + PE holds only the positional
 *                               encoding's fast-rotating sin/cos pairs;
 *   columns [dModel/2, dModel)  "what": E holds ±1 per token (from a hash of the token's text);
 *                               the PE's frequencies here are ≤ 1/100, so it is almost constant
 *                               across a sentence and barely disturbs the token identity.
 * A trained model learns such a split on its own; here it is built in so that the heads can be
 * explained in one sentence each.
 */

export type HeadKind = 'previous' | 'same' | 'random';

export interface HeadInfo {
  readonly index: number;
  readonly kind: HeadKind;
  readonly title: string;
  /** One sentence on why the head's heatmap looks the way it does. */
  readonly explanation: string;
  /** Set when the head is too narrow for its construction to be crisp. */
  readonly warning?: string;
}

export interface Settings {
  readonly dModel: number;
  readonly numHeads: number;
  readonly causal: boolean;
  /** Divides the scaled scores: scale = 1 / (temperature · √dk). 1 is the seed's plain √dk. */
  readonly temperature: number;
}

export const DEFAULT_SETTINGS: Settings = { dModel: 64, numHeads: 4, causal: true, temperature: 1 };
export const MAX_DMODEL = 512;
export const MAX_HEADS = 32;
/**
 * Below these widths the constructed heads blur, and the UI says so: the previous-token head needs
 * a few sin/cos pairs to tell neighbours from tokens further away, and the same-token head needs
 * enough ±1 columns that two different words rarely look alike.
 */
export const CRISP_PREVIOUS_DIM = 8;
export const CRISP_SAME_DIM = 16;
/** The scaled-score gap the constructed heads aim for at temperature 1 (e^8 ≈ 3000 : 1). */
const TARGET_MARGIN = 8;

/** Checks settings; returns a message a learner can act on, or null when they are fine. */
export function validateSettings(s: Settings): string | null {
  if (!Number.isInteger(s.dModel) || s.dModel < 8 || s.dModel > MAX_DMODEL || s.dModel % 4 !== 0) {
    return `Model width must be a multiple of 4 between 8 and ${MAX_DMODEL} (half the columns hold position, half hold the token, in sin/cos pairs); got ${Number.isFinite(s.dModel) ? s.dModel : 'nothing'}.`;
  }
  if (!Number.isInteger(s.numHeads) || s.numHeads < 1 || s.numHeads > MAX_HEADS) {
    return `Number of heads must be a whole number between 1 and ${MAX_HEADS}; got ${Number.isFinite(s.numHeads) ? s.numHeads : 'nothing'}.`;
  }
  if (s.dModel % s.numHeads !== 0) {
    return `Each head gets dModel / heads columns, so the model width (${s.dModel}) must be divisible by the number of heads (${s.numHeads}).`;
  }
  if (s.dModel / s.numHeads < 2) {
    return `Each head needs at least 2 columns (dModel / heads = ${s.dModel / s.numHeads}); use fewer heads or a wider model.`;
  }
  if (!Number.isFinite(s.temperature) || s.temperature < 0.05 || s.temperature > 20) {
    return 'Temperature must be between 0.05 and 20.';
  }
  return null;
}

/** Checks a tokenized sentence for the step-by-step view. */
export function validateTokens(tokens: readonly string[]): string | null {
  if (tokens.length === 0) return 'Type a sentence to see attention at work (for example: "the cat sat on the mat").';
  if (tokens.length > MAX_STEP_TOKENS) {
    return `That is ${tokens.length} tokens; the step-by-step grids show at most ${MAX_STEP_TOKENS}. Shorten the sentence, or use the long-sequence mode below for thousands of tokens.`;
  }
  return null;
}

export function headDim(s: Settings): number {
  return s.dModel / s.numHeads;
}

/** The qkv config for the settings: the seed has no biases and adds the positional encoding to E. */
export function attentionConfig(s: Settings): AttentionConfig {
  const dk = headDim(s);
  return {
    dModel: s.dModel,
    numHeads: s.numHeads,
    causal: s.causal,
    bias: false,
    positionalEncoding: 'sinusoidal',
    scale: 1 / (s.temperature * Math.sqrt(dk)),
  };
}

/** E for one token: zero on the "where" half, ±1 on the "what" half, fixed by the token's text. */
export function embedToken(token: string, dModel: number): Float32Array {
  const e = new Float32Array(dModel);
  const random = seeded(`embedding:${token}`);
  // Equal-magnitude entries give every token the same length, so a token's query lines up best
  // with its own key (a dot product of equal-length vectors peaks when they are the same).
  for (let c = dModel / 2; c < dModel; c++) e[c] = random() < 0.5 ? -1 : 1;
  return e;
}

/** E for a sentence: [L, dModel], one row per token. */
export function embed(tokens: readonly string[], dModel: number): Tensor {
  const data = new Float32Array(tokens.length * dModel);
  const cache = new Map<string, Float32Array>();
  tokens.forEach((t, i) => {
    let e = cache.get(t);
    if (!e) {
      e = embedToken(t, dModel);
      cache.set(t, e);
    }
    data.set(e, i * dModel);
  });
  return { shape: [tokens.length, dModel], data };
}

/** Angular frequency of PE column pair p (columns 2p, 2p+1): ω_p = 1 / 10000^(2p/dModel). */
export function peFrequency(p: number, dModel: number): number {
  return 1 / 10000 ** ((2 * p) / dModel);
}

export function headKinds(numHeads: number): HeadKind[] {
  return Array.from({ length: numHeads }, (_, h) => (h === 0 ? 'previous' : h === 1 ? 'same' : 'random'));
}

export function describeHeads(s: Settings): HeadInfo[] {
  const hd = headDim(s);
  const narrowPrevious =
    hd < CRISP_PREVIOUS_DIM
      ? `This head is only ${hd} columns wide, too narrow for a clean pattern (it needs ${CRISP_PREVIOUS_DIM}); use fewer heads or a wider model.`
      : undefined;
  const read = Math.min(hd, s.dModel / 2);
  const narrowSame =
    read < CRISP_SAME_DIM
      ? `This head reads only ${read} token columns, too few to keep every word distinct (it needs ${CRISP_SAME_DIM}); use fewer heads or a wider model.`
      : undefined;
  return headKinds(s.numHeads).map((kind, index) => {
    const base = { index, kind };
    if (kind === 'previous') {
      return {
        ...base,
        title: 'previous token',
        explanation:
          'Built from the positional encoding: Wq turns each sin/cos pair of position i back by one step, so Q_i looks like the encoding of position i−1, and Wk copies the encoding, so Q_i · K_j = Σ cos((i−1−j)·ω) is largest at j = i−1. Each token attends to the one before it (the first token, having none, keeps itself).',
        ...(narrowPrevious ? { warning: narrowPrevious } : {}),
      };
    }
    if (kind === 'same') {
      return {
        ...base,
        title: 'same token',
        explanation:
          'Built from the token embeddings: Wq = Wk read the "what" columns of E, so Q_i · K_j is largest when tokens i and j are the same word. A repeated word splits its attention evenly over all its occurrences; any other word attends to itself.',
        ...(narrowSame ? { warning: narrowSame } : {}),
      };
    }
    return {
      ...base,
      title: 'random',
      explanation:
        'Random Wq, Wk, Wv, like a head before training: its pattern means nothing, which is exactly what an untrained head looks like.',
    };
  });
}

/** Writes a block into a row-major [rows, cols] matrix at (r0, c0). */
function setBlock(m: Float32Array, cols: number, r0: number, c0: number, block: number[][]): void {
  block.forEach((row, r) => {
    row.forEach((v, c) => {
      m[(r0 + r) * cols + c0 + c] = v;
    });
  });
}

function randomFill(
  m: Float32Array,
  cols: number,
  colStart: number,
  colEnd: number,
  amplitude: number,
  label: string,
): void {
  const random = seeded(label);
  const rows = m.length / cols;
  for (let r = 0; r < rows; r++) {
    for (let c = colStart; c < colEnd; c++) m[r * cols + c] = (random() * 2 - 1) * amplitude;
  }
}

/**
 * All four projections for the settings. Head h owns columns [h·dk, (h+1)·dk) of Wq, Wk, Wv and
 * rows [h·dk, (h+1)·dk) of Wo. Row-vector convention, as in the seed: Q = X × Wq.
 */
export function buildWeights(s: Settings): AttentionWeights & { wq: Tensor; wk: Tensor; wv: Tensor; wo: Tensor } {
  const D = s.dModel;
  const H = s.numHeads;
  const dk = headDim(s);
  const width = H * dk;
  const wq = new Float32Array(D * width);
  const wk = new Float32Array(D * width);
  const wv = new Float32Array(D * width);
  const wo = new Float32Array(width * D);
  const tag = `${D}:${H}`;
  headKinds(H).forEach((kind, h) => {
    const c0 = h * dk;
    if (kind === 'previous') {
      // Use the fastest position pairs: they tell neighbours apart best. Pair p maps to head
      // columns (2k, 2k+1). Q gets the pair rotated back by one position:
      //   (sin(iω), cos(iω)) · [[cos ω, sin ω], [−sin ω, cos ω]] = (sin((i−1)ω), cos((i−1)ω)).
      const pairs = Math.min(Math.floor(dk / 2), D / 4);
      let margin = 0;
      for (let p = 0; p < pairs; p++) margin += 1 - Math.cos(peFrequency(p, D));
      // Gain so that, at temperature 1, the right key beats its neighbours by TARGET_MARGIN
      // after scaling: scaled gap = g² · margin / √dk.
      const g = Math.sqrt((TARGET_MARGIN * Math.sqrt(dk)) / margin);
      for (let k = 0; k < pairs; k++) {
        const w = peFrequency(k, D);
        const [c, sn] = [Math.cos(w), Math.sin(w)];
        setBlock(wq, width, 2 * k, c0 + 2 * k, [
          [g * c, g * sn],
          [-g * sn, g * c],
        ]);
        setBlock(wk, width, 2 * k, c0 + 2 * k, [
          [g, 0],
          [0, g],
        ]);
      }
    } else if (kind === 'same') {
      // Read the r slowest "what" columns (the last r): there the PE rotates by at most
      // 1/10000^((dModel−r)/dModel) per token, so it is ≈ (0, 1, 0, 1, …) at every position.
      // Projecting that constant direction out (P = I − ĉĉᵀ) stops it from favouring some keys.
      const r = Math.min(dk, D / 2);
      const first = D - r;
      const cosCols: number[] = [];
      for (let k = 0; k < r; k++) if ((first + k) % 2 === 1) cosCols.push(k);
      const inv = 1 / cosCols.length;
      // Self score ≈ r − 1 (E is ±1), unrelated tokens ≈ 0 ± √r; random ±1 codes can still agree
      // on most columns, so aim for three times the usual gap against an unrelated token.
      const g = Math.sqrt((3 * TARGET_MARGIN * Math.sqrt(dk)) / r);
      for (let a = 0; a < r; a++) {
        for (let b = 0; b < r; b++) {
          let p = a === b ? 1 : 0;
          if (cosCols.includes(a) && cosCols.includes(b)) p -= inv;
          wq[(first + a) * width + c0 + b] = g * p;
          wk[(first + a) * width + c0 + b] = g * p;
        }
      }
    } else {
      // Random heads get a gain too: at 1/√dModel their scores would be nearly uniform.
      const amp = 2.5 / Math.sqrt(D);
      randomFill(wq, width, c0, c0 + dk, amp, `wq:${tag}:${h}`);
      randomFill(wk, width, c0, c0 + dk, amp, `wk:${tag}:${h}`);
    }
    randomFill(wv, width, c0, c0 + dk, Math.sqrt(3 / D), `wv:${tag}:${h}`);
  });
  // Wo maps every head's dk-wide output back to dModel; small, so E' stays close to E + PE.
  randomFill(wo, D, 0, D, Math.sqrt(3 / width) * 0.5, `wo:${tag}`);
  return {
    wq: { shape: [D, width], data: wq },
    wk: { shape: [D, width], data: wk },
    wv: { shape: [D, width], data: wv },
    wo: { shape: [width, D], data: wo },
  };
}

/** Rows [r0, r0 + n) × columns [c0, c0 + m) of a row-major [*, cols] matrix, as a new [n, m] tensor. */
export function slice2d(
  t: { shape: readonly number[]; data: Float32Array },
  r0: number,
  n: number,
  c0: number,
  m: number,
): Tensor {
  const cols = t.shape[t.shape.length - 1] as number;
  const out = new Float32Array(n * m);
  for (let r = 0; r < n; r++) out.set(t.data.subarray((r0 + r) * cols + c0, (r0 + r) * cols + c0 + m), r * m);
  return { shape: [n, m], data: out };
}

/** Head h's [Lq, Lk] grid out of a score-shaped [H, Lq, Lk] tensor. */
export function headGrid(t: { shape: readonly number[]; data: Float32Array }, h: number): Tensor {
  const [, lq, lk] = t.shape.slice(-3) as [number, number, number];
  const size = lq * lk;
  return { shape: [lq, lk], data: t.data.slice(h * size, (h + 1) * size) };
}

/**
 * Each head's share of ΔE: heads[:, h·dk:(h+1)·dk] × Wo[h·dk:(h+1)·dk, :], each [L, dModel].
 * Their sum is qkv's `attention` output — the seed's ΔE(1) + … + ΔE(H).
 */
export function headContributions(heads: Tensor, wo: Tensor, numHeads: number): Tensor[] {
  const [L, width] = heads.shape.slice(-2) as [number, number];
  const D = wo.shape[1] as number;
  const dk = width / numHeads;
  return Array.from({ length: numHeads }, (_, h) => {
    const out = new Float32Array(L * D);
    for (let i = 0; i < L; i++) {
      for (let c = 0; c < dk; c++) {
        const a = heads.data[i * width + h * dk + c] as number;
        if (a === 0) continue;
        const wrow = (h * dk + c) * D;
        for (let d = 0; d < D; d++) out[i * D + d] = (out[i * D + d] as number) + a * (wo.data[wrow + d] as number);
      }
    }
    return { shape: [L, D], data: out };
  });
}

/** Each row's sum: the softmax promises 1 for every row that sees at least one key. */
export function rowSums(grid: Tensor): number[] {
  const [rows, cols] = grid.shape as [number, number];
  return Array.from({ length: rows }, (_, r) => {
    let s = 0;
    for (let c = 0; c < cols; c++) s += grid.data[r * cols + c] as number;
    return s;
  });
}
