import type { FusedAttentionAttrs } from '@qkv/core';
import { fusedTileRows } from '../options.js';
import type { PackedLayout } from '../packed.js';
import { type DrawInputs, flatRects, type RawTexture } from '../raw.js';
import type { Textures, ValuesT, WebGLTensor } from '../tensor.js';
import {
  type FusedVariant,
  fusedKey,
  fusedLseSource,
  fusedOutputSource,
  fusedProbsSource,
  fusedScoresSource,
  fusedStatsSource,
  STATS_WIDTH,
  transposeValuesSource,
} from './fusedAttention.glsl.js';
import { fusedGpuJs } from './fusedAttention.gpujs.js';
import {
  ID_BLOCKS,
  keyUniforms,
  rowQuads,
  rowQuadsVertex,
  SEQ_BLOCK,
  spansSource,
} from './fusedAttention.keys.glsl.js';

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
  return fusedPacked(ctx, q, k, v, pad, am, attrs, ids, false)?.heads ?? fusedGpuJs(ctx, q, k, v, pad, am, attrs, ids);
}

/**
 * As `fusedAttention`, plus lse [B, H, Lq] from the same row statistics (m + log l): the packed
 * programs draw it after each tile's pass 2, the gpu.js tiles from their row max and sum.
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
  const packed = fusedPacked(ctx, q, k, v, pad, am, attrs, ids, true);
  if (packed) return [packed.heads, packed.lse as WebGLTensor];
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
  withLse: boolean,
): { heads: WebGLTensor; lse: WebGLTensor | null } | null {
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
  const lse = withLse ? ctx.flatTensor([B, H, Lq]) : null;
  try {
    const S = raw.createTexture(Lk4, tileRows);
    temps.push(S);
    const stats = raw.createTexture(STATS_WIDTH, Math.ceil(tileRows / STATS_WIDTH));
    temps.push(stats);
    const P = raw.createTexture(Lk4, tileRows);
    temps.push(P);
    out = raw.createTexture(H * hd4, B * Lq);
    // Pass 0: v transposed for pass 4, kept on v (writeRows updates it with the rows it writes).
    const vT = valuesTransposed(ctx, v, vp, KVH, hd, cap, temps);
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
    const lseKey = fusedKey('fused.lse', variant);
    const lseSrc = fusedLseSource(variant);
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
      // Passes 2 and 3 (and with returnLse this tile's rows of lse, from pass 2's stats).
      raw.draw(statsKey, statsSrc, stats, { textures: { uS: S, ...seq }, uniforms: tile });
      if (lse) {
        const target = ctx.flat(lse);
        for (const rect of flatRects(r0, Math.min(rows, r0 + tileRows), target.width)) {
          raw.draw(
            lseKey,
            lseSrc,
            target,
            { textures: { uStats: stats }, uniforms: { ...tile, uDstW: target.width } },
            rect,
          );
        }
      }
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
    if (lse) ctx.dispose(lse);
    throw e;
  } finally {
    for (const t of temps) raw.deleteTexture(t);
    for (const p of inputs) if (p.temporary) raw.deleteTexture(p.raw);
  }
  return { heads: ctx.packedTensor([B, Lq, H * hd], headsLayout, out), lse };
}

/**
 * Pass 0 (v transposed, [cap4, B·KVH·hd]) of `v` whose packed form is `vp`: the one kept on v
 * when it matches, else drawn whole and kept there (or, when vp is a temporary packing, drawn
 * into a temporary). A KV cache so pays it once; ops/writeRows.ts redraws the texel columns
 * of the rows it writes (`drawValuesT` over their rectangle).
 */
function valuesTransposed(
  ctx: Textures,
  v: WebGLTensor,
  vp: { raw: RawTexture; temporary: boolean },
  KVH: number,
  hd: number,
  cap: number,
  temps: RawTexture[],
): RawTexture {
  const kept = v.valuesT;
  if (!vp.temporary && kept && kept.KVH === KVH && kept.hd === hd && kept.cap === cap) return kept.raw;
  const raw = ctx.device.raw;
  const vT = raw.createTexture(Math.ceil(cap / 4), (v.shape[0] as number) * KVH * hd);
  const made: ValuesT = { raw: vT, KVH, hd, cap };
  try {
    drawValuesT(ctx, vp.raw, made, [0, 0, vT.width, vT.height]);
  } catch (e) {
    raw.deleteTexture(vT);
    throw e;
  }
  if (vp.temporary) {
    temps.push(vT);
  } else {
    if (kept) raw.deleteTexture(kept.raw);
    v.valuesT = made;
  }
  return vT;
}

/** Pass 0 over `rect` ([x, y, w, h] texels) of `vT`, from the packed v `vPacked`. */
export function drawValuesT(
  ctx: Textures,
  vPacked: RawTexture,
  vT: ValuesT,
  rect: readonly [number, number, number, number],
): void {
  const hd4 = Math.ceil(vT.hd / 4);
  ctx.device.raw.draw(
    `fused.vT|${vT.KVH}|${vT.hd}|${hd4}`,
    transposeValuesSource(hd4, vT.KVH, vT.hd),
    vT.raw,
    { textures: { uV: vPacked }, uniforms: { uCap: vT.cap } },
    rect,
  );
}
