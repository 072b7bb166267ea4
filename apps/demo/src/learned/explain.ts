import type { Tensor } from 'qkv';

/**
 * What the page says about the learned heads on the learner's own sentence, in the seed note's
 * words: which Query looks for which Key, and how the two layers work together. Pure functions of
 * the computed weights, so the unit tests can check the sentences against the numbers.
 */

/** W_a[i, j] of one head of one batch row, from weights [B, H, L, L]. */
export function weightAt(weights: Tensor, head: number, i: number, j: number, b = 0): number {
  const [, H, L, Lk] = weights.shape as [number, number, number, number];
  return weights.data[((b * H + head) * L + i) * Lk + j] as number;
}

/** [L, L]: one head's weights of batch row 0, for the heatmap. */
export function headWeights(weights: Tensor, head: number): Tensor {
  const [, H, L, Lk] = weights.shape as [number, number, number, number];
  if (head < 0 || head >= H) throw new RangeError(`headWeights: head ${head} of ${H}`);
  const start = head * L * Lk;
  return { shape: [L, Lk], data: weights.data.slice(start, start + L * Lk) };
}

/** The key each query attends to most (its row's argmax), per query of row 0. */
export function argmaxKeys(weights: Tensor, head: number): number[] {
  const [, , L, Lk] = weights.shape as [number, number, number, number];
  const out: number[] = [];
  for (let i = 0; i < L; i++) {
    let best = 0;
    for (let j = 1; j < Lk; j++) if (weightAt(weights, head, i, j) > weightAt(weights, head, i, best)) best = j;
    out.push(best);
  }
  return out;
}

export interface InductionExample {
  /** The query: the last token. */
  readonly query: number;
  /** The latest earlier position holding the same token. */
  readonly earlier: number;
  /** The induction target: the position right after `earlier`, whose token the head copies. */
  readonly target: number;
}

/** The last token's induction example, or null when the last token did not occur before. */
export function inductionExample(ids: readonly number[]): InductionExample | null {
  const query = ids.length - 1;
  for (let j = query - 1; j >= 0; j--) {
    if (ids[j] === ids[query]) return j + 1 < query ? { query, earlier: j, target: j + 1 } : null;
  }
  return null;
}

export interface Prediction {
  readonly id: number;
  readonly probability: number;
  /** The word of the sentence with this id, or null when no word of it has the id. */
  readonly word: string | null;
}

/** The `count` most probable next tokens, most probable first. */
export function topPredictions(
  probabilities: Float64Array,
  wordOf: ReadonlyMap<number, string>,
  count = 5,
): Prediction[] {
  return [...probabilities]
    .map((probability, id) => ({ id, probability, word: wordOf.get(id) ?? null }))
    .sort((a, b) => b.probability - a.probability || a.id - b.id)
    .slice(0, count);
}

export function percent(p: number): string {
  return `${(p * 100).toFixed(1)}%`;
}

const q = (word: string) => `“${word}”`;

/**
 * Layer 1, on this sentence (`words[0]` is the start token): "the Query of “potter” looks for the
 * Key of “harry”, …".
 */
export function previousTokenStory(words: readonly string[], layer1: Tensor): string {
  const keys = argmaxKeys(layer1, 0);
  const i = Math.min(words.length - 1, Math.max(2, Math.floor(words.length / 2)));
  // Queries 2 …: the ones whose previous token is a word.
  const onPrevious = keys.filter((j, k) => k >= 2 && j === k - 1).length;
  const w = weightAt(layer1, 0, i, i - 1);
  return (
    `The Query of ${q(words[i] ?? '')} (position ${i}) looks for the Key of the token just before it, ` +
    `${q(words[i - 1] ?? '')} (position ${i - 1}), and gives it ${percent(w)} of its attention. ` +
    `In your sentence ${onPrevious} of the ${Math.max(0, words.length - 2)} words after the first attend most to their previous word. ` +
    'Training shaped Wq and Wk to read the position part of E + Positional Encoding (the words were random, so ' +
    'only positions could tell it where to look): Query(i) aligns with Key(i − 1) whatever the words are. ' +
    'Then ΔE_i = Wa_i ⋅ V carries the previous token into E_i′: after layer 1, every token also says which token came before it.'
  );
}

/** Layer 2 on this sentence, for the last token; a hint when the last token has no earlier copy. */
export function inductionStory(
  words: readonly string[],
  example: InductionExample | null,
  layer1: Tensor,
  layer2: Tensor,
  scaled2: Tensor,
  top: Prediction,
): string {
  const last = words[words.length - 1] ?? '';
  if (!example) {
    return (
      `The last token ${q(last)} does not occur earlier in your sentence (with a word after it), so the induction head has nothing to copy: ` +
      'repeat a word from earlier at the end, e.g. “… harry potter … harry”, or press “Generate a repeat”.'
    );
  }
  const { query, earlier, target } = example;
  const next = words[target] ?? '';
  const w1 = weightAt(layer1, 0, target, earlier);
  const w2 = weightAt(layer2, 0, query, target);
  const onStart = weightAt(layer2, 0, query, 0);
  // The seed's scaled_score of the last token's Query against the target's Key, and against the
  // other words' Keys on average (the start token and the target left out).
  const scoreOf = (j: number) => weightAt(scaled2, 0, query, j);
  const others = Array.from({ length: query }, (_, j) => j).filter((j) => j !== 0 && j !== target);
  const otherMean = others.reduce((a, j) => a + scoreOf(j), 0) / Math.max(1, others.length);
  return (
    `The Query of the last ${q(last)} (position ${query}) matches the Key of ${q(next)} (position ${target}), ` +
    `the token AFTER the earlier ${q(last)} (position ${earlier}): ${percent(w2)} of its attention` +
    (onStart > 0.1
      ? ` (most of the rest, ${percent(onStart)}, rests on ${q(words[0] ?? '')}, where this head parks attention it does not spend on a word). `
      : '. ') +
    `Why ${q(next)} and not the earlier ${q(last)} itself? Layer 1's previous-token head wrote ` +
    `“the token before me was ${last}” into E′ at ${q(next)} (its Query gave ${percent(w1)} to ${q(last)}). ` +
    `Layer 2's Wk learned to read that note and its Wq the current token, so Query(${last}) ⋅ Key(${next}) is high: ` +
    `scaled_score = ${scoreOf(target).toFixed(2)}, against ${otherMean.toFixed(2)} on average for the other words' Keys ` +
    `(high attention ⟶ high alignment of Q_i and K_j). ΔE = Wa ⋅ V then copies ${q(next)} into E″ of the last token` +
    (top.word === next
      ? `, and the model predicts ${q(next)} next (${percent(top.probability)}).`
      : `; here that was not enough: the model's top guess is ${top.word ? q(top.word) : `token #${top.id}`} (${percent(top.probability)}).`)
  );
}
