import type { Backend, BackendTensor } from './backend.js';
import { buildGraph } from './build-graph.js';
import { assertKnownKeys, positiveInt, type ResolvedConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { DEFAULT_MAX_TENSOR_ELEMENTS, execute } from './executor.js';
import type { GraphShape } from './graph.js';
import { learnedPositionalEncoding, type ReturnWeights, type RunOptions, validateRunOptions } from './inputs.js';
import { readOutputs } from './outputs.js';
import { type CachedNorms, checkOverflow, type WeightNorms } from './overflow.js';
import { formatShape, sizeOf, type Tensor, type TensorLike, toTensor } from './tensor.js';

/**
 * KV-cache sessions (incremental decoding). Each step feeds the next t tokens x [B, t, dModel]:
 * their K and V rows are appended to a cache of `maxLength` rows per batch, and their queries
 * attend to all Lk = length + t cached keys (causal, bottom-right aligned, so query i of the
 * step sees keys 0 … length + i). Work per step is O(t·Lk) instead of O(Lk²) for a re-run, and
 * feeding a sequence token by token reproduces one causal run() over it: RoPE, sinusoidal and
 * learned PE, ALiBi, the window and maskMod/scoreMod all use absolute positions (graph.ts).
 *
 * Where the cache lives (`session.info`):
 *   'device'  the backend has a `writeRows` kernel: two [B, maxLength, KVH·hd] backend tensors,
 *             written in place; only x goes up and the outputs come down each step.
 *   'host'    it does not: core keeps K/V in Float32Arrays, runs the step's k/v projection,
 *             downloads the t new rows, and uploads all Lk rows for the attention (correct,
 *             O(Lk) transfer per step).
 */

export interface SessionOptions {
  /** Rows of cache per batch: the most tokens the session can hold. */
  maxLength: number;
  /** Batch size B; default: fixed by the first step. */
  batch?: number;
  /** 'auto' (default): 'device' when the backend can hold the cache, else 'host'. */
  cache?: 'auto' | 'device' | 'host';
}

export interface SessionStepOptions {
  /** As in `run()`: the weights of the new queries over all cached keys, [B, H, t, Lk] or averaged. */
  returnWeights?: ReturnWeights;
}

export interface SessionStepResult {
  /** ΔE for the new tokens: [B, t, dModel] (or [t, dModel] for unbatched x). */
  attention: Tensor;
  /** X + ΔE for the new tokens. */
  residual: Tensor;
  weights?: Tensor;
  /** Positions of the new tokens: [from, to). */
  positions: [number, number];
  fused: boolean;
}

export interface SessionInfo {
  readonly backend: string;
  readonly cache: 'device' | 'host';
  /** Why the cache lives there. */
  readonly reason: string;
  readonly maxLength: number;
}

export interface AttentionSession {
  readonly info: SessionInfo;
  readonly maxLength: number;
  /** Tokens in the cache (after every settled step). */
  readonly length: number;
  readonly disposed: boolean;
  /** Feeds the next tokens; steps queue in call order. Past maxLength: QkvError 'SESSION_FULL'. */
  step(x: TensorLike, options?: SessionStepOptions): Promise<SessionStepResult>;
  /** Empties the cache (after queued steps); positions restart at 0. */
  reset(): Promise<void>;
  /** Frees the cache; later steps reject with DISPOSED. */
  dispose(): Promise<void>;
}

/** What a session needs from its attention handle. */
export interface SessionContext {
  readonly config: ResolvedConfig;
  readonly backend: Backend;
  readonly backendName: string;
  readonly params: ReadonlyMap<string, BackendTensor>;
  readonly table: Tensor | null;
  /** The handle's weight norms, for the NUMERIC_OVERFLOW check of every step. */
  readonly norms: WeightNorms;
  readonly checkAlive: () => void;
  /** Counts a step as an in-flight run of the handle (dispose waits for it). */
  readonly track: (p: Promise<unknown>) => void;
  readonly forget: (s: Session) => void;
}

const SESSION_KEYS = new Set(['maxLength', 'batch', 'cache']);
const STEP_KEYS = new Set(['returnWeights']);

export class Session implements AttentionSession {
  readonly info: SessionInfo;
  readonly maxLength: number;
  readonly #ctx: SessionContext;
  #batch: number | null;
  #length = 0;
  /** Largest K/V norm bounds of the cached tokens per (b, KV head), for the overflow check. */
  #cachedNorms: CachedNorms | null = null;
  #disposed = false;
  /** Steps run one after another: each needs the cache the previous one wrote. */
  #queue: Promise<unknown> = Promise.resolve();
  /** 'device': the two backend caches [B, maxLength, KVH·hd], allocated on the first step. */
  #kCache: BackendTensor | null = null;
  #vCache: BackendTensor | null = null;
  /** 'host': the same caches in host memory. */
  #kHost: Float32Array | null = null;
  #vHost: Float32Array | null = null;

  constructor(ctx: SessionContext, options: SessionOptions) {
    this.#ctx = ctx;
    const { config } = ctx;
    if (options === null || typeof options !== 'object') {
      throw new QkvError(
        'INVALID_OPTION',
        `createSession: expected { maxLength, batch?, cache? }, got ${describeValue(options)}`,
      );
    }
    assertKnownKeys('createSession options', options, SESSION_KEYS);
    this.maxLength = positiveInt('createSession.maxLength', options.maxLength);
    this.#batch = options.batch === undefined ? null : positiveInt('createSession.batch', options.batch);
    if (!config.causal) {
      throw new QkvError(
        'INVALID_CONFIG',
        'createSession: needs config.causal true (a KV cache decodes left to right: each token sees only the ones before it), got causal false',
      );
    }
    if (config.selfAttention === false) {
      throw new QkvError(
        'INVALID_CONFIG',
        'createSession: needs self-attention (K and V come from the tokens fed), got config.selfAttention false',
      );
    }
    if (config.keyDim !== config.dModel || config.valueDim !== config.dModel) {
      throw new QkvError(
        'INVALID_CONFIG',
        `createSession: needs self-attention, but config.keyDim ${config.keyDim} / valueDim ${config.valueDim} differ from dModel ${config.dModel} (cross-attention widths)`,
      );
    }
    if (ctx.table && this.maxLength > (ctx.table.shape[0] as number)) {
      throw new QkvError(
        'INVALID_OPTION',
        `createSession.maxLength: the learned positionalEmbedding has ${ctx.table.shape[0]} rows, got maxLength ${this.maxLength}`,
      );
    }
    const mode = options.cache ?? 'auto';
    if (mode !== 'auto' && mode !== 'device' && mode !== 'host') {
      throw new QkvError(
        'INVALID_OPTION',
        `createSession.cache: expected 'auto', 'device' or 'host', got ${describeValue(mode)}`,
      );
    }
    const canDevice = typeof ctx.backend.kernels.writeRows === 'function';
    if (mode === 'device' && !canDevice) {
      throw new QkvError(
        'CAPABILITY',
        `createSession.cache: 'device' needs a writeRows kernel, which backend "${ctx.backendName}" does not have; use 'auto' or 'host'`,
      );
    }
    const device = mode === 'device' || (mode === 'auto' && canDevice);
    this.info = {
      backend: ctx.backendName,
      maxLength: this.maxLength,
      cache: device ? 'device' : 'host',
      reason: device
        ? `backend "${ctx.backendName}" holds the K/V cache and appends with writeRows`
        : mode === 'host'
          ? "requested cache: 'host'"
          : `backend "${ctx.backendName}" has no writeRows kernel: K/V are kept on the host and uploaded every step (O(length) transfer per token)`,
    };
    const width = config.numKVHeads * config.headDim;
    // Refuse a cache that could never be allocated, before the first step.
    if (this.#batch !== null && this.#batch * this.maxLength * width > DEFAULT_MAX_TENSOR_ELEMENTS) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `createSession.maxLength: a cache of ${formatShape([this.#batch, this.maxLength, width])} (B × maxLength × KVH·hd) is over the limit of ${DEFAULT_MAX_TENSOR_ELEMENTS} elements`,
      );
    }
  }

  get length(): number {
    return this.#length;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  #checkAlive(): void {
    if (this.#disposed) throw new QkvError('DISPOSED', 'session was disposed; create a new one with createSession');
    this.#ctx.checkAlive();
  }

  #enqueue<R>(fn: () => Promise<R>): Promise<R> {
    const p = this.#queue.then(fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  step(x: TensorLike, options: SessionStepOptions = {}): Promise<SessionStepResult> {
    const p = this.#enqueue(() => this.#step(x, options));
    this.#ctx.track(p);
    return p;
  }

  reset(): Promise<void> {
    return this.#enqueue(async () => {
      this.#length = 0;
      this.#cachedNorms = null;
    });
  }

  dispose(): Promise<void> {
    if (this.#disposed) return this.#queue.then(() => undefined);
    this.#disposed = true;
    this.#ctx.forget(this);
    return this.#enqueue(async () => this.#free());
  }

  #free(): void {
    for (const h of [this.#kCache, this.#vCache]) if (h) this.#ctx.backend.dispose(h);
    this.#kCache = this.#vCache = null;
    this.#kHost = this.#vHost = null;
  }

  async #step(xIn: TensorLike, options: SessionStepOptions): Promise<SessionStepResult> {
    this.#checkAlive();
    const { config, backend } = this.#ctx;
    const { dModel } = config;
    if (options === null || typeof options !== 'object') {
      throw new QkvError('INVALID_OPTION', `session.step options: expected an object, got ${describeValue(options)}`);
    }
    assertKnownKeys('session.step options', options, STEP_KEYS);
    const { outputs } = validateRunOptions(config, options as RunOptions);
    let x = toTensor('x', xIn, { finite: 'all' });
    const unbatched = x.shape.length === 2;
    if (unbatched) x = { shape: [1, ...x.shape], data: x.data };
    if (x.shape.length !== 3 || x.shape[2] !== dModel || (x.shape[1] as number) < 1) {
      throw new QkvError(
        'INVALID_SHAPE',
        `session.step x: expected [B, t, ${dModel}] (batch × new tokens × dModel) or [t, ${dModel}], got ${formatShape(xIn.shape)}`,
      );
    }
    const [B, t] = x.shape as [number, number, number];
    if (this.#batch === null) this.#batch = B;
    if (B !== this.#batch) {
      throw new QkvError(
        'INVALID_SHAPE',
        `session.step x: this session's batch is ${this.#batch}, got ${formatShape(xIn.shape)}`,
      );
    }
    const offset = this.#length;
    const Lk = offset + t;
    if (Lk > this.maxLength) {
      throw new QkvError(
        'SESSION_FULL',
        `session.step: ${t} new token(s) after ${offset} would make ${Lk}, over maxLength ${this.maxLength}; call reset() or create a session with a larger maxLength`,
      );
    }
    const width = config.numKVHeads * config.headDim;
    if (sizeOf([B, this.maxLength, width]) > DEFAULT_MAX_TENSOR_ELEMENTS) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `createSession.maxLength: a cache of ${formatShape([B, this.maxLength, width])} (B × maxLength × KVH·hd) is over the limit of ${DEFAULT_MAX_TENSOR_ELEMENTS} elements`,
      );
    }
    const device = this.info.cache === 'device';
    const shape: GraphShape = {
      batch: B,
      queryLength: t,
      keyLength: Lk,
      selfAttention: true,
      hasKeyPaddingMask: false,
      hasAttnMask: false,
      positionOffset: offset,
      cache: { capacity: this.maxLength, mode: device ? 'device' : 'host' },
    };
    const graph = buildGraph(config, shape);
    const feeds = new Map<string, Tensor>([['input', x]]);
    if (this.#ctx.table) feeds.set('positionalEncoding', learnedPositionalEncoding(this.#ctx.table, t, offset));
    // Refused before anything runs; the cached tokens' K/V norm bounds grow only when it passes.
    const kvh = config.numKVHeads;
    this.#cachedNorms ??= { k: new Float64Array(B * kvh), v: new Float64Array(B * kvh) };
    checkOverflow(config, this.#ctx.norms, feeds, shape, this.#cachedNorms);
    const checkpoint = () => this.#checkAlive();
    let params = this.#ctx.params;

    if (device) {
      if (!this.#kCache || !this.#vCache) {
        const zeros = { shape: [B, this.maxLength, width], data: new Float32Array(B * this.maxLength * width) };
        this.#kCache = await backend.upload(zeros);
        this.#vCache = await backend.upload(zeros);
      }
      params = new Map([...params, ['kCache', this.#kCache], ['vCache', this.#vCache]]);
    } else {
      // Phase 1: project the new tokens' K and V (RoPE applied) and bring them to the host.
      if (!this.#kHost || !this.#vHost) {
        this.#kHost = new Float32Array(B * this.maxLength * width);
        this.#vHost = new Float32Array(B * this.maxLength * width);
      }
      const kv = await execute({ graph, backend, params, feeds, outputs: ['k', 'v'], checkpoint, unfused: true });
      for (const [name, cache] of [
        ['k', this.#kHost],
        ['v', this.#vHost],
      ] as const) {
        const rows = (kv.tensors.get(name) as Tensor).data; // [B, t, width]
        for (let b = 0; b < B; b++) {
          cache.set(rows.subarray(b * t * width, (b + 1) * t * width), (b * this.maxLength + offset) * width);
        }
      }
      // Phase 2 feeds all Lk rows of each batch, densely packed [B, Lk, width].
      for (const [name, cache] of [
        ['kAll', this.#kHost],
        ['vAll', this.#vHost],
      ] as const) {
        const all = new Float32Array(B * Lk * width);
        for (let b = 0; b < B; b++) {
          all.set(cache.subarray(b * this.maxLength * width, (b * this.maxLength + Lk) * width), b * Lk * width);
        }
        feeds.set(name, { shape: [B, Lk, width], data: all });
      }
    }
    const { tensors, fused } = await execute({ graph, backend, params, feeds, outputs, checkpoint });
    // Only a step that completed extends the cache; a failed one is overwritten by the next.
    this.#length = Lk;
    const { attention, residual, weights } = readOutputs(graph, tensors, unbatched, options.returnWeights);
    const result: SessionStepResult = { attention, residual, positions: [offset, Lk], fused };
    if (weights) result.weights = weights;
    return result;
  }
}
