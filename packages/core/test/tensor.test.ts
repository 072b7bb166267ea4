import { describe, expect, it } from 'vitest';
import { maxAbsDiff, QkvError, sizeOf, tensor, toTensor, zeros } from '../src/index.js';

describe('tensor', () => {
  it('infers the shape of nested arrays, row-major', () => {
    const t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect([...t.data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t.data).toBeInstanceOf(Float32Array);
  });
  it('takes flat data with a shape', () => {
    expect(tensor([1, 2, 3, 4], [2, 2]).shape).toEqual([2, 2]);
    expect(tensor(new Float64Array([1, 2])).shape).toEqual([2]);
  });
  it('refuses ragged arrays and length mismatches, naming both sides', () => {
    expect(() => tensor([[1, 2], [3]])).toThrow(/ragged/);
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow('tensor.data: shape [2, 2] needs 4 values, got 3');
  });
  it('zeros and sizeOf', () => {
    expect(zeros([2, 3]).data.length).toBe(6);
    expect(sizeOf([2, 3, 4])).toBe(24);
  });
});

describe('toTensor', () => {
  it('uses Float32Array as is and converts number[] and Float64Array', () => {
    const f = new Float32Array([1, 2]);
    expect(toTensor('x', { shape: [2], data: f }).data).toBe(f);
    expect(toTensor('x', { shape: [2], data: [1, 2] }).data).toEqual(new Float32Array([1, 2]));
    expect(toTensor('x', { shape: [2], data: new Float64Array([1, 2]) }).data).toEqual(new Float32Array([1, 2]));
  });
  it('refuses integer typed arrays unless allowed (masks)', () => {
    expect(() => toTensor('wq', { shape: [2], data: new Int32Array(2) })).toThrow(
      'wq.data: expected Float32Array, Float64Array or number[], got Int32Array(2)',
    );
    expect(toTensor('mask', { shape: [2], data: new Uint8Array([0, 1]) }, { allowIntegerArrays: true }).data).toEqual(
      new Float32Array([0, 1]),
    );
  });
  it('refuses bad shapes with the offending value', () => {
    for (const shape of [[0, 2], [-1], [1.5], 'x']) {
      const err = (() => {
        try {
          toTensor('q', { shape, data: [] });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(QkvError);
      expect((err as QkvError).code).toBe('INVALID_SHAPE');
      expect((err as QkvError).message).toMatch(/^q\.shape: expected/);
    }
  });
  it('refuses non-number entries', () => {
    expect(() => toTensor('k', { shape: [2], data: [1, 'a'] })).toThrow('k.data[1]: expected a number, got "a"');
  });
});

describe('maxAbsDiff', () => {
  it('treats equal infinities as equal', () => {
    expect(maxAbsDiff([Number.NEGATIVE_INFINITY, 1], [Number.NEGATIVE_INFINITY, 1.5])).toBe(0.5);
  });
});
