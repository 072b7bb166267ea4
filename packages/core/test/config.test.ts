import { describe, expect, it } from 'vitest';
import { QkvError, requiredFeatures, resolveConfig } from '../src/index.js';

const err = (f: () => unknown): QkvError => {
  try {
    f();
  } catch (e) {
    if (e instanceof QkvError) return e;
    throw e;
  }
  throw new Error('expected a QkvError');
};

describe('resolveConfig', () => {
  it('bias: true, false or the list of biases present; keyDim/valueDim default to dModel', () => {
    expect(resolveConfig({ dModel: 4, numHeads: 2, bias: false })).toMatchObject({ bias: false, biases: [] });
    expect(resolveConfig({ dModel: 4, numHeads: 2, bias: ['bv', 'bq'] })).toMatchObject({
      bias: false,
      biases: ['bq', 'bv'],
    });
    expect(resolveConfig({ dModel: 4, numHeads: 2, keyDim: 3, valueDim: 7 })).toMatchObject({ keyDim: 3, valueDim: 7 });
    expect(err(() => resolveConfig({ dModel: 4, numHeads: 2, bias: ['bz' as never] })).code).toBe('INVALID_CONFIG');
    expect(err(() => resolveConfig({ dModel: 4, numHeads: 2, bias: ['bq', 'bq'] })).code).toBe('INVALID_CONFIG');
    expect(err(() => resolveConfig({ dModel: 4, numHeads: 2, bias: 1 as never })).code).toBe('INVALID_CONFIG');
    expect(err(() => resolveConfig({ dModel: 4, numHeads: 2, keyDim: 0 })).code).toBe('INVALID_CONFIG');
    expect(err(() => resolveConfig({ dModel: 4, numHeads: 2, keyDim: 3, selfAttention: true })).code).toBe(
      'INVALID_CONFIG',
    );
  });
  it('fills the defaults', () => {
    expect(resolveConfig({ dModel: 16, numHeads: 4 })).toEqual({
      dModel: 16,
      numHeads: 4,
      numKVHeads: 4,
      headDim: 4,
      causal: false,
      bias: true,
      biases: ['bq', 'bk', 'bv', 'bo'],
      keyDim: 16,
      valueDim: 16,
      scale: 0.5,
      positionalEncoding: 'none',
      rotaryPairing: 'half',
      rotaryBase: 10000,
      window: null,
      maskMod: null,
      scoreMod: null,
      selfAttention: undefined,
      softcap: null,
      sinks: false,
      sinkTokens: null,
    });
  });
  it('takes grouped-query, explicit headDim, scale and null as default', () => {
    const c = resolveConfig({
      dModel: 10,
      numHeads: 4,
      numKVHeads: 2,
      headDim: 3,
      scale: null,
      positionalEncoding: null,
    });
    expect([c.numKVHeads, c.headDim, c.scale, c.positionalEncoding]).toEqual([2, 3, 1 / Math.sqrt(3), 'none']);
  });
  it('explains each invalid config', () => {
    expect(err(() => resolveConfig({ dModel: 10, numHeads: 4 })).message).toBe(
      'config.numHeads: must divide dModel (10) when headDim is not given, got 4',
    );
    expect(err(() => resolveConfig({ dModel: 16, numHeads: 4, numKVHeads: 3 })).message).toBe(
      'config.numKVHeads: numHeads (4) must be a multiple of numKVHeads, got 3',
    );
    expect(err(() => resolveConfig({ dModel: 0, numHeads: 1 })).message).toBe(
      'config.dModel: expected a positive integer, got 0',
    );
    expect(err(() => resolveConfig({ dModel: 8.5, numHeads: 1 })).code).toBe('INVALID_CONFIG');
    expect(err(() => resolveConfig({ dModel: 8, numHeads: -2 })).message).toBe(
      'config.numHeads: expected a positive integer, got -2',
    );
    expect(err(() => resolveConfig({ dModel: 8, numHeads: 2, scale: Number.NaN })).message).toMatch(
      /config.scale: expected a finite number/,
    );
    expect(err(() => resolveConfig({ dModel: 8, numHeads: 2, causal: 'yes' as unknown as boolean })).message).toBe(
      'config.causal: expected true or false, got "yes"',
    );
    expect(err(() => resolveConfig({ dModel: 8, numHeads: 2, positionalEncoding: 'rope' as 'none' })).message).toMatch(
      /positionalEncoding: expected one of 'none', 'sinusoidal', 'learned', 'rotary', 'alibi', got "rope"/,
    );
  });
  it('validates the feature options, naming the option, the expectation and the value', () => {
    const base = { dModel: 8, numHeads: 2 };
    const cases: [object, RegExp][] = [
      [{ window: 0 }, /^config.window: expected a positive integer, got 0$/],
      [{ window: 2.5 }, /^config.window: expected a positive integer, got 2.5$/],
      [{ window: '4' }, /^config.window: expected a positive integer, got "4"$/],
      [{ maskMod: true }, /^config.maskMod: expected a function \(b, h, q, k\) => boolean or null, got true$/],
      [{ scoreMod: 3 }, /^config.scoreMod: expected a function \(score, b, h, q, k\) => number or null, got 3$/],
      [
        { dModel: 6, numHeads: 2, positionalEncoding: 'rotary' },
        /^config.positionalEncoding: 'rotary' needs an even headDim \(channels are rotated in pairs\), got headDim 3$/,
      ],
      [
        { positionalEncoding: 'rotary', rotaryPairing: 'neox' },
        /^config.rotaryPairing: expected 'half' \(rotate_half, Llama\/GPT-NeoX\) or 'interleaved' \(GPT-J\), got "neox"$/,
      ],
      [
        { positionalEncoding: 'rotary', rotaryBase: 0 },
        /^config.rotaryBase: expected a finite number greater than 1, got 0$/,
      ],
      [
        { rotaryPairing: 'half' },
        /^config.rotaryPairing: only applies with positionalEncoding 'rotary', got positionalEncoding "none"$/,
      ],
      [
        { positionalEncoding: 'alibi', rotaryBase: 500 },
        /^config.rotaryBase: only applies with positionalEncoding 'rotary', got positionalEncoding "alibi"$/,
      ],
    ];
    for (const [extra, msg] of cases) {
      const e = err(() => resolveConfig({ ...base, ...extra } as never));
      expect(e.code).toBe('INVALID_CONFIG');
      expect(e.message).toMatch(msg);
    }
  });
  it('resolves the feature options and lists the backend features they need', () => {
    const maskMod = () => true;
    const c = resolveConfig({
      dModel: 8,
      numHeads: 2,
      positionalEncoding: 'rotary',
      rotaryPairing: 'interleaved',
      rotaryBase: 500,
      window: 3,
      maskMod,
    });
    expect([c.rotaryPairing, c.rotaryBase, c.window, c.maskMod, c.scoreMod]).toEqual([
      'interleaved',
      500,
      3,
      maskMod,
      null,
    ]);
    expect(requiredFeatures(c)).toEqual(['rotary', 'window', 'maskMod']);
    expect(requiredFeatures(resolveConfig({ dModel: 8, numHeads: 2, positionalEncoding: 'learned' }))).toEqual([]);
    expect(
      requiredFeatures(resolveConfig({ dModel: 8, numHeads: 2, positionalEncoding: 'alibi', scoreMod: (s) => s })),
    ).toEqual(['alibi', 'scoreMod']);
  });
  it('refuses unknown options, listing the valid ones', () => {
    const e = err(() => resolveConfig({ dModel: 8, numHeads: 2, heads: 3 } as never));
    expect(e.code).toBe('UNKNOWN_OPTION');
    expect(e.message).toMatch(/^config: unknown option "heads"; expected one of dModel, numHeads/);
  });
});
