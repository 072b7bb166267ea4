import { type PositionalEncodingAttrs, sinusoidalPositionalEncoding } from '@qkv/core';
import type { Runtime, WebGPUTensor } from '../runtime.js';

/**
 * PE [Lq, dModel]: core's float64 table, uploaded. WGSL's f32 sin/cos lose accuracy at large
 * arguments (pos up to the session length), and every backend must start from identical PE.
 */
export function positionalEncoding(rt: Runtime, attrs: PositionalEncodingAttrs): WebGPUTensor {
  const pe = sinusoidalPositionalEncoding(attrs.length, attrs.dModel, attrs.offset);
  return rt.upload(pe.shape, pe.data as Float32Array);
}
