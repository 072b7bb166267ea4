import type { FusedAttentionAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import { fusedTileRows } from '../options.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod, headConstants, rowToBHI } from './common.js';
import { lseTileSpec } from './logSumExp.js';
import {
  hiddenLines,
  type MaskVariant,
  MODIFIER_ARGS,
  maskArgs,
  maskInputs,
  maskVariant,
  modifiedScoreLines,
  variantName,
} from './mask.js';
import { normalizeSpec, rowMaxSpec, rowSinks, rowSumSpec, sinkArgs } from './softmax.js';
import { headsIndexLines } from './weightedSum.js';

/*
 * The gpu.js fused path, the fallback of the packed one (packed.ts; the backend uses this only
 * where a packed texture would exceed MAX_TEXTURE_SIZE, e.g. more rows than the limit, which the
 * near-square flat layout still fits): heads [B, Lq, H·hd] from q, k, v and the masks without ever holding the
 * [B, H, Lq, Lk] score tensor. The B·H·Lq score rows are processed in tiles of `tileRows` rows,
 * so GPU memory for scores is O(tileRows · Lk) whatever the sequence length. Per tile:
 *   pass 1  fusedScores: S = scale · q·k, softcap, − ALiBi, + attnMask; −∞ where hidden
 *           (causal, window, padding, another sequence), without the dot product [tileRows, Lk]
 *   pass 2  softmax.rowMax on S (with the sink logits)                     [tileRows]
 *   pass 3  softmax.rowSum on S (with the sink logits)                     [tileRows]
 *   pass 4  softmax.normalize on S → P                                     [tileRows, Lk]
 *   pass 5  fusedOutput: heads rows of this tile = P · V; other rows copy the previous tile's
 *           output (the first tile writes 0 there)                        [B, Lq, H·hd]
 * Besides bounding memory it is two full passes shorter than the unfused chain (scale and mask
 * fold into pass 1). Every tile has the same tileRows (rows past the end are −∞ and ignored), so
 * each pass compiles once per shape (Lk included: unlike the packed path, a session recompiles
 * these per step). k and v may be KV caches [B, keyCapacity, KVH·hd].
 */

/** Pass 1. q [B, Lq, H·hd], k [B, Lk, KVH·hd] (+ masks, ids) → S [tileRows, Lk]; rows from `rowStart`. */
export function fusedScoresSpec(attrs: FusedAttentionAttrs, tileRows: number, v: MaskVariant): KernelSpec {
  const rows = attrs.batch * attrs.numHeads * attrs.queryLength;
  return {
    name: variantName('fusedAttention.scores', v),
    output: tileRows * attrs.keyLength,
    constants: { ...headConstants(attrs), rows },
    source: `function fusedScores(q, k${maskArgs(v)}, ${MODIFIER_ARGS}, factor, rowStart) {
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
  const kBase = (b * this.constants.cap + j) * this.constants.KVH * this.constants.hd + kvh * this.constants.hd;
  let dot = 0.0;
  for (let c = 0; c < this.constants.hd; c++) {
    dot += q[qOff + c] * k[kBase + c];
  }
  ${modifiedScoreLines(v, 'dot * factor')}
  return ms;
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

/**
 * The gpu.js fused path (used where packed textures would not fit MAX_TEXTURE_SIZE): tiles of
 * `tileRows` score rows; per tile: pass 1 masked, scaled scores; passes 2–4 the row softmax
 * (sink logits included); pass 5 this tile's heads rows (the rest copied from the previous
 * tile's output). Hidden keys cost no dot product (pass 1 returns −∞ first), but passes 2–5
 * run over every key: this path is the fallback for tensors the packed one cannot hold.
 */
export function fusedGpuJs(
  ctx: Textures,
  q: WebGLTensor,
  key: WebGLTensor,
  v: WebGLTensor,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: FusedAttentionAttrs,
  ids: WebGLTensor | null,
  lse: { t: WebGLTensor | null } | null = null,
): WebGLTensor {
  const { batch: B, numHeads: H, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
  const rows = B * H * Lq;
  const tileRows = fusedTileRows(rows, Lk, ctx.fusedTileElements);
  const variant = maskVariant(attrs, pad !== null, am !== null, ids !== null);
  const scoreArgs: unknown[] = [ctx.tex(q), ctx.tex(key), ...maskInputs(ctx, pad, am, ids, attrs)];
  const sinks = rowSinks({ sinks: attrs.sinks, queryLength: Lq });
  const headsShape = [B, Lq, H * hd];
  let out: WebGLTensor | null = null;
  try {
    for (let rowStart = 0; rowStart < rows; rowStart += tileRows) {
      // Pass 1: the masked, scaled scores of this tile's rows.
      const s = ctx.run(
        fusedScoresSpec(attrs, tileRows, variant),
        [tileRows, Lk],
        [...scoreArgs, attrs.scale, rowStart],
      );
      const tmp: WebGLTensor[] = [s];
      try {
        // Passes 2–4: the row softmax of the tile.
        const m = ctx.run(
          rowMaxSpec(tileRows, Lk, sinks),
          [tileRows],
          [ctx.tex(s), Number.NEGATIVE_INFINITY, ...sinkArgs(attrs, rowStart)],
        );
        tmp.push(m);
        const l = ctx.run(
          rowSumSpec(tileRows, Lk, sinks),
          [tileRows],
          [ctx.tex(s), ctx.tex(m), ...sinkArgs(attrs, rowStart)],
        );
        tmp.push(l);
        const p = ctx.run(normalizeSpec(tileRows, Lk), [tileRows, Lk], [ctx.tex(s), ctx.tex(m), ctx.tex(l)]);
        tmp.push(p);
        // Pass 5: this tile's heads rows; the rest come from the previous tile's output.
        const prev: WebGLTensor | null = out;
        const args: unknown[] = [ctx.tex(p), ctx.tex(v)];
        if (prev) args.push(ctx.tex(prev));
        args.push(rowStart);
        out = ctx.run(fusedOutputSpec(attrs, tileRows, prev !== null), headsShape, args);
        if (prev) ctx.dispose(prev);
        // returnLse: this tile's rows of lse [B, H, Lq] from m and l; the rest from the last tile's.
        if (lse) {
          const prevLse = lse.t;
          const lseArgs: unknown[] = [ctx.tex(m), ctx.tex(l)];
          if (prevLse) lseArgs.push(ctx.tex(prevLse));
          lseArgs.push(Number.NEGATIVE_INFINITY, rowStart);
          if (sinks) lseArgs.push(Float32Array.from(attrs.sinks as readonly number[]));
          lse.t = ctx.run(lseTileSpec(rows, tileRows, prevLse !== null, sinks), [B, H, Lq], lseArgs);
          if (prevLse) ctx.dispose(prevLse);
        }
      } finally {
        for (const t of tmp) ctx.dispose(t);
      }
    }
  } catch (e) {
    if (out) ctx.dispose(out);
    if (lse?.t) ctx.dispose(lse.t);
    throw e;
  }
  return out as WebGLTensor;
}
