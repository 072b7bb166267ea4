import { type BackendCreateOptions, describeValue, QkvError } from '@qkv/core';
import { MODES, type WebGLMode } from './device.js';

/** `backendOptions` for `createAttention(…, { backend: 'webgl', backendOptions })`. */
export interface WebGLBackendOptions {
  /** gpu.js mode; default: 'webgl2' in a browser, 'headlessgl' in Node. */
  mode?: WebGLMode;
  /** Lower the texture-size limit below the context's MAX_TEXTURE_SIZE (e.g. to mimic a smaller GPU). */
  maxTextureSize?: number;
  /** Score values per tile of the fused path (default FUSED_TILE_ELEMENTS); smaller = less GPU memory, more passes. */
  fusedTileElements?: number;
}

export const OPTION_KEYS = new Set(['mode', 'maxTextureSize', 'fusedTileElements']);

/**
 * Kernels index in float32 (see kernels/common.ts), exact for integers below 2^24: no tensor may
 * hold more values than that, whatever MAX_TEXTURE_SIZE allows.
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 24;
/** Score rows per fused tile: bounds the fused path's score memory to ~2^21 values per tile. */
export const FUSED_TILE_ELEMENTS = 2 ** 21;

/** The texture gpu.js allocates for n values: near-square (utils.closestSquareDimensions). */
export function textureDims(n: number): [number, number] {
  const sqrt = Math.sqrt(n);
  let high = Math.ceil(sqrt);
  let low = Math.floor(sqrt);
  while (high * low < n) {
    high--;
    low = Math.ceil(n / high);
  }
  return [low, Math.ceil(n / low)];
}

export function fusedTileRows(rows: number, keyLength: number, tileElements = FUSED_TILE_ELEMENTS): number {
  return Math.max(1, Math.min(rows, Math.floor(tileElements / keyLength)));
}

export function resolveOptions(options: BackendCreateOptions | undefined): WebGLBackendOptions {
  const o = (options ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!OPTION_KEYS.has(key)) {
      throw new QkvError(
        'UNKNOWN_OPTION',
        `backendOptions.${key}: not a webgl backend option; expected one of ${[...OPTION_KEYS].join(', ')}`,
      );
    }
  }
  const out: WebGLBackendOptions = {};
  if (o.mode !== undefined) {
    if (!MODES.includes(o.mode as WebGLMode)) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.mode: expected one of ${MODES.map((m) => `"${m}"`).join(', ')}, got ${describeValue(o.mode)}`,
      );
    }
    out.mode = o.mode as WebGLMode;
  }
  for (const key of ['maxTextureSize', 'fusedTileElements'] as const) {
    const v = o[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.${key}: expected a positive integer, got ${describeValue(v)}`,
      );
    }
    out[key] = v;
  }
  return out;
}
