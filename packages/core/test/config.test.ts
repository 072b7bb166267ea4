import { describe, expect, it } from 'vitest';
import { QkvError, resolveConfig } from '../src/index.js';

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
  it('fills the defaults', () => {
    expect(resolveConfig({ dModel: 16, numHeads: 4 })).toEqual({
      dModel: 16,
      numHeads: 4,
      numKVHeads: 4,
      headDim: 4,
      causal: false,
      bias: true,
      scale: 0.5,
      positionalEncoding: 'none',
      selfAttention: undefined,
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
      /positionalEncoding: expected 'none' or 'sinusoidal', got "rope"/,
    );
  });
  it('refuses unknown options, listing the valid ones', () => {
    const e = err(() => resolveConfig({ dModel: 8, numHeads: 2, heads: 3 } as never));
    expect(e.code).toBe('UNKNOWN_OPTION');
    expect(e.message).toMatch(/^config: unknown option "heads"; expected one of dModel, numHeads/);
  });
});
