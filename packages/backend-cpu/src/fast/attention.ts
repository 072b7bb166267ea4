// The fast path of `fusedAttention`: the caller's q, k, v moved into the module and the heads
// out of it around the flash kernel (assembly/attention.ts, staging in assembly/stage.ts).
import type { FusedAttentionAttrs } from '@qkv/core';
import { fusedAttention as referenceFusedAttention } from '../kernels/fusedAttention.js';
import { rowsOf } from '../kernels/scores.js';
import { FUSED_KEYS, onlyKnown } from './attrs.js';
import type { KernelExports as Exports } from './builds.js';
import { layout, scratchBase } from './resident.js';
import { keepPacked, takePacked } from './scope.js';

/** Query rows per attention call (a multiple of the kernel's 32-row block). */
const Q_CHUNK = 256;
/** The kernel's S scratch: BQ × BK floats (assembly/attention.ts). */
const S_SCRATCH = 32 * 256;
/**
 * The largest operand slab copied into the module whole (floats: 8 MiB): one batch's Q, K or V
 * [L, width], or its heads. Up to it each is one copy per batch and every head is gathered,
 * packed or scattered inside the module; past it (L > 2730 at d = 768) rows are copied one head
 * row at a time instead, so the module's memory stays a few MiB whatever the sequence length.
 */
export const STAGE_FLOATS = 1 << 21;

const up8 = (n: number) => (n + 7) & ~7;
const up4 = (n: number) => (n + 3) & ~3;

/** Whether `fusedAttention` takes the SIMD path for these attrs (else: the reference). */
export function fusedAttentionIsFast(attrs: FusedAttentionAttrs): boolean {
  // queryOffset only positions windows, ALiBi and the mods (extras that go to the reference
  // anyway); causal masking itself is always bottom-right aligned (j ≤ i + Lk − Lq).
  return onlyKnown(attrs, FUSED_KEYS);
}

/**
 * Same contract as the reference `fusedAttention`: rows (b, h, i) in [from, to) of B·H·Lq.
 * q [B, Lq, H·hd], k, v [B, Lk (or keyCapacity), KVH·hd], keyPaddingMask [B, Lk] | null,
 * attnMask [Lq, Lk] | null → heads [B, Lq, H·hd].
 * Per (b, h) run of rows: K and V of its KV head are packed once (reused while consecutive rows
 * share it, as grouped-query heads do), then queries go through the flash kernel Q_CHUNK at a time.
 * lse [B, H, Lq] | null: filled from the kernel's running max and sum (base 2: m'·ln 2 + ln l).
 *
 * Data path, per batch b, for each operand slab within STAGE_FLOATS:
 *   1. K, V [Lk, KVH·hd] and Q [Lq, H·hd] copied into the module, one copy each;
 *   2. per KV head: Kᵀ packed (packKeys) and V packed with its NaN/±∞ scan (packValues),
 *      straight from the strided slabs;
 *   3. per query chunk: the head's rows gathered (gatherRows), the kernel, the output rows
 *      scattered into a heads slab [Lq, H·hd] (scatterRows) when this call computes every head
 *      of the batch, else copied out row by row;
 *   4. the heads slab copied out, one copy.
 * Memory per call: the slabs (≤ 4·STAGE_FLOATS), 2·Lk·hdp for one head's packed K/V plus
 * O(Q_CHUNK·(hd + Lk)) — never [Lq, Lk]. `stageFloats` (tests) moves the slab limit.
 */
export function fusedAttentionWith(
  module: Exports | null,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  keyPaddingMask: Float32Array | null,
  attnMask: Float32Array | null,
  out: Float32Array,
  attrs: FusedAttentionAttrs,
  from = 0,
  to = rowsOf(attrs),
  lse: Float32Array | null = null,
  stageFloats = STAGE_FLOATS,
): void {
  const m = fusedAttentionIsFast(attrs) ? module : null;
  if (m === null || to <= from) {
    referenceFusedAttention(q, k, v, keyPaddingMask, attnMask, out, attrs, from, to, lse);
    return;
  }
  const { numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd, scale, causal } = attrs;
  // KV-cache layout: batch b's keys start at row b · keyCapacity (core ≥ the KV-cache graph).
  const capacity = (attrs as { keyCapacity?: number }).keyCapacity ?? Lk;
  const group = H / KVH;
  const qStride = H * hd;
  const kvStride = KVH * hd;
  const hdp = up8(hd);
  const Lkp = up8(Lk);
  const kvSlab = Lk * kvStride <= stageFloats;
  const qSlab = Lq * qStride <= stageFloats;
  // The heads slab only when this call writes whole batches: anything else (a thread's slice)
  // must leave the other rows of `out` untouched.
  const batchRows = H * Lq;
  const oSlab = qSlab && from % batchRows === 0 && to % batchRows === 0;
  const amRows = attnMask ? Q_CHUNK : 0;
  const {
    f32,
    ptr: [kS, vS, kp, vp, keyBias, qS, rowStage, qBuf, oBuf, mBuf, lBuf, sBuf, amBuf, oS],
  } = layout(m, [
    kvSlab ? Lk * kvStride : 0,
    kvSlab ? Lk * kvStride : 0,
    Lkp * hdp,
    Lkp * hdp,
    Lkp,
    qSlab ? Lq * qStride : 0,
    kvSlab ? 0 : Lk * hd,
    Q_CHUNK * hdp,
    Q_CHUNK * hdp,
    Q_CHUNK,
    Q_CHUNK,
    S_SCRATCH,
    amRows * Lk,
    oSlab ? Lq * qStride : 0,
  ]);
  const at = (p: number | undefined) => (p as number) >>> 2;
  const ptr = (p: number | undefined) => p as number;
  let loadedKV = -1; // b · KVH + kvh of the head whose K/V are packed
  let loadedBias = -1; // b of the key bias row
  let kvSlabOf = -1; // b of the K/V slabs
  let qSlabOf = -1; // b of the Q slab
  let vNonFinite = 0;
  // Same arrays, same layout, same scope: what the previous call staged is still there.
  const shape = `${Lq},${Lk},${H},${KVH},${hd},${capacity},${amRows}`;
  const base = scratchBase(m);
  const prev = takePacked('attention', m, base);
  if (prev?.k === k && prev.v === v && prev.mask === keyPaddingMask && prev.shape === shape) {
    loadedKV = prev.kv;
    loadedBias = prev.bias;
    vNonFinite = prev.vNonFinite;
    kvSlabOf = prev.kvSlab;
    if (prev.q === q) qSlabOf = prev.qSlab;
  }

  for (let row = from; row < to; ) {
    const i0 = row % Lq;
    const bh = (row - i0) / Lq;
    const h = bh % H;
    const b = (bh - h) / H;
    const kvh = Math.floor(h / group);
    const segEnd = Math.min(to, (bh + 1) * Lq);

    if (loadedKV !== b * KVH + kvh) {
      // Pass 1 (per KV head): K and V of this head from the slabs (or a per-row stage) into the
      // kernel's packed layouts: Kᵀ panels, V panels (with the NaN/±∞ scan).
      const kvBase = b * capacity * kvStride;
      let kSrc: number;
      let vSrc: number;
      let ld: number;
      if (kvSlab) {
        if (kvSlabOf !== b) {
          f32.set(k.subarray(kvBase, kvBase + Lk * kvStride), at(kS));
          f32.set(v.subarray(kvBase, kvBase + Lk * kvStride), at(vS));
          kvSlabOf = b;
        }
        kSrc = ptr(kS) + kvh * hd * 4;
        vSrc = ptr(vS) + kvh * hd * 4;
        ld = kvStride;
      } else {
        kSrc = vSrc = ptr(rowStage);
        ld = hd;
      }
      if (!kvSlab) stageHeadRows(f32, k, kvBase + kvh * hd, kvStride, Lk, hd, at(rowStage));
      m.packKeys(kSrc, ld, Lk, hd, Lkp, hdp, ptr(kp));
      if (!kvSlab) stageHeadRows(f32, v, kvBase + kvh * hd, kvStride, Lk, hd, at(rowStage));
      vNonFinite = m.packValues(vSrc, ld, Lk, hd, Lkp, ptr(vp));
      loadedKV = b * KVH + kvh;
    }
    if (loadedBias !== b) {
      const k0 = at(keyBias);
      for (let j = 0; j < Lkp; j++) {
        f32[k0 + j] = j >= Lk || (keyPaddingMask !== null && keyPaddingMask[b * Lk + j] !== 0) ? -Infinity : 0;
      }
      loadedBias = b;
    }
    if (qSlab && qSlabOf !== b) {
      f32.set(q.subarray(b * Lq * qStride, (b + 1) * Lq * qStride), at(qS));
      qSlabOf = b;
    }

    for (let i = i0; i < i0 + (segEnd - row); i += Q_CHUNK) {
      const n = Math.min(Q_CHUNK, i0 + (segEnd - row) - i);
      // Pass 2: this head's query rows i … i+n−1 as q [up4(n), hdp].
      if (qSlab) m.gatherRows(ptr(qS) + (i * qStride + h * hd) * 4, qStride, n, hd, ptr(qBuf), hdp, up4(n));
      else {
        const q0 = at(qBuf);
        f32.fill(0, q0, q0 + up4(n) * hdp);
        for (let r = 0; r < n; r++) {
          const src = (b * Lq + i + r) * qStride + h * hd;
          f32.set(q.subarray(src, src + hd), q0 + r * hdp);
        }
      }
      if (attnMask) f32.set(attnMask.subarray(i * Lk, (i + n) * Lk), at(amBuf));
      // Pass 3: the flash kernel.
      m.attention(
        ptr(qBuf),
        n,
        hdp,
        ptr(kp),
        ptr(vp),
        Lkp,
        ptr(keyBias),
        attnMask ? ptr(amBuf) : 0,
        Lk,
        ptr(oBuf),
        ptr(mBuf),
        ptr(lBuf),
        ptr(sBuf),
        scale,
        causal ? 1 : 0,
        i,
        Lk - Lq,
        vNonFinite,
      );
      // Pass 4: the rows out, into the heads slab or straight into `out`.
      if (oSlab) m.scatterRows(ptr(oBuf), hdp, n, hd, ptr(oS) + (i * qStride + h * hd) * 4, qStride);
      else {
        const o0 = at(oBuf);
        for (let r = 0; r < n; r++) {
          const dst = ((b * Lq + i + r) * H + h) * hd;
          out.set(f32.subarray(o0 + r * hdp, o0 + r * hdp + hd), dst);
        }
      }
      if (lse !== null) {
        const [m0, l0] = [at(mBuf), at(lBuf)];
        for (let r = 0; r < n; r++) {
          const sum = f32[l0 + r] as number;
          lse[bh * Lq + i + r] =
            sum > 0
              ? (f32[m0 + r] as number) * Math.LN2 + Math.log(sum)
              : sum !== sum
                ? Number.NaN
                : Number.NEGATIVE_INFINITY;
        }
      }
    }
    row = segEnd;
    // The batch's last head is done: its heads slab out in one copy.
    if (oSlab && row % batchRows === 0) out.set(f32.subarray(at(oS), at(oS) + Lq * qStride), b * Lq * qStride);
  }
  keepPacked({
    kind: 'attention',
    m,
    base,
    k,
    v,
    q,
    mask: keyPaddingMask,
    shape,
    kv: loadedKV,
    bias: loadedBias,
    kvSlab: kvSlabOf,
    qSlab: qSlabOf,
    vNonFinite,
  });
}

/** One head's rows of a [rows, stride] source (from `offset`, hd wide) into f32 at `dst` as [rows, hd]. */
function stageHeadRows(
  f32: Float32Array,
  src: Float32Array,
  offset: number,
  stride: number,
  rows: number,
  hd: number,
  dst: number,
): void {
  for (let j = 0; j < rows; j++) f32.set(src.subarray(offset + j * stride, offset + j * stride + hd), dst + j * hd);
}
