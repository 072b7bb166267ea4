import { hashString, rng } from '../model/rng';
import { tokenize } from '../model/tokenize';

/**
 * Words → the learned model's token ids. The model was trained on uniformly random ids (see
 * train/train.py): no id means anything to it, it can only copy what it has seen earlier in the
 * same sequence. So any word can be given any id, as long as one word keeps one id within a
 * sentence and two different words never share one. Each word's id comes from a hash of its
 * text (so the same word usually gets the same id in every sentence); a collision with another
 * word of the same sentence moves on to the next free id.
 */

export interface Encoded {
  /** The sentence's words (lower-cased by the demo's tokenizer). */
  readonly words: readonly string[];
  /** One id per word, in [0, vocab). */
  readonly ids: readonly number[];
  /** id → the word of this sentence that has it (for naming the model's prediction). */
  readonly wordOf: ReadonlyMap<number, string>;
}

/** Throws a RangeError when the words need more ids than the model has (check with `checkSentence`). */
export function encodeWords(words: readonly string[], vocab: number): Encoded {
  const idOf = new Map<string, number>();
  const wordOf = new Map<number, string>();
  const ids = words.map((word) => {
    const known = idOf.get(word);
    if (known !== undefined) return known;
    if (wordOf.size === vocab) {
      throw new RangeError(`encodeWords: more than ${vocab} different words; the model has ${vocab} token ids`);
    }
    let id = hashString(word) % vocab;
    while (wordOf.has(id)) id = (id + 1) % vocab;
    idOf.set(word, id);
    wordOf.set(id, word);
    return id;
  });
  return { words, ids, wordOf };
}

export function encodeText(text: string, vocab: number): Encoded {
  return encodeWords(tokenize(text), vocab);
}

/** How the page labels the start token. */
export const START = '⟨start⟩';

/**
 * The sequence the model reads: its start token (id `bos`, position 0), then the words. Training
 * began every sequence with it, so heads with nothing to find can rest their attention there.
 */
export function withStart(e: Encoded, bos: number): Encoded {
  return { words: [START, ...e.words], ids: [bos, ...e.ids], wordOf: new Map([...e.wordOf, [bos, START]]) };
}

/** A message a learner can act on, or null when the sentence fits the model. */
export function checkSentence(words: readonly string[], maxLength: number, vocab: number): string | null {
  if (words.length < 2) return `Type at least two words (got ${words.length}).`;
  if (words.length > maxLength) {
    return `The learned model takes up to ${maxLength} tokens (its positions past that were never trained); this sentence has ${words.length}.`;
  }
  const distinct = new Set(words).size;
  if (distinct > vocab) return `The model has ${vocab} token ids; this sentence has ${distinct} different words.`;
  return null;
}

/** Words for generated sentences: short, distinct, easy to spot when they come back. */
const WORDS = [
  'harry',
  'potter',
  'hermione',
  'granger',
  'ron',
  'weasley',
  'owl',
  'wand',
  'castle',
  'dragon',
  'river',
  'lantern',
  'violin',
  'pepper',
  'orbit',
  'marble',
  'tiger',
  'copper',
  'meadow',
  'puzzle',
  'rocket',
  'saddle',
  'thunder',
  'velvet',
  'walnut',
  'yellow',
  'zebra',
  'anchor',
  'bishop',
  'candle',
  'desert',
  'falcon',
];

/**
 * A sentence with a repeat: `length` random words, then the first `repeat` of them again, the
 * pattern an induction head completes (the model should predict word `repeat` of the first copy
 * next). The same seed gives the same sentence.
 */
export function generateRepeat(seed: number, length = 12, repeat = 6): string[] {
  const random = rng(seed);
  const pool = [...WORDS];
  const words: string[] = [];
  for (let i = 0; i < length && pool.length > 0; i++) {
    words.push(pool.splice(Math.floor(random() * pool.length), 1)[0] as string);
  }
  return [...words, ...words.slice(0, repeat)];
}
