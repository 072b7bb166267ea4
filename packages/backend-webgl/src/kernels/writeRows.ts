import type { WriteRowsAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
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
