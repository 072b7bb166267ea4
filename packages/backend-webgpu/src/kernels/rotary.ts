import { type RotaryAttrs, rotaryTables } from '@qkv/core';
import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';

/**
 * RoPE on x [B, L, heads·hd]: each channel pair (x1, x2) of every head at position
 * p = offset + l turns by p·θ_c,
 *   x1' = x1·cos − x2·sin,  x2' = x2·cos + x1·sin,   θ_c = base^(−2c/hd), c < hd/2;
 * 'half' pairs c with c + hd/2, 'interleaved' 2c with 2c + 1. The cos/sin table [L, hd/2] is
 * computed on the host in float64 (f32 sin/cos of p·θ lose digits at long positions) and
 * uploaded. With explicit positions (positionIds) the table has one row per (b, l): [B·L, hd/2].
 * One thread per pair (core refuses an odd headDim for RoPE).
 */
const wgsl = (
  interleaved: boolean,
  perRow: boolean,
) => `${declare(['n: u32', 'L: u32', 'heads: u32', 'hd: u32'], ['x', 'cosT', 'sinT', 'out:rw'])}
${perOutput('p.n')}
  let half = p.hd / 2u;
  let c = idx % half;
  let t = idx / half;
  let h = t % p.heads;
  let r = t / p.heads;
  let o = r * p.heads * p.hd + h * p.hd;
  let i1 = ${interleaved ? 'o + 2u * c' : 'o + c'};
  let i2 = ${interleaved ? 'o + 2u * c + 1u' : 'o + c + half'};
  let tc = ${perRow ? 'r' : '(r % p.L)'} * half + c;
  let x1 = x[i1];
  let x2 = x[i2];
  out[i1] = x1 * cosT[tc] - x2 * sinT[tc];
  out[i2] = x2 * cosT[tc] + x1 * sinT[tc];
}`;

export function rotary(rt: Runtime, x: WebGPUTensor, attrs: RotaryAttrs): WebGPUTensor {
  const { batch: B, length: L, heads, headDim: hd, pairing, positions } = attrs;
  const half = hd / 2;
  // Table rows: positions offset + l shared by every batch, or positionIds[b·L + l].
  const rows = positions ? positions.length : L;
  const { cos, sin } = rotaryTables(attrs);
  const cosT = rt.upload([rows, half], cos);
  const sinT = rt.upload([rows, half], sin);
  const interleaved = pairing === 'interleaved';
  const params = new Params(4)
    .u(B * L * heads * half)
    .u(L)
    .u(heads)
    .u(hd);
  const perRow = positions !== undefined;
  const key = `rotary:${pairing}${perRow ? ':ids' : ''}`;
  const out = elementwise(rt, key, () => wgsl(interleaved, perRow), params, [x, cosT, sinT], x.shape);
  rt.destroyBuffer(cosT.buffer);
  rt.destroyBuffer(sinT.buffer);
  return out;
}
