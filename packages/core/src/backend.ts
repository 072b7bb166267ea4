import type { ResolvedConfig } from './config.js';
import type { GraphDims } from './graph.js';
import type {
  FusedAttentionAttrs,
  LinearAttrs,
  LogSumExpAttrs,
  MaskAttrs,
  PositionalEncodingAttrs,
  RotaryAttrs,
  ScaleAttrs,
  ScoresAttrs,
  SoftmaxAttrs,
  WeightedSumAttrs,
  WriteRowsAttrs,
} from './ops.js';
import type { Tensor } from './tensor.js';

/**
 * A tensor that lives wherever the backend keeps it (a Float32Array, a GPU texture, a
 * SharedArrayBuffer). The executor only ever reads `shape` and passes handles back to the backend
 * that made them.
 */
export interface BackendTensor {
  readonly shape: readonly number[];
}

export type MaybePromise<T> = T | Promise<T>;

/** Run inputs a backend handles only when it says so (`Backend.inputs`). */
export type OptionalInput = 'sequenceIds';

/**
 * One kernel per graph op. Inputs are never mutated; every call returns a new handle that the
 * executor disposes once no later node needs it. Shapes in comments use the graph's dim names.
 */
export interface Kernels<T extends BackendTensor = BackendTensor> {
  /** → [Lq, dModel] */
  positionalEncoding(attrs: PositionalEncodingAttrs): MaybePromise<T>;
  /** a + b, where b broadcasts over a's leading dims (PE [Lq, dModel] onto E [B, Lq, dModel]). */
  add(a: T, b: T): MaybePromise<T>;
  /** x [rows, in] · w [in, out] + bias [out] → [rows, out] (row-vector weights). */
  linear(x: T, w: T, bias: T | null, attrs: LinearAttrs): MaybePromise<T>;
  /** q [B, Lq, H·hd], k [B, Lk, KVH·hd] → [B, H, Lq, Lk]; head h reads KV head h / (H/KVH). */
  scores(q: T, k: T, attrs: ScoresAttrs): MaybePromise<T>;
  /** s · scale, elementwise. */
  scale(s: T, attrs: ScaleAttrs): MaybePromise<T>;
  /**
   * scaled [B, H, Lq, Lk] (+ attnMask [Lq, Lk]); −∞ where causal hides a key or
   * keyPaddingMask [B, Lk] is nonzero. The optional `ScoreModifiers` in attrs (window, ALiBi,
   * maskMod, scoreMod, softcap, sinkTokens, keyOffset) arrive only on backends whose
   * `supports()` accepted them. `sequenceIds` [B, Lk] (integers as floats, packed sequences)
   * arrives only on backends whose `inputs` list it: key j is hidden from query row i unless
   * ids[b, j] = ids[b, i + Lk − Lq].
   */
  mask(s: T, keyPaddingMask: T | null, attnMask: T | null, attrs: MaskAttrs, sequenceIds?: T | null): MaybePromise<T>;
  /**
   * Row softmax over the last axis, max-subtracted; a row that is all −∞ gives zeros. With
   * `attrs.sinks` (config.sinks) exp(sinks[h]) joins each row's denominator (rows sum to < 1).
   */
  softmax(s: T, attrs: SoftmaxAttrs): MaybePromise<T>;
  /** weights [B, H, Lq, Lk] · v [B, Lk, KVH·hd] → heads [B, Lq, H·hd]. */
  weightedSum(weights: T, v: T, attrs: WeightedSumAttrs): MaybePromise<T>;
  /** RoPE on x [B, L, heads·hd] → same shape. Needed for positionalEncoding 'rotary'. */
  rotary?(x: T, attrs: RotaryAttrs): MaybePromise<T>;
  /**
   * KV-cache append: writes rows [B, t, width] into cache [B, maxLength, width] at rows
   * offset … offset+t−1, in place, and returns `cache` itself (not a new handle). Backends that
   * have it keep a session's cache on the device; without it core keeps K/V on the host and
   * uploads all of it every step (correct, O(L) transfer per step; `session.info` says which).
   * Backends with `writeRows` must honour `keyCapacity` in scores/weightedSum/fusedAttention.
   */
  writeRows?(cache: T, rows: T, attrs: WriteRowsAttrs): MaybePromise<T>;
  /**
   * masked [B, H, Lq, Lk] → lse [B, H, Lq]: the natural log of each row's softmax denominator,
   * max-subtracted (m + log Σ exp(s − m)), with exp(sinks[h]) in it when `attrs.sinks` (as in
   * softmax); −∞ for a row with no visible key and no sink. Needed for `returnLse` unfused.
   */
  logSumExp?(s: T, attrs: LogSumExpAttrs): MaybePromise<T>;
}

/**
 * Whether a backend can run a config's optional features (see `requiredFeatures`): `true`, or
 * the reason it cannot. A backend without `supports` is taken to run only the base features.
 */
export type SupportsFn = (config: ResolvedConfig) => true | string;

/** The optional fused path; the executor uses it when no intermediate score tensor is wanted. */
export interface FusedKernels<T extends BackendTensor = BackendTensor> {
  /** q, k, v, masks as in `Kernels` → heads [B, Lq, H·hd], without materialising [Lq, Lk]. */
  fusedAttention(
    q: T,
    k: T,
    v: T,
    keyPaddingMask: T | null,
    attnMask: T | null,
    attrs: FusedAttentionAttrs,
    /** [B, Lk], as in `Kernels.mask`; blocks of keys with no id of the query's are skipped. */
    sequenceIds?: T | null,
  ): MaybePromise<T>;
  /**
   * As `fusedAttention`, plus lse [B, H, Lq] from the same pass (the running max and sum of the
   * online softmax): the log of the softmax denominator, log Σ_j exp(s_ij) over the visible
   * scaled scores (+ exp(sinks[h]) with `attrs.sinks`), −∞ when nothing is in it. Without it, a
   * run with `returnLse` takes the unfused path (the result says `fused: false`).
   */
  fusedAttentionLse?(
    q: T,
    k: T,
    v: T,
    keyPaddingMask: T | null,
    attnMask: T | null,
    attrs: FusedAttentionAttrs,
    sequenceIds?: T | null,
  ): MaybePromise<readonly [heads: T, lse: T]>;
}

export interface Backend<T extends BackendTensor = BackendTensor> {
  readonly name: string;
  /** Copies a host tensor to the backend. */
  upload(t: Tensor): MaybePromise<T>;
  /** Copies a backend tensor to the host. */
  download(t: T): Promise<Tensor>;
  /** Frees a handle. Idempotent. */
  dispose(t: T): void;
  /**
   * Optional: a session's KV cache [B, capacity, KVH·hd], holding `data` (zeros when absent),
   * placed where the backend's decode kernel reads it in place (the cpu/workers decode arena).
   * Without it, core uploads the data.
   */
  allocateCache?(shape: readonly number[], data?: Float32Array): MaybePromise<T>;
  readonly kernels: Kernels<T>;
  readonly fused?: FusedKernels<T>;
  /** As on the factory, for what only the created backend knows (e.g. what gpu.js can compile). */
  readonly supports?: SupportsFn;
  /**
   * Optional run inputs it accepts beyond the base ones. 'sequenceIds': mask and fusedAttention
   * take the packed-sequence ids. A run passing an input its backend does not list is refused
   * with CAPABILITY (a backend unaware of an input would silently ignore it).
   */
  readonly inputs?: readonly OptionalInput[];
  /**
   * Throws a `QkvError('LIMIT_EXCEEDED' | 'CAPABILITY')` before any work when a graph with these
   * dims cannot run here (texture limits, memory). Optional.
   */
  checkLimits?(dims: GraphDims, fused: boolean): void;
  /** Live handle count, for leak tests. */
  liveTensors?(): number;
  /**
   * Which build of its kernels runs, for a backend that has several (cpu and workers: the
   * WebAssembly 'relaxed-simd' or 'simd128' build, or 'reference'); `selection.kernelBuild`
   * reports it. Optional.
   */
  readonly kernelBuild?: string;
  /**
   * Optional, for a backend that queues kernels and submits them in batches (workers). The
   * executor calls it with one token per run right before each of that run's kernel calls, and
   * with null right after (kernels are called synchronously in between), so the backend can
   * batch one run's kernels and keep concurrent runs apart. Such a backend's kernels may return
   * handles whose data is not computed yet; `download` waits for it. A backend may also use it
   * only to know which run a kernel belongs to (cpu: operands staged by one kernel of a run are
   * reused by the next).
   */
  useQueue?(token: object | null): void;
  /** Frees everything the backend holds (threads, contexts). Idempotent. */
  destroy(): MaybePromise<void>;
}

export type Availability = { available: true; detail?: string } | { available: false; reason: string };

export interface BackendCreateOptions {
  /** Backend-specific options (e.g. `{ threads: 2 }` for workers). */
  readonly [key: string]: unknown;
}

/** What a backend package exports and a registry holds. Registering has no side effects. */
export interface BackendFactory {
  readonly name: string;
  /** Higher wins under `backend: 'auto'`. */
  readonly priority: number;
  readonly description?: string;
  /** Probes the environment; never throws. */
  isAvailable(): Promise<Availability>;
  /**
   * Which optional features (rotary, alibi, window, maskMod, scoreMod) it runs: `auto` skips a
   * backend that answers with a reason, an explicit name throws CAPABILITY. Absent: base only.
   */
  readonly supports?: SupportsFn;
  /**
   * The `backendOptions` keys it reads. Under `auto` each backend that declares them is given
   * only its own keys, so one options object can hold every candidate's (`{ workerUrl }` for
   * workers does not upset cpu); one without it gets them all. Asked for by name, a backend gets
   * the whole object.
   */
  readonly optionKeys?: readonly string[];
  create(options?: BackendCreateOptions): Promise<Backend>;
}
