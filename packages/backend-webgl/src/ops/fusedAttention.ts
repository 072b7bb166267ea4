import type { FusedAttentionAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import { fusedTileRows } from '../options.js';
import type { PackedLayout } from '../packed.js';
import type { DrawInputs, RawTexture } from '../raw.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod, headConstants, rowToBHI } from './common.js';
import {
  type FusedVariant,
  fusedKey,
  fusedOutputSource,
  fusedProbsSource,
  fusedScoresSource,
  fusedStatsSource,
  STATS_WIDTH,
  transposeValuesSource,
} from './fusedAttention.glsl.js';
import {
  ID_BLOCKS,
  keyUniforms,
  rowQuads,
  rowQuadsVertex,
  SEQ_BLOCK,
  spansSource,
} from './fusedAttention.keys.glsl.js';
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
 * scores → scale → mask → softmax → weighted sum without materialising [B, H, Lq, Lk]: the
 * packed programs where their textures fit MAX_TEXTURE_SIZE, the gpu.js kernels otherwise.
 */
export function fusedAttention(
  ctx: Textures,
  q: WebGLTensor,
  k: WebGLTensor,
  v: WebGLTensor,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: FusedAttentionAttrs,
  ids: WebGLTensor | null,
): WebGLTensor {
  return fusedPacked(ctx, q, k, v, pad, am, attrs, ids) ?? fusedGpuJs(ctx, q, k, v, pad, am, attrs, ids);
}

/**
 * As `fusedAttention`, plus lse [B, H, Lq], through the gpu.js tiles: they keep each tile's row
 * max and sum as textures, from which lse follows (the packed path's stats are not read back).
 */
export function fusedAttentionLse(
  ctx: Textures,
  q: WebGLTensor,
  k: WebGLTensor,
  v: WebGLTensor,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: FusedAttentionAttrs,
  ids: WebGLTensor | null,
): readonly [WebGLTensor, WebGLTensor] {
  const lse: { t: WebGLTensor | null } = { t: null };
  const heads = fusedGpuJs(ctx, q, k, v, pad, am, attrs, ids, lse);
  return [heads, lse.t as WebGLTensor];
}

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * Fused attention on packed textures (packed.ts), the B·H·Lq score rows in tiles of at most
 * `fusedTileElements` scores (and MAX_TEXTURE_SIZE rows). Once: pass 0 transposes v (vT); with
 * sequence ids the id range of every block of 32 keys is tabulated; the spans pass finds the
 * texel ranges every query row reads. Per tile:
 *   pass 1  scores: S = scale·q·k, softcap, − ALiBi, + attnMask; −∞ where hidden  [ceil(Lk/4), tileRows]
 *   pass 2  stats:  (row max m, Σ exp(S − m)), sink logit included                [2, tileRows/2]
 *   pass 3  probs:  P = exp(S − m) / l                                            [ceil(Lk/4), tileRows]
 *   pass 4  output: heads = P·V, one draw per (b, h) segment of the tile         into [H·hd4, B·Lq]
 * Every pass visits only the keys a row can see (fusedAttention.keys.glsl.ts): the causal /
 * window range and the sink tokens, narrowed to the blocks of the query's sequence; passes 1
 * and 3 draw one quad per row and range, and never touch the other texels (which passes 2–4
 * never read).
 * Each output texel is written by exactly one segment draw, so tiles need no copy of earlier
 * output. Lk, the offsets and the scale are uniforms under a compiled bound of
 * nextPow2(ceil(keyCapacity/4)) keys: a KV-cache session compiles these programs once.
 * Returns null where a packed texture would not fit MAX_TEXTURE_SIZE (the gpu.js path runs).
 */
function fusedPacked(
  ctx: Textures,
  q: WebGLTensor,
  key: WebGLTensor,
  v: WebGLTensor,
  pad: WebGLTensor | null,
  am: WebGLTensor | null,
  attrs: FusedAttentionAttrs,
  ids: WebGLTensor | null,
): WebGLTensor | null {
  const { batch: B, numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
  const cap = attrs.keyCapacity ?? Lk;
  const hd4 = Math.ceil(hd / 4);
  const Lk4 = Math.ceil(Lk / 4);
  const rows = B * H * Lq;
  const tileRows = Math.min(fusedTileRows(rows, Lk, ctx.fusedTileElements), ctx.maxTextureSize);
  const cap4 = Math.ceil(cap / 4);
  const idBlocks = Math.ceil(Lk / SEQ_BLOCK);
  if (
    !(
      ctx.fits(H * hd4, B * Lq) &&
      ctx.fits(KVH * hd4, B * cap) &&
      ctx.fits(Lk4, tileRows) &&
      ctx.fits(cap4, B * KVH * hd) &&
      ctx.fits(idBlocks, B) &&
      ctx.fits(Lq, B)
    )
  ) {
    return null;
  }
  ctx.alive();
  const raw = ctx.device.raw;
  const variant: FusedVariant = {
    H,
    group: H / KVH,
    Lq,
    hd4,
    causal: attrs.causal,
    hasPadding: pad !== null,
    hasAttnMask: am !== null,
    sequenceIds: ids !== null,
    window: attrs.window !== undefined,
    alibi: attrs.alibiSlopes !== undefined,
    softcap: attrs.softcap !== undefined,
    sinks: attrs.sinks !== undefined,
    sinkTokens: attrs.sinkTokens !== undefined,
    maxKeys4: nextPow2(Math.ceil(cap / 4)),
  };
  const headsLayout: PackedLayout = { rows: B * Lq, groupWidth: hd, groups: H };
  const kvLayout: PackedLayout = { rows: B * cap, groupWidth: hd, groups: KVH };
  const inputs = [ctx.packed(q, headsLayout), ctx.packed(key, kvLayout), ctx.packed(v, kvLayout)] as const;
  const [qp, kp, vp] = inputs;
  const masks = { ...(pad ? { uPad: ctx.flat(pad) } : {}), ...(am ? { uAm: ctx.flat(am) } : {}) };
  const temps: RawTexture[] = [];
  let out: RawTexture | null = null;
  try {
    const S = raw.createTexture(Lk4, tileRows);
    temps.push(S);
    const stats = raw.createTexture(STATS_WIDTH, Math.ceil(tileRows / STATS_WIDTH));
    temps.push(stats);
    const P = raw.createTexture(Lk4, tileRows);
    temps.push(P);
    out = raw.createTexture(H * hd4, B * Lq);
    // Pass 0: v transposed for pass 4.
    const vT = raw.createTexture(cap4, B * KVH * hd);
    temps.push(vT);
    raw.draw(`fused.vT|${KVH}|${hd}|${hd4}`, transposeValuesSource(variant, KVH, hd), vT, {
      textures: { uV: vp.raw },
      uniforms: { uCap: cap },
    });
    // With sequence ids: the (min, max) id of every block of keys, read by passes 1–4.
    let seq = {};
    if (ids) {
      const uIds = ctx.flat(ids);
      const table = raw.createTexture(idBlocks, B);
      temps.push(table);
      raw.draw('fused.idBlocks', ID_BLOCKS, table, { textures: { uIds }, uniforms: { uLk: Lk } });
      seq = { uIds, uIdBlocks: table };
    }
    const common = {
      ...keyUniforms(attrs),
      uRows: rows,
      uNegInf: Number.NEGATIVE_INFINITY,
      uTargetW: Lk4,
      uTargetH: tileRows,
      ...(attrs.sinks ? { uSinks: attrs.sinks } : {}),
    };
    // The texel ranges each query row reads (narrowed to its own sequence's blocks), for passes 1–4.
    const spans = raw.createTexture(Lq, B);
    temps.push(spans);
    raw.draw(fusedKey('fused.spans', variant), spansSource(variant), spans, { textures: seq, uniforms: common });
    seq = { ...seq, uSpans: spans };
    // Passes 1 and 3 as one quad per row and range: fragments outside the spans never run.
    const quads = raw.vertexTextures
      ? {
          vertex: rowQuadsVertex(variant),
          geometry: raw.geometry(`fused.rowQuads|${tileRows}|${variant.sinkTokens}`, () =>
            rowQuads(tileRows, variant.sinkTokens),
          ),
        }
      : null;
    const drawTile = (key: string, src: string, target: RawTexture, inputs: DrawInputs) =>
      quads
        ? raw.drawGeometry(`${key}|quads`, quads.vertex, src, target, inputs, quads.geometry)
        : raw.draw(key, src, target, inputs);
    const scoresKey = fusedKey('fused.scores', variant);
    const scoresSrc = fusedScoresSource(variant);
    const statsKey = fusedKey('fused.stats', variant);
    const statsSrc = fusedStatsSource(variant);
    const probsKey = fusedKey('fused.probs', variant);
    const probsSrc = fusedProbsSource(variant);
    const outKey = `${fusedKey('fused.output', variant)}|${hd}|${KVH}`;
    const outSrc = fusedOutputSource(variant, hd, KVH);
    for (let r0 = 0; r0 < rows; r0 += tileRows) {
      ctx.alive();
      const tile = { ...common, uRowStart: r0 };
      // Pass 1.
      drawTile(scoresKey, scoresSrc, S, {
        textures: { uQ: qp.raw, uK: kp.raw, ...masks, ...seq },
        uniforms: {
          ...tile,
          uCap: cap,
          uScale: attrs.scale,
          ...(attrs.softcap !== undefined ? { uSoftcap: attrs.softcap } : {}),
          ...(attrs.alibiSlopes ? { uSlopes: attrs.alibiSlopes } : {}),
        },
      });
      // Passes 2 and 3.
      raw.draw(statsKey, statsSrc, stats, { textures: { uS: S, ...seq }, uniforms: tile });
      drawTile(probsKey, probsSrc, P, { textures: { uS: S, uStats: stats, ...seq }, uniforms: tile });
      // Pass 4: the (b, h) segments of rows r0 … r1−1, each a rectangle of the output.
      const r1 = Math.min(rows, r0 + tileRows);
      for (let bh = Math.floor(r0 / Lq); bh * Lq < r1; bh++) {
        const i0 = Math.max(r0, bh * Lq) - bh * Lq;
        const i1 = Math.min(r1, (bh + 1) * Lq) - bh * Lq;
        const b = Math.floor(bh / H);
        const h = bh - b * H;
        raw.draw(outKey, outSrc, out, { textures: { uP: P, uVT: vT, ...seq }, uniforms: tile }, [
          h * hd4,
          b * Lq + i0,
          hd4,
          i1 - i0,
        ]);
      }
    }
  } catch (e) {
    if (out) raw.deleteTexture(out);
    throw e;
  } finally {
    for (const t of temps) raw.deleteTexture(t);
    for (const p of inputs) if (p.temporary) raw.deleteTexture(p.raw);
  }
  return ctx.packedTensor([B, Lq, H * hd], headsLayout, out);
}

/**
 * The gpu.js fused path (used where packed textures would not fit MAX_TEXTURE_SIZE): tiles of
 * `tileRows` score rows; per tile: pass 1 masked, scaled scores; passes 2–4 the row softmax
 * (sink logits included); pass 5 this tile's heads rows (the rest copied from the previous
 * tile's output). Hidden keys cost no dot product (pass 1 returns −∞ first), but passes 2–5
 * run over every key: this path is the fallback for tensors the packed one cannot hold.
 */
function fusedGpuJs(
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
