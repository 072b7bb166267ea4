import type { Tensor } from '@qkv/core';
import { rng } from '../model/rng';

/**
 * What each learned head does, measured. The test sequences are repeated random ones, as in
 * Olsson et al. (2022): the start token, n distinct random word ids, then the same n again
 * (positions 0, 1 … n, n + 1 … 2n). On them
 *   previous-token score = mean over queries i = 2 … 2n of W_a[i, i − 1]   (the previous token is a word)
 *   induction score      = mean over queries i = n + 1 … 2n of W_a[i, i − n + 1]
 * The induction target of query i (in the second copy) is the token right AFTER the earlier
 * occurrence of token i: that is the key an induction head reads its prediction from.
 */

export interface ScoreSet {
  /** The repeated random sequences, [count][1 + 2n]. */
  readonly sequences: number[][];
  /** n: the length of each half. */
  readonly half: number;
}

export const SCORE_SEED = 2022;
/** How many repeated random sequences the scores average over, and their half length n. */
export const SCORE_COUNT = 32;
export const SCORE_HALF = 16;

/** `count` sequences: `bos`, then `half` distinct random ids in [0, words), then the same again. */
export function repeatedRandomSequences(
  words: number,
  bos: number,
  count = SCORE_COUNT,
  half = SCORE_HALF,
  seed = SCORE_SEED,
): ScoreSet {
  if (half > words) throw new RangeError(`repeatedRandomSequences: half ${half} > words ${words}`);
  const random = rng(seed);
  const sequences: number[][] = [];
  for (let s = 0; s < count; s++) {
    const ids = Array.from({ length: words }, (_, i) => i);
    // Partial Fisher–Yates: the first `half` entries become a uniform random draw without repeats.
    for (let i = 0; i < half; i++) {
      const j = i + Math.floor(random() * (words - i));
      [ids[i], ids[j]] = [ids[j] as number, ids[i] as number];
    }
    const first = ids.slice(0, half);
    sequences.push([bos, ...first, ...first]);
  }
  return { sequences, half };
}

export interface HeadScores {
  readonly previousToken: number;
  readonly induction: number;
}

/**
 * Both scores of one head from per-head weights [B, H, L, L] computed on a `ScoreSet`
 * (L = 1 + 2n), averaged over every sequence of the batch.
 */
export function headScores(weights: Tensor, head: number, half: number): HeadScores {
  const [B, H, Lq, Lk] = weights.shape as [number, number, number, number];
  if (Lq !== 2 * half + 1 || Lk !== Lq || head < 0 || head >= H) {
    throw new RangeError(`headScores: weights ${weights.shape.join('×')} do not fit head ${head}, n ${half}`);
  }
  const w = weights.data;
  const at = (b: number, i: number, j: number) => w[((b * H + head) * Lq + i) * Lk + j] as number;
  let prev = 0;
  let ind = 0;
  for (let b = 0; b < B; b++) {
    for (let i = 2; i < Lq; i++) prev += at(b, i, i - 1);
    for (let i = half + 1; i < Lq; i++) ind += at(b, i, i - half + 1);
  }
  return { previousToken: prev / (B * (Lq - 2)), induction: ind / (B * half) };
}
