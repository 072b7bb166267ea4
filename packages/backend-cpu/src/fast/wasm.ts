import type { FusedAttentionAttrs, LinearAttrs } from '@qkv/core';
import { fusedAttention as referenceFusedAttention } from '../kernels/fusedAttention.js';
import type { linear as referenceLinear } from '../kernels/linear.js';
import { rowsOf } from '../kernels/scores.js';
import { FUSED_KEYS, onlyKnown } from './attrs.js';
import {
  bestWasmBuild,
  buildExports,
  type KernelExports as Exports,
  preloadBuild,
  type WasmBuild,
  wasmMemoryBytes,
} from './builds.js';
import { linearWith, PreparedWeight } from './linear.js';
import { layout, scratchBase } from './resident.js';
import { keepPacked, takePacked } from './scope.js';

/**
 * The WebAssembly SIMD fast path: `linear` and `fusedAttention` with exactly the reference
 * kernels' row-range contract (`(…, out, attrs, from, to)`), so the cpu backend calls them over the
 * whole range and the workers backend on slices from each thread (each thread instantiates its own
 * modules; nothing is shared but the caller's arrays). Each takes the module of one build
 * (builds.ts): `fastKernels(build)` binds them to it.
 *
 * WebAssembly cannot read a JS Float32Array in place, so each call copies what it needs into the
 * module's linear memory: O(n²) copies in front of O(n³) (linear) or O(L²·hd) (attention) math.
 * Big operands are streamed in chunks (ROW_CHUNK rows of x, Q_CHUNK query rows) so the module's
 * memory stays a few MiB for weights and one head's K/V, whatever the sequence length.
 *
 * Precision: products accumulate in float32 (the reference uses float64); over K = 768 terms
 * that is ~1e-6 relative, well inside the conformance tolerance (atol 1e-4, rtol 1e-3).
 */

/** Query rows per attention call (a multiple of the kernel's 64-row block). */
const Q_CHUNK = 256;
/** The kernel's S scratch: BQ × BK floats (assembly/kernels.ts). */
const S_SCRATCH = 64 * 128;

/**
 * Compiles a build ahead of its first use (`build` defaults to the best this runtime has).
 * Resolves to null when it is ready, else to the reason it cannot run here.
 */
export async function preloadFastKernels(build: WasmBuild | null = bestWasmBuild()): Promise<string | null> {
  if (build === null) return 'WebAssembly SIMD unavailable in this runtime';
  try {
    await preloadBuild(build);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Whether any WebAssembly build runs here (compiles the best on first ask). */
export function fastKernelsAvailable(): boolean {
  const build = bestWasmBuild();
  if (build === null) return false;
  buildExports(build);
  return true;
}

/** Bytes of linear memory the kernels hold on this thread (0 before first use): it only grows. */
export const fastKernelMemoryBytes = wasmMemoryBytes;

const up8 = (n: number) => (n + 7) & ~7;
const up4 = (n: number) => (n + 3) & ~3;

/** Whether `fusedAttention` below takes the SIMD path for these attrs (else: the reference). */
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
 * Memory per call: 3·Lk·hd floats for one head's K/V plus O(Q_CHUNK·(hd + Lk)) — never [Lq, Lk].
 * lse [B, H, Lq] | null: filled from the kernel's running max and sum (base 2: m'·ln 2 + ln l).
 */
function fusedAttentionWith(
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
  const amRows = attnMask ? Q_CHUNK : 0;
  const {
    f32,
    ptr: [stage, kp, vp, keyBias, qBuf, oBuf, mBuf, lBuf, sBuf, amBuf],
  } = layout(m, [
    Lkp * hd,
    Lkp * hdp,
    Lkp * hdp,
    Lkp,
    Q_CHUNK * hdp,
    Q_CHUNK * hdp,
    Q_CHUNK,
    Q_CHUNK,
    S_SCRATCH,
    amRows * Lk,
  ]);
  const at = (p: number | undefined) => (p as number) >>> 2;
  let loadedKV = -1; // b · KVH + kvh of the head whose K/V are packed
  let loadedBias = -1; // b of the key bias row
  let vNonFinite = 0;
  // Same K/V arrays, same layout, same scope: what the previous call packed is still there.
  const shape = `${Lk},${hd},${capacity},${KVH}`;
  const base = scratchBase(m);
  const prev = takePacked('attention', m, base);
  if (prev?.k === k && prev.v === v && prev.mask === keyPaddingMask && prev.shape === shape) {
    loadedKV = prev.kv;
    loadedBias = prev.bias;
    vNonFinite = prev.vNonFinite;
  }

  for (let row = from; row < to; ) {
    const i0 = row % Lq;
    const bh = (row - i0) / Lq;
    const h = bh % H;
    const b = (bh - h) / H;
    const kvh = Math.floor(h / group);
    const segEnd = Math.min(to, (bh + 1) * Lq);

    if (loadedKV !== b * KVH + kvh) {
      // Stage K's rows [Lk, hd] contiguously, pack Kᵀ; then the same for V.
      const kvBase = b * capacity * kvStride + kvh * hd;
      for (const [src, dst, transposed] of [
        [k, kp, true],
        [v, vp, false],
      ] as const) {
        const s0 = at(stage);
        for (let j = 0; j < Lk; j++)
          f32.set(src.subarray(kvBase + j * kvStride, kvBase + j * kvStride + hd), s0 + j * hd);
        // Pad keys are zero in V too (their p is 0, but 0 · garbage could be NaN).
        f32.fill(0, s0 + Lk * hd, s0 + Lkp * hd);
        if (!transposed) {
          // NaN/±∞ in V (x − x ≠ 0) switches the kernel to its exact-skip path for this head.
          vNonFinite = 0;
          for (let e = s0; e < s0 + Lk * hd; e++) {
            const x = f32[e] as number;
            if (x - x !== 0) {
              vNonFinite = 1;
              break;
            }
          }
        }
        if (transposed) m.packTransposed(stage as number, Lk, hd, hd, Lkp, hdp, dst as number);
        else m.packPanels(stage as number, Lkp, hd, hd, dst as number);
      }
      loadedKV = b * KVH + kvh;
    }
    if (loadedBias !== b) {
      const k0 = at(keyBias);
      for (let j = 0; j < Lkp; j++) {
        f32[k0 + j] = j >= Lk || (keyPaddingMask !== null && keyPaddingMask[b * Lk + j] !== 0) ? -Infinity : 0;
      }
      loadedBias = b;
    }

    for (let i = i0; i < i0 + (segEnd - row); i += Q_CHUNK) {
      const n = Math.min(Q_CHUNK, i0 + (segEnd - row) - i);
      const q0 = at(qBuf);
      f32.fill(0, q0, q0 + up4(n) * hdp);
      for (let r = 0; r < n; r++) {
        const src = (b * Lq + i + r) * qStride + h * hd;
        f32.set(q.subarray(src, src + hd), q0 + r * hdp);
      }
      if (attnMask) f32.set(attnMask.subarray(i * Lk, (i + n) * Lk), at(amBuf));
      m.attention(
        qBuf as number,
        n,
        hdp,
        kp as number,
        vp as number,
        Lkp,
        keyBias as number,
        attnMask ? (amBuf as number) : 0,
        Lk,
        oBuf as number,
        mBuf as number,
        lBuf as number,
        sBuf as number,
        scale,
        causal ? 1 : 0,
        i,
        Lk - Lq,
        vNonFinite,
      );
      const o0 = at(oBuf);
      for (let r = 0; r < n; r++) {
        const dst = ((b * Lq + i + r) * H + h) * hd;
        out.set(f32.subarray(o0 + r * hdp, o0 + r * hdp + hd), dst);
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
  }
  keepPacked({
    kind: 'attention',
    m,
    base,
    k,
    v,
    mask: keyPaddingMask,
    shape,
    kv: loadedKV,
    bias: loadedBias,
    vNonFinite,
  });
}

/**
 * `linear` and `fusedAttention` bound to one WebAssembly build (the reference contract each), and
 * `prepareWeight`: W and bias packed once into this build's module on this thread, for backends
 * that hold weights across runs (see PreparedWeight).
 */
export interface FastKernels {
  readonly build: WasmBuild;
  readonly linear: typeof referenceLinear;
  readonly fusedAttention: typeof referenceFusedAttention;
  prepareWeight(w: Float32Array, bias: Float32Array | null, attrs: LinearAttrs): PreparedWeight;
}

const bound = new Map<WasmBuild, FastKernels>();

/**
 * The kernels of one build on this thread (its module compiled on first call if not preloaded).
 * Backends take them once, for the build they resolved, so no call decides anything.
 */
export function fastKernels(build: WasmBuild): FastKernels {
  let fk = bound.get(build);
  if (fk === undefined) {
    const m = buildExports(build);
    fk = {
      build,
      linear: (x, w, bias, out, attrs, from, to) => linearWith(m, x, w, bias, out, attrs, from, to),
      prepareWeight: (w, bias, attrs) => new PreparedWeight(m, w, bias, attrs.inFeatures, attrs.outFeatures),
      fusedAttention: (q, k, v, pad, am, out, attrs, from, to, lse) =>
        fusedAttentionWith(m, q, k, v, pad, am, out, attrs, from, to, lse),
    };
    bound.set(build, fk);
  }
  return fk;
}

/** The best build's exports, or null (then the reference kernels run). */
function best(): Exports | null {
  const build = bestWasmBuild();
  return build === null ? null : buildExports(build);
}

/**
 * Same contract as the reference `linear`: out[r, :] = x[r, :] · w + bias for r in [from, to),
 * on the best build this runtime has (the reference kernel without WebAssembly SIMD).
 */
export const linear: typeof referenceLinear = (x, w, bias, out, attrs, from, to) =>
  linearWith(best(), x, w, bias, out, attrs, from, to);

/** Same contract as the reference `fusedAttention`, on the best build this runtime has. */
export const fusedAttention: typeof referenceFusedAttention = (q, k, v, pad, am, out, attrs, from, to, lse) =>
  fusedAttentionWith(best(), q, k, v, pad, am, out, attrs, from, to, lse);
