/**
 * The demo's tokenizer: words (letters, digits, inner apostrophes) and single punctuation marks,
 * lower-cased so that "The" and "the" are the same token — that is what lets the "same token"
 * head find every occurrence. Real models use sub-word tokenizers (BPE); words are easier to read.
 */

/** Longest sentence the step-by-step view draws (every grid is tokens × tokens). */
export const MAX_STEP_TOKENS = 48;

const TOKEN = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]/gu;

export function tokenize(text: string): string[] {
  return (text.normalize('NFC').toLowerCase().match(TOKEN) ?? []).map((t) => t.replace('’', "'"));
}

/**
 * Row/column labels for a token list: repeated tokens get their position so a grid's labels
 * stay unambiguous ("the", "cat", "the·4").
 */
export function tokenLabels(tokens: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return tokens.map((t, i) => {
    const n = seen.get(t) ?? 0;
    seen.set(t, n + 1);
    return n === 0 ? t : `${t}·${i}`;
  });
}
