import type { FusedAttentionAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import { divmod, headConstants, rowToBHI } from './common.js';
import { hiddenLines, type MaskVariant, maskArgs, modifiedScoreExpr, variantName } from './mask.js';
import { headsIndexLines } from './weightedSum.js';

/*
 * The gpu.js fused path, the fallback of the packed one (packed.ts; the backend uses this only
 * where a packed texture would exceed MAX_TEXTURE_SIZE, e.g. more rows than the limit, which the
 * near-square flat layout still fits): heads [B, Lq, H·hd] from q, k, v and the masks without ever holding the
 * [B, H, Lq, Lk] score tensor. The B·H·Lq score rows are processed in tiles of `tileRows` rows,
 * so GPU memory for scores is O(tileRows · Lk) whatever the sequence length. Per tile:
 *   pass 1  fusedScores: S = scale · q·k (− ALiBi) (+ attnMask), −∞ where hidden (causal,
 *           padding, window)                                               [tileRows, Lk]
 *   pass 2  softmax.rowMax on S                                            [tileRows]
 *   pass 3  softmax.rowSum on S                                            [tileRows]
 *   pass 4  softmax.normalize on S → P                                     [tileRows, Lk]
 *   pass 5  fusedOutput: heads rows of this tile = P · V; other rows copy the previous tile's
 *           output (the first tile writes 0 there)                        [B, Lq, H·hd]
 * Besides bounding memory it is two full passes shorter than the unfused chain (scale and mask
 * fold into pass 1). Every tile has the same tileRows (rows past the end are −∞ and ignored), so
 * each pass compiles once per shape (Lk included: unlike the packed path, a session recompiles
 * these per step). k and v may be KV caches [B, keyCapacity, KVH·hd].
 */

/** Pass 1. q [B, Lq, H·hd], k [B, Lk, KVH·hd] (+ masks) → S [tileRows, Lk]; rows from `rowStart`. */
export function fusedScoresSpec(attrs: FusedAttentionAttrs, tileRows: number, v: MaskVariant): KernelSpec {
  const rows = attrs.batch * attrs.numHeads * attrs.queryLength;
  return {
    name: variantName('fusedAttention.scores', v),
    output: tileRows * attrs.keyLength,
    constants: { ...headConstants(attrs), rows },
    source: `function fusedScores(q, k${maskArgs(v)}, negInf, qPos, win, factor, rowStart) {
  const t = this.thread.x;
  ${divmod('local', 'j', 't', 'Lk')}
  const row = rowStart + local;
  if (row >= this.constants.rows) {
    return negInf;
  }
  ${rowToBHI('row')}
  ${hiddenLines(v)}
  if (hidden > 0.5) {
    return negInf;
  }
  const qOff = (b * this.constants.Lq + i) * this.constants.H * this.constants.hd + h * this.constants.hd;
  const kOff = (b * this.constants.cap + j) * this.constants.KVH * this.constants.hd + kvh * this.constants.hd;
  let dot = 0.0;
  for (let c = 0; c < this.constants.hd; c++) {
    dot += q[qOff + c] * k[kOff + c];
  }
  const sc = dot * factor;
  return ${modifiedScoreExpr(v, 'sc')};
}`,
  };
}

/** Pass 5. P [tileRows, Lk], v [B, Lk, KVH·hd] (, prev [B, Lq, H·hd]) → heads [B, Lq, H·hd]. */
export function fusedOutputSpec(attrs: FusedAttentionAttrs, tileRows: number, hasPrev: boolean): KernelSpec {
  return {
    name: hasPrev ? 'fusedAttention.output+prev' : 'fusedAttention.output',
    output: attrs.batch * attrs.queryLength * attrs.numHeads * attrs.headDim,
    constants: { ...headConstants(attrs), tileRows },
    source: `function fusedOutput(p, v${hasPrev ? ', prev' : ''}, rowStart) {
  const t = this.thread.x;
  ${headsIndexLines()}
  const local = row - rowStart;
  if (local < 0.0 || local >= this.constants.tileRows) {
    return ${hasPrev ? 'prev[t]' : '0.0'};
  }
  const pOff = local * this.constants.Lk;
  let acc = 0.0;
  for (let j = 0; j < this.constants.Lk; j++) {
    acc += p[pOff + j] * v[vBase + j * vStride];
  }
  return acc;
}`,
  };
}
