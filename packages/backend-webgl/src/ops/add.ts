import { sizeOf } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { PackedLayout } from '../packed.js';
import { PRELUDE } from '../raw.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod } from './common.js';

/**
 * a + b, b broadcast over a's leading dims. Packed (ADD) when an input is packed-only (a
 * projection's output: the residual X + ΔE), so the result downloads as packed texels and
 * nothing is unpacked for one addition; the gpu.js kernel otherwise.
 */
export function add(ctx: Textures, a: WebGLTensor, b: WebGLTensor): WebGLTensor {
  const n = sizeOf(a.shape);
  const nB = sizeOf(b.shape);
  const cols = a.shape[a.shape.length - 1] ?? 1;
  const packedIn = (a.texture === null || b.texture === null) && !a.disposed && !b.disposed;
  if (packedIn && cols === b.shape[b.shape.length - 1] && n % nB === 0 && ctx.fits(Math.ceil(cols / 4), n / cols)) {
    ctx.alive();
    const rows = n / cols;
    const layout: PackedLayout = { rows, groupWidth: cols, groups: 1 };
    const ap = ctx.packed(a, layout);
    const bp = ctx.packed(b, { rows: nB / cols, groupWidth: cols, groups: 1 });
    const out = ctx.drawPacked(
      Math.ceil(cols / 4),
      rows,
      (target) =>
        ctx.device.raw.draw('add', ADD, target, {
          textures: { uA: ap.raw, uB: bp.raw },
          uniforms: { uBRows: nB / cols },
        }),
      [ap, bp],
    );
    return ctx.packedTensor(a.shape, layout, out);
  }
  return ctx.run(addSpec(n, nB), a.shape, [ctx.tex(a), ctx.tex(b)]);
}

/**
 * out[t] = a[t] + b[t mod |b|]: b broadcasts over a's leading dims (PE [Lq, dModel] onto
 * E [B, Lq, dModel]; X onto ΔE of the same shape). a [n], b [nB] → out [n].
 */
export function addSpec(n: number, nB: number): KernelSpec {
  return {
    name: 'add',
    output: n,
    constants: { nB },
    source: `function add(a, b) {
  const t = this.thread.x;
  ${divmod('rep', 'tb', 't', 'nB')}
  return a[t] + b[tb];
}`,
  };
}

/**
 * add on packed [cols4, rows] textures: out[r] = a[r] + b[r mod bRows] (b broadcasts over a's
 * leading dims, e.g. the residual X + ΔE, or PE [Lq, dModel] onto [B, Lq, dModel]). Zero
 * padding stays zero. Uniform: uBRows.
 */
export const ADD = `${PRELUDE}
uniform sampler2D uA; uniform vec2 uASize;
uniform sampler2D uB; uniform vec2 uBSize;
uniform float uBRows;
void main() {
  float x = floor(gl_FragCoord.x);
  float r = floor(gl_FragCoord.y);
  float rb = r - floor((r + 0.5) / uBRows) * uBRows;
  gl_FragColor = texel(uA, uASize, x, r) + texel(uB, uBSize, x, rb);
}`;
