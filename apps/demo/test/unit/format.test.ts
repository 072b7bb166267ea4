import { describe, expect, it } from 'vitest';
import { formatDiff, formatMs, formatNumber, formatShape, median } from '../../src/model/format';
import { tokenize, tokenLabels } from '../../src/model/tokenize';

describe('tokenize', () => {
  it('splits words and punctuation, lower-cased', () => {
    expect(tokenize('The cat sat, on the mat!')).toEqual(['the', 'cat', 'sat', ',', 'on', 'the', 'mat', '!']);
  });
  it('keeps contractions and numbers whole, and handles other scripts', () => {
    expect(tokenize('Don’t stop at 42 — café naïve')).toEqual(["don't", 'stop', 'at', '42', '—', 'café', 'naïve']);
  });
  it('gives nothing for blank input', () => {
    expect(tokenize('   \n\t ')).toEqual([]);
  });
  it('labels repeated tokens with their position', () => {
    expect(tokenLabels(['the', 'cat', 'the', 'the'])).toEqual(['the', 'cat', 'the·2', 'the·3']);
  });
});

describe('formatting', () => {
  it('numbers', () => {
    expect(formatNumber(Number.NEGATIVE_INFINITY)).toBe('−∞');
    expect(formatNumber(0)).toBe('0');
    expect(formatNumber(0.12345)).toBe('0.123');
    expect(formatNumber(-2.5)).toBe('−2.500');
    expect(formatNumber(1.5e-7)).toBe('1.50e−7');
    expect(formatNumber(Number.NaN)).toBe('NaN');
  });
  it('times and differences', () => {
    expect(formatMs(0.123)).toBe('0.12 ms');
    expect(formatMs(12.34)).toBe('12.3 ms');
    expect(formatMs(1234)).toBe('1234 ms');
    expect(formatMs(12345)).toBe('12.3 s');
    expect(formatDiff(0)).toBe('0 (identical)');
    expect(formatDiff(3.2e-7)).toBe('3.2e−7');
  });
  it('shapes and medians', () => {
    expect(formatShape([9, 64], ['L', 'dModel'])).toBe('[L=9, dModel=64]');
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});
