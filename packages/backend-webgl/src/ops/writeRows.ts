import type { WriteRowsAttrs } from '@qkv/core';
import { QkvError } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod } from './common.js';

/**
 * KV-cache append: out = cache with rows offset … offset+t−1 of every batch replaced by `rows`.
 * cache [B, capacity, width], rows [B, t, width] → [B, capacity, width].
 * A fragment shader cannot write into a texture it reads, so the backend renders a new texture
 * and swaps it into the cache handle (the handle is what core holds, so "in place" holds for it).
 * `offset` is a runtime argument: one kernel per (B, capacity, width, t), not per step.
 */
export function writeRowsSpec(attrs: WriteRowsAttrs): KernelSpec {
  const { batch: B, rows: t, capacity, width } = attrs;
  return {
    name: 'writeRows',
    output: B * capacity * width,
    constants: { t, capacity, width },
    source: `function writeRows(cache, rows, offset) {
  const n = this.thread.x;
  ${divmod('bc', 'ch', 'n', 'width')}
  ${divmod('b', 'r', 'bc', 'capacity')}
  if (r >= offset && r < offset + this.constants.t) {
    return rows[(b * this.constants.t + r - offset) * this.constants.width + ch];
  }
  return cache[n];
}`,
  };
}

/**
 * KV-cache append (gpu.js). The rows land in a new texture (a shader cannot write the texture it
 * reads) that replaces the cache handle's, so core's handle stays the cache; the stale packed
 * copy goes too. Costs one pass over the cache per step, all on the GPU.
 */
export function writeRows(ctx: Textures, cache: WebGLTensor, rows: WebGLTensor, attrs: WriteRowsAttrs): WebGLTensor {
  const { rows: t, capacity, offset } = attrs;
  if (offset + t > capacity) {
    throw new QkvError(
      'LIMIT_EXCEEDED',
      `webgl backend: writeRows of rows ${offset} … ${offset + t - 1} does not fit a cache of ${capacity} rows`,
    );
  }
  const next = ctx.run(writeRowsSpec(attrs), cache.shape, [ctx.tex(cache), ctx.tex(rows), offset]);
  const old = { texture: cache.texture, packed: cache.packed };
  cache.texture = next.texture;
  cache.packed = null;
  next.texture = null;
  next.disposed = true;
  ctx.live.delete(next);
  old.texture?.delete();
  if (old.packed) ctx.device.raw.deleteTexture(old.packed.raw);
  return cache;
}
