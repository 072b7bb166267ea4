import type { LinearAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import { PRELUDE, type RawTexture } from '../raw.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod } from './common.js';

/**
 * x [rows, nIn] · w [nIn, nOut] + bias → [rows, nOut]. The packed program (4 outputs per
 * fragment, vec4 reads) whenever the packed textures fit MAX_TEXTURE_SIZE; the gpu.js kernel
 * otherwise (e.g. more than MAX_TEXTURE_SIZE rows, which the flat near-square layout allows).
 */
export function linear(
  ctx: Textures,
  x: WebGLTensor,
  w: WebGLTensor,
  bias: WebGLTensor | null,
  attrs: LinearAttrs,
): WebGLTensor {
  const { rows, inFeatures: nIn, outFeatures: nOut } = attrs;
  const shape = [...x.shape.slice(0, -1), nOut];
  const nIn4 = Math.ceil(nIn / 4);
  const nOut4 = Math.ceil(nOut / 4);
  if (!(ctx.fits(nIn4, rows) && ctx.fits(nIn4, nOut) && ctx.fits(nOut4, rows))) {
    const args = bias ? [ctx.tex(x), ctx.tex(w), ctx.tex(bias)] : [ctx.tex(x), ctx.tex(w)];
    return ctx.run(linearSpec(attrs, bias !== null), shape, args);
  }
  ctx.alive();
  const xp = ctx.packed(x, { rows, groupWidth: nIn, groups: 1 });
  const wT = weightPacked(ctx, w, nIn, nOut);
  const bp = bias ? ctx.packed(bias, { rows: 1, groupWidth: nOut, groups: 1 }) : null;
  const out = ctx.drawPacked(
    nOut4,
    rows,
    (target) =>
      ctx.device.raw.draw(`linear|${nIn4}|${nOut}|${bias !== null}`, linearSource(nIn4, nOut, bias !== null), target, {
        textures: { uX: xp.raw, uW: wT, ...(bp ? { uB: bp.raw } : {}) },
      }),
    [xp, bp],
  );
  return ctx.packedTensor(shape, { rows, groupWidth: nOut, groups: 1 }, out);
}

/**
 * A weight [nIn, nOut] transposed-packed for the projection (PACK_TRANSPOSED), made once per
 * weight tensor and kept with it (`weightT`): weights are uploaded once and reused every run.
 */
function weightPacked(ctx: Textures, w: WebGLTensor, nIn: number, nOut: number): RawTexture {
  if (w.weightT) return w.weightT;
  const raw = ctx.device.raw.createTexture(Math.ceil(nIn / 4), nOut);
  ctx.device.raw.draw('packTransposed', PACK_TRANSPOSED, raw, {
    textures: { uSrc: ctx.flat(w) },
    uniforms: { uIn: nIn, uOut: nOut },
  });
  w.weightT = raw;
  return raw;
}

/**
 * The gpu.js fallback: out[r, o] = Σ_i x[r, i] · w[i, o] + bias[o], one thread per output element.
 * x [rows, nIn], w [nIn, nOut] (row-vector weights), bias [nOut] | absent → out [rows, nOut].
 * Accumulates in float32 in the order i = 0…nIn−1.
 */
export function linearSpec(attrs: LinearAttrs, hasBias: boolean): KernelSpec {
  const { rows, inFeatures: nIn, outFeatures: nOut } = attrs;
  return {
    name: hasBias ? 'linear' : 'linearNoBias',
    output: rows * nOut,
    constants: { nIn, nOut },
    source: `function linear(x, w${hasBias ? ', bias' : ''}) {
  const t = this.thread.x;
  ${divmod('r', 'o', 't', 'nOut')}
  const xRow = r * this.constants.nIn;
  let acc = 0.0;
  for (let i = 0; i < this.constants.nIn; i++) {
    acc += x[xRow + i] * w[i * this.constants.nOut + o];
  }
  return acc${hasBias ? ' + bias[o]' : ''};
}`,
  };
}

/**
 * w [nIn, nOut] (gpu.js flat) → wT packed [nIn4, nOut]: texel (i4, o) = w[4i4 … 4i4+3, o], zero
 * past nIn. Transposed so the projection's inner loop walks each of its weight rows along
 * memory instead of striding down a column. Uniforms: uIn, uOut.
 */
export const PACK_TRANSPOSED = `${PRELUDE}
uniform sampler2D uSrc; uniform vec2 uSrcSize;
uniform float uIn; uniform float uOut;
void main() {
  float i = 4.0 * floor(gl_FragCoord.x);
  float o = floor(gl_FragCoord.y);
  vec4 v = vec4(0.0);
  if (i < uIn) v.x = flatAt(uSrc, uSrcSize, i * uOut + o);
  if (i + 1.0 < uIn) v.y = flatAt(uSrc, uSrcSize, (i + 1.0) * uOut + o);
  if (i + 2.0 < uIn) v.z = flatAt(uSrc, uSrcSize, (i + 2.0) * uOut + o);
  if (i + 3.0 < uIn) v.w = flatAt(uSrc, uSrcSize, (i + 3.0) * uOut + o);
  gl_FragColor = v;
}`;

/**
 * linear, 4 outputs per fragment: out[r, o] = Σ_i x[r, i] · w[i, o] + bias[o], o = 4o4 … 4o4+3.
 * x packed [nIn4, rows], wT packed [nIn4, nOut] (PACK_TRANSPOSED), bias packed [nOut4, 1] →
 * out packed [nOut4, rows]. Accumulates in float32 in the order i = 0…nIn−1 (as the gpu.js and
 * cpu kernels do); x's zero padding past nIn meets wT's. Outputs past nOut stay 0 (the padding
 * of the packed layout, which consumers rely on).
 */
export function linearSource(nIn4: number, nOut: number, hasBias: boolean): string {
  const outs = ['x', 'y', 'z', 'w'];
  return `${PRELUDE}
#define NIN4 ${nIn4}
#define NOUT ${nOut}.0
uniform sampler2D uX; uniform vec2 uXSize;
uniform sampler2D uW; uniform vec2 uWSize;
${hasBias ? 'uniform sampler2D uB; uniform vec2 uBSize;' : ''}
void main() {
  float o4 = floor(gl_FragCoord.x);
  float xv0 = (floor(gl_FragCoord.y) + 0.5) / uXSize.y;
  float du = 1.0 / uXSize.x;
  float dv = 1.0 / uWSize.y;
  // wT rows 4o4 … 4o4+3, clamped to the last real one (their results are dropped below).
  float w0 = (min(4.0 * o4, NOUT - 1.0) + 0.5) * dv;
  float w1 = (min(4.0 * o4 + 1.0, NOUT - 1.0) + 0.5) * dv;
  float w2 = (min(4.0 * o4 + 2.0, NOUT - 1.0) + 0.5) * dv;
  float w3 = (min(4.0 * o4 + 3.0, NOUT - 1.0) + 0.5) * dv;
  vec4 acc = vec4(0.0);
  for (int i4 = 0; i4 < NIN4; i4++) {
    float u = (float(i4) + 0.5) * du;
    vec4 xv = texture2D(uX, vec2(u, xv0));
    ${[0, 1, 2, 3]
      .map(
        (m) => `vec4 t${m} = texture2D(uW, vec2(u, w${m}));
    acc.${outs[m]} += xv.x * t${m}.x; acc.${outs[m]} += xv.y * t${m}.y; acc.${outs[m]} += xv.z * t${m}.z; acc.${outs[m]} += xv.w * t${m}.w;`,
      )
      .join('\n    ')}
  }
  ${hasBias ? 'acc += texel(uB, uBSize, o4, 0.0);' : ''}
  float o = 4.0 * o4;
  gl_FragColor = vec4(acc.x, o + 1.0 < NOUT ? acc.y : 0.0, o + 2.0 < NOUT ? acc.z : 0.0, o + 3.0 < NOUT ? acc.w : 0.0);
}`;
}

/** What the fused programs compile in; everything else (Lk, offsets, scale) is a uniform. */
