import type { WriteRowsAttrs } from '@qkv/core';
import type { Runtime, WebGPUTensor } from '../runtime.js';

/**
 * KV-cache append on the device: cache[b, offset + r, :] = rows[b, r, :] for r < t, one buffer
 * copy per batch, recorded in order with the kernels around it. cache [B, capacity, width] is
 * written in place and returned; rows [B, t, width].
 */
export function writeRows(rt: Runtime, cache: WebGPUTensor, rows: WebGPUTensor, attrs: WriteRowsAttrs): WebGPUTensor {
  const { batch: B, rows: t, capacity, offset, width } = attrs;
  // Past capacity the rows would land in the next batch's cache: never write there.
  if (offset + t > capacity)
    throw new RangeError(`writeRows: rows ${offset} … ${offset + t - 1} do not fit a cache of ${capacity}`);
  for (let b = 0; b < B; b++)
    rt.copy(rows.buffer, b * t * width, cache.buffer, (b * capacity + offset) * width, t * width);
  return cache;
}
