import {
  assertKnownKeys,
  type Backend,
  type BackendCreateOptions,
  type BackendFactory,
  type BackendTensor,
  describeValue,
  type FusedAttentionAttrs,
  type FusedKernels,
  type Kernels,
  type LinearAttrs,
  QkvError,
  sizeOf,
  type Tensor,
} from '@qkv/core';
import type { FastKernels, KernelBuild, KernelChoice, PreparedWeight } from './fast/index.js';
import * as fast from './fast/index.js';
import * as k from './kernels/index.js';

/**
 * Which kernels the backend runs (`backendOptions.kernels`):
 * - 'fast' (default): the best WebAssembly build this runtime has — 'relaxed-simd' (FMA) where
 *   the engine validates relaxed SIMD, else 'simd128' — for `linear` and `fusedAttention`, the
 *   reference kernels for every other op and for attrs the fast ones do not implement; the
 *   reference kernels alone where WebAssembly SIMD is missing (reported in `kernelBuild`);
 * - 'relaxed-simd' | 'simd128': that build, refused with CAPABILITY where it cannot run;
 * - 'reference': the plain TypeScript kernels only (the portable, readable path, and the one the
 *   conformance suite also runs so every path stays correct).
 */
export type CpuKernelChoice = KernelChoice;
export interface CpuBackendOptions {
  kernels?: CpuKernelChoice;
}
const OPTION_KEYS = new Set(['kernels']);

function resolveOptions(options: BackendCreateOptions | undefined): KernelBuild {
  const o = options ?? {};
  if (typeof o !== 'object' || o === null) {
    throw new QkvError(
      'INVALID_OPTION',
      `backendOptions (cpu): expected an object like { kernels: 'reference' }, got ${describeValue(o)}`,
    );
  }
  assertKnownKeys('backendOptions (cpu)', o, OPTION_KEYS);
  return fast.resolveKernelChoice((o as CpuBackendOptions).kernels, 'cpu');
}

/** A cpu tensor is just its data; `disposed` catches use-after-free in tests. */
export class CpuTensor implements BackendTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  /** A KV cache in the decode arena: `data` is a view of the arena's memory at `arena.ptr`. */
  readonly arena: fast.ArenaRef | null;
  disposed = false;
  constructor(
    shape: readonly number[],
    data: Float32Array = new Float32Array(sizeOf(shape)),
    arena: fast.ArenaRef | null = null,
  ) {
    this.shape = shape;
    this.data = data;
    this.arena = arena;
  }
}

function data(t: CpuTensor | null): Float32Array | null {
  if (t === null) return null;
  if (t.disposed) throw new QkvError('DISPOSED', 'cpu backend: a tensor was used after it was disposed');
  return t.data;
}
const d = (t: CpuTensor) => data(t) as Float32Array;

/**
 * Arrays of disposed tensors kept for the next tensor of the same length: a fresh multi-MiB
 * Float32Array costs its zeroing and a page fault per 4 KiB on first write, ~5× a write into a
 * warm one (3 MiB: ~1 ms vs ~0.2 ms), and a whole-layer run makes seven of them. A decode step
 * makes seven of one row each (x, q, k, v, heads, ΔE, E'): every array past V8's on-heap size
 * is a trip into the runtime for its backing store, so rows of ≥ POOL_MIN floats (1 KiB) are
 * kept too. At most POOL_BYTES are held (released with the backend). Only kernels that write
 * every element of their output take a pooled array (`#reused`).
 */
const POOL_BYTES = 32 << 20;
const POOL_MIN = 256;

export class CpuBackend implements Backend<CpuTensor> {
  readonly name = 'cpu';
  readonly inputs = ['sequenceIds'] as const;
  readonly #live = new Set<CpuTensor>();
  /** What runs `linear` and `fusedAttention`: a WebAssembly build, or the reference kernels. */
  readonly kernelBuild: KernelBuild;
  readonly #linear: typeof k.linear;
  readonly #fusedAttention: typeof k.fusedAttention;
  /** Where KV caches live for the decode kernel (fast path only): created on the first cache. */
  #arena: fast.DecodeArena | string | null = null;
  readonly #fast: FastKernels | null;
  /**
   * Projection weights packed once into the module's memory, per weight tensor (the handle's
   * params, uploaded once): every run and session step after the first copies only x. Safe to
   * key by the tensor: upload() made it a private copy, and no kernel writes into a tensor in
   * place except writeRows (KV caches), which drops any packing of its target.
   */
  readonly #prepared = new Map<CpuTensor, { bias: CpuTensor | null; attrs: LinearAttrs; weight: PreparedWeight }>();
  /** Arrays of disposed tensors by length (see POOL_BYTES), and their total bytes. */
  readonly #pool = new Map<number, Float32Array[]>();
  #pooledBytes = 0;
  /** The run whose kernels run now (useQueue) and the pack scope it has (fast/scope.ts). */
  #run: object | null = null;
  #runScope = 0;
  /** Scratch for the decode kernel's partials (`#partials`). */
  #records = new Float32Array(0);

  /** Throws INVALID_OPTION / CAPABILITY for a choice that cannot run here (as `create` does). */
  constructor(options: CpuBackendOptions = {}) {
    this.kernelBuild = fast.resolveKernelChoice(options.kernels, 'cpu');
    this.#fast = this.kernelBuild === 'reference' ? null : fast.fastKernels(this.kernelBuild);
    const kernels = this.#fast ?? k;
    this.#linear = kernels.linear;
    this.#fusedAttention = kernels.fusedAttention;
  }

  #make(shape: readonly number[], arr?: Float32Array, arena: fast.ArenaRef | null = null): CpuTensor {
    const t = new CpuTensor(shape, arr, arena);
    this.#live.add(t);
    return t;
  }

  /** A tensor whose array may hold a disposed tensor's values: only for outputs written whole. */
  #reused(shape: readonly number[]): CpuTensor {
    const n = sizeOf(shape);
    const arr = this.#pool.get(n)?.pop();
    if (arr === undefined) return this.#make(shape);
    this.#pooledBytes -= n * 4;
    return this.#make(shape, arr);
  }

  #recycle(t: CpuTensor): void {
    const n = t.data.length;
    if (t.arena !== null || n < POOL_MIN || this.#pooledBytes + n * 4 > POOL_BYTES) return;
    const list = this.#pool.get(n);
    if (list) list.push(t.data);
    else this.#pool.set(n, [t.data]);
    this.#pooledBytes += n * 4;
  }

  /**
   * A KV cache holding `data` (zeros when absent): in the decode arena when the SIMD kernels run
   * here (so decode steps read it in place), else a plain array. `decodeArena` says which and why.
   */
  allocateCache(shape: readonly number[], data?: Float32Array): CpuTensor {
    if (this.#arena === null)
      this.#arena = this.kernelBuild !== 'reference' ? fast.createArena() : 'kernels: reference';
    const n = sizeOf(shape);
    if (typeof this.#arena === 'string') return this.#make([...shape], data?.slice());
    const ptr = this.#arena.alloc(n * 4);
    const t = this.#make([...shape], this.#arena.f32(ptr, n), { memory: this.#arena.memory, id: this.#arena.id, ptr });
    if (data) t.data.set(data);
    return t;
  }

  /** Whether caches go to the decode arena: true, or why not (null before the first cache). */
  get decodeArena(): true | string | null {
    return this.#arena === null ? null : typeof this.#arena === 'string' ? this.#arena : true;
  }

  /** heads (and lse) through the decode kernel when q is a few rows against arena caches. */
  #decode(
    q: CpuTensor,
    key: CpuTensor,
    v: CpuTensor,
    masked: boolean,
    attrs: FusedAttentionAttrs,
    out: Float32Array,
    lse: Float32Array | null,
  ): boolean {
    if (key.arena === null || v.arena === null || !fast.decodeApplies(attrs, masked)) return false;
    fast.decodeAttention(
      key.arena,
      v.arena,
      d(q),
      out,
      lse,
      attrs,
      this.#partials(attrs.numKVHeads * fast.partialFloats(attrs)),
    );
    return true;
  }

  /** The decode kernel's partial records (contents undefined: it overwrites what it reads), grown as needed. */
  #partials(floats: number): Float32Array {
    if (this.#records.length < floats) this.#records = new Float32Array(floats);
    return this.#records;
  }

  upload(t: Tensor): CpuTensor {
    // A private copy: the caller may reuse its array while a run is in flight.
    const out = this.#reused([...t.shape]);
    out.data.set(t.data);
    return out;
  }

  async download(t: CpuTensor): Promise<Tensor> {
    // slice() is a memcpy; Float32Array.from iterates (~30× slower, measured).
    return { shape: [...t.shape], data: d(t).slice() };
  }

  dispose(t: CpuTensor): void {
    if (!t.disposed && t.arena !== null && typeof this.#arena === 'object' && this.#arena !== null)
      this.#arena.free(t.arena.ptr);
    // Nothing reads a disposed tensor's array (data() refuses it; downloads are copies).
    if (!t.disposed && this.#live.has(t)) this.#recycle(t);
    t.disposed = true;
    this.#live.delete(t);
    this.#unprepare(t);
  }

  /** W packed in the module for `linear` (made on first use), or null for the reference path. */
  #preparedFor(w: CpuTensor, bias: CpuTensor | null, attrs: LinearAttrs): PreparedWeight | null {
    if (this.#fast === null) return null;
    const have = this.#prepared.get(w);
    // The very attrs it was prepared under (a session's moved plan keeps a linear step's attrs).
    if (have?.attrs === attrs && have.bias === bias) return have.weight;
    if (!fast.linearIsFast(attrs)) return null;
    if (
      have?.bias === bias &&
      have.weight.inFeatures === attrs.inFeatures &&
      have.weight.outFeatures === attrs.outFeatures
    ) {
      have.attrs = attrs;
      return have.weight;
    }
    this.#unprepare(w);
    const weight = this.#fast.prepareWeight(d(w), data(bias), attrs);
    this.#prepared.set(w, { bias, attrs, weight });
    return weight;
  }

  #unprepare(w: CpuTensor): void {
    this.#prepared.get(w)?.weight.release();
    this.#prepared.delete(w);
  }

  /**
   * One pack scope per run (the executor names the run before each of its kernels): inside it,
   * x staged by the q projection serves k and v. Tensors never change while they live, except a
   * cache under writeRows, which forgets what is staged.
   */
  useQueue(token: object | null): void {
    if (this.#fast === null) return;
    if (token === null) fast.endPackScope();
    else if (token === this.#run) fast.resumePackScope(this.#runScope);
    else {
      this.#run = token;
      this.#runScope = fast.beginPackScope();
    }
  }

  liveTensors(): number {
    return this.#live.size;
  }

  readonly kernels: Kernels<CpuTensor> = {
    positionalEncoding: (attrs) => this.#make([attrs.length, attrs.dModel], k.positionalEncoding(attrs)),
    add: (a, b) => {
      const out = this.#reused(a.shape);
      k.add(d(a), d(b), out.data);
      return out;
    },
    linear: (x, w, bias, attrs) => {
      const out = this.#reused([...x.shape.slice(0, -1), attrs.outFeatures]);
      const prepared = this.#preparedFor(w, bias, attrs);
      if (prepared) prepared.linear(d(x), out.data, attrs.rows, 0, attrs.rows, x);
      else this.#linear(d(x), d(w), data(bias), out.data, attrs);
      return out;
    },
    scores: (q, key, attrs) => {
      const out = this.#make([attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength]);
      k.scores(d(q), d(key), out.data, attrs);
      return out;
    },
    scale: (s, attrs) => {
      const out = this.#make(s.shape);
      k.scale(d(s), out.data, attrs);
      return out;
    },
    mask: (s, pad, am, attrs, ids) => {
      const out = this.#make(s.shape);
      k.mask(d(s), data(pad), data(am), out.data, attrs, 0, k.rowsOf(attrs), data(ids ?? null));
      return out;
    },
    softmax: (s, attrs) => {
      const out = this.#make(s.shape);
      k.softmax(d(s), out.data, attrs);
      return out;
    },
    weightedSum: (w, v, attrs) => {
      const out = this.#make([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim]);
      k.weightedSum(d(w), d(v), out.data, attrs);
      return out;
    },
    rotary: (x, attrs) => {
      const out = this.#make(x.shape);
      k.rotary(d(x), out.data, attrs);
      return out;
    },
    // Appends in place and hands back the cache itself (a session's persistent tensor).
    writeRows: (cache, rows, attrs) => {
      this.#unprepare(cache);
      fast.forgetPacked();
      k.writeRows(d(cache), d(rows), attrs);
      return cache;
    },
    logSumExp: (s, attrs) => {
      const out = this.#make(s.shape.slice(0, -1));
      k.logSumExp(d(s), out.data, attrs);
      return out;
    },
  };

  readonly fused: FusedKernels<CpuTensor> = {
    fusedAttention: (q, key, v, pad, am, attrs, ids) => this.#fused(q, key, v, pad, am, attrs, ids ?? null, null),
    fusedAttentionLse: (q, key, v, pad, am, attrs, ids) => {
      const lse = this.#make([attrs.batch, attrs.numHeads, attrs.queryLength]);
      return [this.#fused(q, key, v, pad, am, attrs, ids ?? null, lse.data), lse] as const;
    },
  };

  /** heads [B, Lq, H·hd] (and lse into `lse` [B, H, Lq] when given); packed when sequence ids come. */
  #fused(
    q: CpuTensor,
    key: CpuTensor,
    v: CpuTensor,
    pad: CpuTensor | null,
    am: CpuTensor | null,
    attrs: FusedAttentionAttrs,
    ids: CpuTensor | null,
    lse: Float32Array | null,
  ): CpuTensor {
    const out = this.#reused([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim]);
    if (this.#decode(q, key, v, pad !== null || am !== null || ids !== null, attrs, out.data, lse)) return out;
    const args = [d(q), d(key), d(v), data(pad), data(am), out.data, attrs, 0, k.rowsOf(attrs), lse] as const;
    if (ids) k.packedFusedAttention(this.#fusedAttention, ...args, d(ids));
    else this.#fusedAttention(...args);
    return out;
  }

  destroy(): void {
    for (const t of this.#live) t.disposed = true;
    this.#live.clear();
    if (typeof this.#arena === 'object' && this.#arena !== null) fast.releaseDecodeKernel(this.#arena.id);
    this.#arena = null;
    for (const { weight } of this.#prepared.values()) weight.release();
    this.#prepared.clear();
    this.#pool.clear();
    this.#pooledBytes = 0;
    this.#run = null;
  }
}

/** The cpu backend's factory: register it with `registry.register(cpuBackend)`. */
export const cpuBackend: BackendFactory = {
  name: 'cpu',
  priority: 10,
  description:
    'on the calling thread: WebAssembly matmul and flash attention (relaxed-SIMD FMA build where the runtime has it, else SIMD128), the plain TypeScript reference kernels without SIMD (or with { kernels: "reference" })',
  isAvailable: async () => ({ available: true }),
  // The reference kernels implement every optional feature (rotary, alibi, window, maskMod, scoreMod).
  supports: () => true,
  optionKeys: [...OPTION_KEYS],
  create: async (options?: BackendCreateOptions) => {
    const kernels = resolveOptions(options);
    // Compile asynchronously up front: browsers refuse large synchronous compiles on the main thread.
    if (kernels !== 'reference') {
      const problem = await fast.preloadFastKernels(kernels);
      if (problem !== null) throw new QkvError('CAPABILITY', `cpu backend: kernels '${kernels}': ${problem}`);
    }
    return new CpuBackend({ kernels });
  },
};
