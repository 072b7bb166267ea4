import type { WriteRowsAttrs } from '@qkv/core';

/**
 * KV-cache append, for batches b in [from, to): cache[b, offset + r, :] = rows[b, r, :] for
 * r = 0 … t−1. cache [B, capacity, width] is written in place; rows [B, t, width].
 */
export function writeRows(
  cache: Float32Array,
  rows: Float32Array,
  attrs: WriteRowsAttrs,
  from = 0,
  to = attrs.batch,
): void {
  const { rows: t, capacity, offset, width } = attrs;
  // Past capacity the rows would land in the next batch's cache: never write there.
  if (offset + t > capacity)
    throw new RangeError(`writeRows: rows ${offset} … ${offset + t - 1} do not fit a cache of ${capacity}`);
  for (let b = from; b < to; b++) {
    cache.set(rows.subarray(b * t * width, (b + 1) * t * width), (b * capacity + offset) * width);
  }
}
