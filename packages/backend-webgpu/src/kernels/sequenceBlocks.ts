import { Params, type Runtime, type WebGPUTensor } from '../runtime.js';
import { declare, elementwise, perOutput } from './common.js';

/**
 * Packed sequences: the id range of every block of `block` keys, which lets the flash kernel
 * skip a key tile whose ids cannot meet its queries' before staging it.
 * sequenceIds [B, Lk] → ranges [B, ⌈Lk / block⌉, 2] (min, max). One thread per block.
 */
const wgsl = () => `${declare(['Lk: u32', 'nb: u32', 'block: u32', 'n: u32'], ['ids', 'out:rw'])}
${perOutput('p.n')}
  let b = idx / p.nb;
  let j0 = (idx % p.nb) * p.block;
  let j1 = min(j0 + p.block, p.Lk);
  var lo = ids[b * p.Lk + j0];
  var hi = lo;
  for (var j = j0 + 1u; j < j1; j++) {
    let id = ids[b * p.Lk + j];
    lo = min(lo, id);
    hi = max(hi, id);
  }
  out[2u * idx] = lo;
  out[2u * idx + 1u] = hi;
}`;

export function sequenceBlocks(
  rt: Runtime,
  ids: WebGPUTensor,
  batch: number,
  keyLength: number,
  block: number,
): WebGPUTensor {
  const nb = Math.ceil(keyLength / block);
  const params = new Params(4)
    .u(keyLength)
    .u(nb)
    .u(block)
    .u(batch * nb);
  return elementwise(rt, 'sequenceBlocks', wgsl, params, [ids], [batch, nb, 2], batch * nb);
}
