import { type PositionalEncodingAttrs, sinusoidalPositionalEncoding } from '@qkv/core';

/** → PE [length, dModel]. Core owns the formula so every backend starts from identical values. */
export function positionalEncoding(attrs: PositionalEncodingAttrs): Float32Array {
  return sinusoidalPositionalEncoding(attrs.length, attrs.dModel, attrs.offset).data;
}
