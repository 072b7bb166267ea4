import type { LinearAttrs } from '@qkv/core';
import type { fusedAttention as referenceFusedAttention } from '../kernels/fusedAttention.js';
import type { linear as referenceLinear } from '../kernels/linear.js';
import { fusedAttentionWith } from './attention.js';
import {
  bestWasmBuild,
  buildExports,
  type KernelExports as Exports,
  preloadBuild,
  type WasmBuild,
  wasmMemoryBytes,
} from './builds.js';
import { linearWith, PreparedWeight } from './linear.js';

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
 * memory stays a few MiB for weights and one head's K/V, whatever the sequence length
 * (attention.ts: each of Q, K, V and the heads is one copy per batch up to STAGE_FLOATS, and the
 * per-head gathers, packing and scatters run inside the module).
 *
 * Precision: products accumulate in float32 (the reference uses float64); over K = 768 terms
 * that is ~1e-6 relative, well inside the conformance tolerance (atol 1e-4, rtol 1e-3).
 */

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
