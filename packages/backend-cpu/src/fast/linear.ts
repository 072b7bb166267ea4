// The fast path of `linear`: per call (the kernel contract) and with W prepared once.
import { type LinearAttrs, QkvError } from '@qkv/core';
import { linear as referenceLinear } from '../kernels/linear.js';
import { STAGE_FLOATS } from './attention.js';
import { onlyKnown } from './attrs.js';
import type { KernelExports as Exports } from './builds.js';
import { allocResident, freeResident, layout, scratchBase } from './resident.js';
import { keepPacked, takePacked } from './scope.js';

/** Rows of x copied into the module per gemm call. */
const ROW_CHUNK = 256;
const up8 = (n: number) => (n + 7) & ~7;

const LINEAR_KEYS = new Set(['rows', 'inFeatures', 'outFeatures']);

/** Whether `linear` takes the SIMD path for these attrs (else: the reference). */
export function linearIsFast(attrs: LinearAttrs): boolean {
  return onlyKnown(attrs, LINEAR_KEYS);
}

/**
 * out[r, :] = x[r, :] · W + bias for r in [from, to), W already packed in the module at `wPtr`
 * ([Np/8][K][8] panels, Np = N rounded up to 8) and the bias at `biasPtr` ([Np], or 0). x is
 * copied in ROW_CHUNK rows at a time, scratch from `scratchFrom` up — or read where the caller
 * staged rows [from, to) already (`staged`, a byte pointer); the kernel takes any row count (the
 * last M mod 4 rows on its few-row path), so nothing is padded.
 * x [rows, K], out [rows, N].
 */
export function gemmRows(
  m: Exports,
  x: Float32Array,
  out: Float32Array,
  K: number,
  N: number,
  wPtr: number,
  biasPtr: number,
  from: number,
  to: number,
  scratchFrom?: number,
  staged: number | null = null,
): void {
  const Np = up8(N);
  const chunk = Math.min(ROW_CHUNK, to - from);
  const {
    f32,
    ptr: [a, c],
  } = layout(m, [staged === null ? chunk * K : 0, chunk * Np], scratchFrom);
  const a0 = (a as number) >>> 2;
  const c0 = (c as number) >>> 2;
  for (let r0 = from; r0 < to; r0 += chunk) {
    const n = Math.min(chunk, to - r0);
    let rows = a as number;
    if (staged === null) f32.set(x.subarray(r0 * K, (r0 + n) * K), a0);
    else rows = staged + (r0 - from) * K * 4;
    m.gemm(rows, n, K, wPtr, Np, biasPtr, c as number);
    if (Np === N) out.set(f32.subarray(c0, c0 + n * N), r0 * N);
    else for (let r = 0; r < n; r++) out.set(f32.subarray(c0 + r * Np, c0 + r * Np + N), (r0 + r) * N);
  }
}

/**
 * Packs W [K, N] into panels at `wPtr` and the bias (zero-padded to Np) at `biasPtr`, staging the
 * raw W in scratch from `scratchFrom` up.
 */
export function packWeight(
  m: Exports,
  w: Float32Array,
  bias: Float32Array | null,
  K: number,
  N: number,
  wPtr: number,
  biasPtr: number,
  scratchFrom?: number,
): void {
  const Np = up8(N);
  const {
    f32,
    ptr: [raw],
  } = layout(m, [K * N], scratchFrom);
  f32.set(w.subarray(0, K * N), (raw as number) >>> 2);
  m.packPanels(raw as number, K, N, N, wPtr);
  if (bias) {
    f32.fill(0, biasPtr >>> 2, (biasPtr >>> 2) + Np);
    f32.set(bias.subarray(0, N), biasPtr >>> 2);
  }
}

/**
 * A projection's W (and bias) packed once into one module's memory, where it stays until
 * `release()`: every `linear` on it then copies only x in and the rows out, never W — for a
 * decode step (one row) that is the difference between reading W once and copying and
 * re-packing all of it per token. The weights are copied at `prepareWeight`: changing the
 * source arrays afterwards changes nothing here (prepare again to see new values).
 */
export class PreparedWeight {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly #m: Exports;
  readonly #ptr: number;
  readonly #bias: boolean;
  #released = false;

  constructor(m: Exports, w: Float32Array, bias: Float32Array | null, inFeatures: number, outFeatures: number) {
    this.#m = m;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const Np = up8(outFeatures);
    // One block: the panels [Np/8][K][8], then the bias [Np] (16-byte aligned: K·Np is a multiple of 8).
    this.#ptr = allocResident(m, inFeatures * Np + Np);
    this.#bias = bias !== null;
    // Stages the raw W in the scratch: whatever an earlier call left there is gone.
    takePacked('rows', m, scratchBase(m));
    packWeight(m, w, bias, inFeatures, outFeatures, this.#ptr, this.#biasPtr());
  }

  #biasPtr(): number {
    return this.#ptr + this.inFeatures * up8(this.outFeatures) * 4;
  }

  /**
   * out[r, :] = x[r, :] · W + bias for r in [from, to). x [rows, in] → out [rows, out].
   * With a `key` (the caller's tensor holding x, whose contents never change while it lives),
   * x's rows are staged whole (up to STAGE_FLOATS) and, inside a pack scope, the next call on the
   * same key and rows — Q, K and V all project one x — finds them staged and copies nothing in.
   */
  linear(x: Float32Array, out: Float32Array, rows: number, from = 0, to = rows, key: object | null = null): void {
    if (this.#released) throw new QkvError('DISPOSED', 'cpu fast kernels: a prepared weight was used after release()');
    if (to <= from) return;
    const m = this.#m;
    const K = this.inFeatures;
    const N = this.outFeatures;
    const bias = this.#bias ? this.#biasPtr() : 0;
    const base = scratchBase(m);
    const prev = takePacked('rows', m, base);
    if (key === null || (to - from) * K > STAGE_FLOATS) {
      gemmRows(m, x, out, K, N, this.#ptr, bias, from, to);
      return;
    }
    const {
      f32,
      ptr: [xs],
      end,
    } = layout(m, [(to - from) * K]);
    if (!(prev?.key === key && prev.from === from && prev.to === to && prev.K === K))
      f32.set(x.subarray(from * K, to * K), (xs as number) >>> 2);
    gemmRows(m, x, out, K, N, this.#ptr, bias, from, to, end, xs as number);
    keepPacked({ kind: 'rows', m, base, key, from, to, K });
  }

  /**
   * Columns [c0, c1) of out[r, :] = x[r, :] · W + bias for every r < rows: only those columns'
   * panels are read, so threads can share a projection of a few rows (a decode step) by columns.
   * c0 is a multiple of 8, c1 too or N. x [rows, K], out [rows, N].
   */
  linearColumns(x: Float32Array, out: Float32Array, rows: number, c0: number, c1: number): void {
    if (this.#released) throw new QkvError('DISPOSED', 'cpu fast kernels: a prepared weight was used after release()');
    if (c1 <= c0 || rows === 0) return;
    const { inFeatures: K, outFeatures: N } = this;
    // Writes the scratch from its base: whatever an earlier call left staged there is gone.
    takePacked('rows', this.#m, scratchBase(this.#m));
    const n = c1 - c0;
    const np = up8(n);
    const chunk = Math.min(ROW_CHUNK, rows);
    const {
      f32,
      ptr: [a, c],
    } = layout(this.#m, [chunk * K, chunk * np]);
    const cF = (c as number) >>> 2;
    // The panels of columns c0 … are contiguous from c0's panel on ([Np/8][K][8]).
    const wPtr = this.#ptr + c0 * K * 4;
    const biasPtr = this.#bias ? this.#biasPtr() + c0 * 4 : 0;
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const m = Math.min(chunk, rows - r0);
      f32.set(x.subarray(r0 * K, (r0 + m) * K), (a as number) >>> 2);
      this.#m.gemm(a as number, m, K, wPtr, np, biasPtr, c as number);
      for (let r = 0; r < m; r++) out.set(f32.subarray(cF + r * np, cF + r * np + n), (r0 + r) * N + c0);
    }
  }

  /** Returns its block to the module (idempotent). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    freeResident(this.#m, this.#ptr);
  }
}

/**
 * Same contract as the reference `linear`: out[r, :] = x[r, :] · w + bias for r in [from, to).
 * x [rows, K], w [K, N], bias [N] | null → out [rows, N].
 * Memory per call: w raw + packed (2·K·N), then ROW_CHUNK rows of x and out at a time.
 */
export function linearWith(
  module: Exports | null,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  out: Float32Array,
  attrs: LinearAttrs,
  from = 0,
  to = attrs.rows,
): void {
  const m = linearIsFast(attrs) ? module : null;
  if (m === null || to <= from) {
    referenceLinear(x, w, bias, out, attrs, from, to);
    return;
  }
  const { inFeatures: K, outFeatures: N } = attrs;
  const Np = up8(N);
  // Scratch: the packed W and bias, then (gemmRows) x and out chunks; the raw W is staged above.
  const base = scratchBase(m);
  const {
    ptr: [wPacked, biasP],
    end,
  } = layout(m, [K * Np, Np]);
  const prev = takePacked('linear', m, base);
  if (!(prev?.w === w && prev.bias === bias && prev.K === K && prev.N === N))
    packWeight(m, w, bias, K, N, wPacked as number, biasP as number, end);
  keepPacked({ kind: 'linear', m, base, w, bias, K, N });
  gemmRows(m, x, out, K, N, wPacked as number, bias ? (biasP as number) : 0, from, to, end);
}
