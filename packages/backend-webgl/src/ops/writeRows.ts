import type { WriteRowsAttrs } from '@qkv/core';
import { QkvError } from '@qkv/core';
import { PACK, texelsPerGroup } from '../packed.js';
import { flatRects, PRELUDE } from '../raw.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { drawValuesT } from './fusedAttention.js';

/**
 * Flat (gpu.js) cache texture ← rows: value n takes rows' value n − uShift. Drawn only over the
 * rectangles of the written values, so every other texel keeps what it held. Uniforms: uShift,
 * uDstW (the cache texture's width).
 */
const WRITE_FLAT = `${PRELUDE}
uniform sampler2D uSrc; uniform vec2 uSrcSize;
uniform float uShift; uniform float uDstW;
void main() {
  float n = floor(gl_FragCoord.y) * uDstW + floor(gl_FragCoord.x);
  gl_FragColor = vec4(flatAt(uSrc, uSrcSize, n - uShift), 0.0, 0.0, 0.0);
}`;

/**
 * KV-cache append in place: rows offset … offset+t−1 of every batch of `cache` ← `rows`.
 * cache [B, capacity, width], rows [B, t, width]; returns `cache` (the handle core holds).
 * Every form the cache holds is drawn into over just the written texels (a shader may write a
 * texture it does not read, and `rows` is another texture): the flat texture, the packed copy
 * and fused attention's transposed v (its texel columns holding keys offset … offset+t−1), so a
 * step costs O(t·width), not O(capacity), and no form goes stale. Everything that can throw
 * (the arguments, unpacking `rows`, compiling the programs) runs before the first draw, so a
 * failed write leaves the cache as it was. A ring's write at its ring row is the same call.
 */
export function writeRows(ctx: Textures, cache: WebGLTensor, rows: WebGLTensor, attrs: WriteRowsAttrs): WebGLTensor {
  const { batch: B, rows: t, capacity, width, offset } = attrs;
  if (!Number.isInteger(offset) || offset < 0 || offset + t > capacity) {
    throw new QkvError(
      'LIMIT_EXCEEDED',
      `webgl backend: writeRows of rows ${offset} … ${offset + t - 1} does not fit a cache of ${capacity} rows`,
    );
  }
  if (cache.disposed || rows.disposed) {
    throw new QkvError('DISPOSED', 'webgl backend: writeRows on a tensor that was disposed');
  }
  ctx.alive();
  if (t === 0) return cache;
  const raw = ctx.device.raw;
  const src = ctx.flat(rows);
  raw.prepare('writeRows.flat', WRITE_FLAT);
  raw.prepare('pack', PACK);
  const { texture, packed, valuesT } = cache;
  // Pass 1: the flat texture (what the gpu.js kernels read).
  if (texture) {
    const target = ctx.flat(cache);
    for (let b = 0; b < B; b++) {
      const n0 = (b * capacity + offset) * width;
      for (const rect of flatRects(n0, n0 + t * width, target.width)) {
        raw.draw(
          'writeRows.flat',
          WRITE_FLAT,
          target,
          { textures: { uSrc: src }, uniforms: { uShift: n0 - b * t * width, uDstW: target.width } },
          rect,
        );
      }
    }
  }
  // Pass 2: the packed copy (what the raw programs read), rows b·capacity + offset … of each batch.
  if (packed) {
    const { layout } = packed;
    const uniforms = { uGW: layout.groupWidth, uGW4: texelsPerGroup(layout), uCols: layout.groupWidth * layout.groups };
    for (let b = 0; b < B; b++) {
      const y0 = b * capacity + offset;
      raw.draw(
        'pack',
        PACK,
        packed.raw,
        { textures: { uSrc: src }, uniforms: { ...uniforms, uRowShift: y0 - b * t } },
        [0, y0, packed.raw.width, t],
      );
    }
  }
  // Pass 3: fused pass 0's transposed v, redrawn from the packed copy over the texel columns
  // (4 keys each) that hold the written keys, all B·KVH·hd rows.
  if (valuesT) {
    if (packed) {
      const x0 = Math.floor(offset / 4);
      const x1 = Math.floor((offset + t - 1) / 4);
      drawValuesT(ctx, packed.raw, valuesT, [x0, 0, x1 - x0 + 1, valuesT.raw.height]);
    } else {
      // Not reachable (vT is drawn from the packed copy, which stays), but never keep it stale.
      raw.deleteTexture(valuesT.raw);
      cache.valuesT = null;
    }
  }
  return cache;
}
