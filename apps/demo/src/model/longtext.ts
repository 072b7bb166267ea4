import { rng } from './rng';

/**
 * Generated text for the long-sequence mode: grammatical-looking nonsense from a small vocabulary,
 * the same for a given length every time, so timings are comparable between runs and backends.
 */
const SUBJECTS = [
  'the cat',
  'a dog',
  'the model',
  'my neighbour',
  'the river',
  'a student',
  'the old clock',
  'every bird',
];
const VERBS = ['watched', 'followed', 'remembered', 'ignored', 'found', 'carried', 'painted', 'answered'];
const OBJECTS = [
  'the moon',
  'a quiet song',
  'the red door',
  'its shadow',
  'the last train',
  'a paper boat',
  'the keys',
  'the map',
];
const TAILS = ['before dawn', 'again', 'with care', 'in the rain', 'for a while', 'without a word', 'at noon', 'twice'];

export function generateTokens(count: number, seed = 2024): string[] {
  const random = rng(seed);
  const pick = (list: readonly string[]) => list[Math.floor(random() * list.length)] as string;
  const tokens: string[] = [];
  while (tokens.length < count) {
    const sentence = `${pick(SUBJECTS)} ${pick(VERBS)} ${pick(OBJECTS)} ${pick(TAILS)} .`;
    for (const t of sentence.split(' ')) {
      if (tokens.length === count) break;
      tokens.push(t);
    }
  }
  return tokens;
}
