import { createAttention } from 'qkv';
import { describe, expect, it } from 'vitest';
import { generateTokens } from '../../src/model/longtext';
import {
  attentionConfig,
  buildWeights,
  DEFAULT_SETTINGS,
  describeHeads,
  embed,
  embedToken,
  headContributions,
  headGrid,
  rowSums,
  type Settings,
  validateSettings,
  validateTokens,
} from '../../src/model/model';
import { tokenize } from '../../src/model/tokenize';

async function weightsFor(settings: Settings, tokens: string[]) {
  const attn = await createAttention(attentionConfig(settings), buildWeights(settings), { backend: 'cpu' });
  try {
    const out = await attn.run(
      { query: embed(tokens, settings.dModel) },
      { returnWeights: true, capture: ['heads', 'attention'] },
    );
    return out;
  } finally {
    await attn.dispose();
  }
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if ((row[j] as number) > (row[best] as number)) best = j;
  return best;
}

const SENTENCES = [
  'the cat sat on the mat because the cat was tired',
  'attention is all you need',
  'a b c d e f g h i j k l m n o p q r s t u v w x y z',
  'to be or not to be , that is the question',
];
const SHAPES: [number, number][] = [
  [64, 4],
  [32, 2],
  [128, 8],
  [256, 4],
  [16, 2],
];

describe('embeddings', () => {
  it('are deterministic per token and independent of the sentence', () => {
    expect(embedToken('cat', 64)).toEqual(embedToken('cat', 64));
    expect(embedToken('cat', 64)).not.toEqual(embedToken('dog', 64));
    const e = embed(['the', 'cat', 'the'], 64);
    expect(e.shape).toEqual([3, 64]);
    expect(e.data.subarray(0, 64)).toEqual(e.data.subarray(128, 192));
    expect(e.data.subarray(64, 128)).toEqual(embedToken('cat', 64));
  });

  it('leave the position half free and hold ±1 in the token half', () => {
    const e = embedToken('hello', 32);
    expect([...e.subarray(0, 16)].every((v) => v === 0)).toBe(true);
    expect([...e.subarray(16)].every((v) => v === 1 || v === -1)).toBe(true);
  });
});

describe('constructed heads', () => {
  for (const [dModel, numHeads] of SHAPES) {
    for (const causal of [true, false]) {
      it(`"previous token" peaks at key i−1 (dModel ${dModel}, ${numHeads} heads, causal ${causal})`, async () => {
        const settings = { ...DEFAULT_SETTINGS, dModel, numHeads, causal };
        for (const sentence of SENTENCES) {
          const tokens = tokenize(sentence);
          const out = await weightsFor(settings, tokens);
          const grid = headGrid(out.weights!, 0);
          const L = tokens.length;
          for (let i = 1; i < L; i++) {
            const row = grid.data.subarray(i * L, (i + 1) * L);
            expect(argmax(row), `"${sentence}" row ${i}`).toBe(i - 1);
            expect(row[i - 1]).toBeGreaterThan(0.9);
          }
          if (causal) expect(grid.data[0]).toBeCloseTo(1, 6);
        }
      });
    }
  }

  // dModel 16 leaves only 8 token columns: too few for distinct words, and the UI warns.
  for (const [dModel, numHeads] of SHAPES.filter(([d]) => d >= 32)) {
    for (const causal of [true, false]) {
      it(`"same token" peaks on the same word (dModel ${dModel}, ${numHeads} heads, causal ${causal})`, async () => {
        const settings = { ...DEFAULT_SETTINGS, dModel, numHeads, causal };
        for (const sentence of SENTENCES) {
          const tokens = tokenize(sentence);
          const out = await weightsFor(settings, tokens);
          const grid = headGrid(out.weights!, 1);
          const L = tokens.length;
          for (let i = 0; i < L; i++) {
            const row = grid.data.subarray(i * L, (i + 1) * L);
            expect(tokens[argmax(row)], `"${sentence}" row ${i}`).toBe(tokens[i]);
            // Nearly all of the weight lands on occurrences of the same word, spread about evenly
            // (the slowly rotating PE tilts the split a little in narrow models).
            const same = [...row.keys()].filter((j) => tokens[j] === tokens[i] && (!causal || j <= i));
            const total = same.reduce((s, j) => s + (row[j] as number), 0);
            expect(total, `"${sentence}" row ${i}`).toBeGreaterThan(0.9);
            for (const j of same) expect(Math.abs((row[j] as number) - 1 / same.length)).toBeLessThan(0.1);
          }
        }
      });
    }
  }

  it('warns when a head is too narrow to be crisp', () => {
    const heads = describeHeads({ ...DEFAULT_SETTINGS, dModel: 16, numHeads: 4 });
    expect(heads.map((h) => h.kind)).toEqual(['previous', 'same', 'random', 'random']);
    expect(heads[0]?.warning).toMatch(/too narrow/);
    expect(heads[1]?.warning).toMatch(/too few/);
    expect(describeHeads({ ...DEFAULT_SETTINGS, dModel: 16, numHeads: 2 })[0]?.warning).toBeUndefined();
    expect(describeHeads(DEFAULT_SETTINGS)[0]?.warning).toBeUndefined();
  });
});

describe('multi-head bookkeeping', () => {
  it("each head's contribution sums to qkv's ΔE (the attention output)", async () => {
    const settings = { ...DEFAULT_SETTINGS, dModel: 32, numHeads: 4 };
    const tokens = tokenize(SENTENCES[0] as string);
    const out = await weightsFor(settings, tokens);
    const parts = headContributions(out.captured.heads!, buildWeights(settings).wo, 4);
    const attention = out.captured.attention!;
    attention.data.forEach((v, i) => {
      const sum = parts.reduce((s, p) => s + (p.data[i] as number), 0);
      expect(sum).toBeCloseTo(v, 4);
    });
  });

  it('every weights row sums to 1', async () => {
    const out = await weightsFor(DEFAULT_SETTINGS, tokenize('one two three four'));
    for (let h = 0; h < 4; h++) for (const s of rowSums(headGrid(out.weights!, h))) expect(s).toBeCloseTo(1, 5);
  });

  it('the same settings always give the same weights', () => {
    expect(buildWeights(DEFAULT_SETTINGS).wq.data).toEqual(buildWeights(DEFAULT_SETTINGS).wq.data);
    expect(buildWeights(DEFAULT_SETTINGS).wo.data).toEqual(buildWeights(DEFAULT_SETTINGS).wo.data);
  });
});

describe('input checks', () => {
  it('accept the defaults and refuse bad widths and head counts with a reason', () => {
    expect(validateSettings(DEFAULT_SETTINGS)).toBeNull();
    expect(validateSettings({ ...DEFAULT_SETTINGS, dModel: 100000 })).toMatch(/between 8 and 512/);
    expect(validateSettings({ ...DEFAULT_SETTINGS, dModel: 30 })).toMatch(/multiple of 4/);
    expect(validateSettings({ ...DEFAULT_SETTINGS, dModel: Number.NaN })).toMatch(/got nothing/);
    expect(validateSettings({ ...DEFAULT_SETTINGS, dModel: 64, numHeads: 3 })).toMatch(/divisible/);
    expect(validateSettings({ ...DEFAULT_SETTINGS, dModel: 32, numHeads: 32 })).toMatch(/at least 2 columns/);
    expect(validateSettings({ ...DEFAULT_SETTINGS, temperature: 0 })).toMatch(/Temperature/);
  });

  it('explain an empty or too long sentence', () => {
    expect(validateTokens([])).toMatch(/Type a sentence/);
    expect(validateTokens(generateTokens(200))).toMatch(/long-sequence mode/);
    expect(validateTokens(['hi'])).toBeNull();
  });

  it('generated long text is deterministic and exactly as long as asked', () => {
    expect(generateTokens(2048)).toHaveLength(2048);
    expect(generateTokens(50)).toEqual(generateTokens(50));
  });
});
