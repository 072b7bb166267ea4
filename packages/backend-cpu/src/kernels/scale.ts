import type { ScaleAttrs } from '@qkv/core';

/** out[i] = s[i] · scale for i in [from, to). */
export function scale(s: Float32Array, out: Float32Array, attrs: ScaleAttrs, from = 0, to = s.length): void {
  const f = attrs.scale;
  for (let i = from; i < to; i++) out[i] = (s[i] as number) * f;
}
