import type { Backend, BackendTensor } from './backend.js';
import { buildGraph } from './build-graph.js';
import { assertKnownKeys, positiveInt, type ResolvedConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { DEFAULT_MAX_TENSOR_ELEMENTS, execute } from './executor.js';
import type { GraphConstants, GraphShape } from './graph.js';
import { learnedPositionalEncoding, type ReturnWeights } from './inputs.js';
import { averageHeads, unbatch } from './outputs.js';
import { type CachedNorms, checkOverflow, type WeightNorms } from './overflow.js';
import { checkInputs } from './serving.js';
import { KvCache } from './session-cache.js';
import {
  concatLse,
  concatQueries,
  concatTokens,
  sliceIds,
  sliceTokens,
  validateStep,
  weightsByPosition,
} from './session-pieces.js';
import { WindowRing } from './session-ring.js';
import { formatShape, sizeOf, type Tensor, type TensorLike } from './tensor.js';

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
 *
 * Window sessions (config.window w, optional sinkTokens s) keep only what a future query can see:
 * the s sink rows and a ring of the last w, min(maxLength, s + w) rows per batch however long the
 * session runs (session-ring.ts). Until the ring is full a step runs as one piece; from then on
 * one token at a time, each written over the token w positions back.
 *
 * fork() shares the cache (copy on write: the first step of a session whose cache is shared
 * copies it, O(rows)); truncate(n) drops the cache back to n tokens.
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
  /**
   * Packed decoding: the sequence of each new token, [B, t] integers ([t] for unbatched x). The
   * session keeps every cached token's id, and a new token sees only the cached and new tokens
   * of its own id (causal as always). A session is packed or not from its first step (until
   * reset()): then every step gives ids, or none does. Positions stay the row's, so a packed
   * session equals one causal run() over its tokens with their sequenceIds.
   */
  sequenceIds?: TensorLike;
  /** As in `run()`: lse [B, H, t] of the new queries over all cached keys. */
  returnLse?: boolean;
}

export interface SessionStepResult {
  /** ΔE for the new tokens: [B, t, dModel] (or [t, dModel] for unbatched x). */
  attention: Tensor;
  /** X + ΔE for the new tokens. */
  residual: Tensor;
  weights?: Tensor;
  lse?: Tensor;
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
  /**
   * Cache rows per batch: maxLength, or min(maxLength, s + w) for a window session (the sinks
   * and a ring of the last w keys), whatever the session's length.
   */
  readonly capacity: number;
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
  /**
   * Drops the cache back to its first `length` tokens (after queued steps): later steps equal a
   * fresh session fed those tokens. INVALID_OPTION unless 0 ≤ length ≤ this.length is an integer
   * (or, in a compacted window session, when positions it needs were already dropped).
   */
  truncate(length: number): Promise<void>;
  /**
   * A new session continuing from this one's tokens (after the steps queued before the call);
   * stepping either never changes the other. O(1): the cache is shared until one of them writes,
   * which copies it once. DISPOSED for a disposed session.
   */
  fork(): AttentionSession;
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
  readonly constants: GraphConstants;
  readonly checkAlive: () => void;
  /** Counts a step as an in-flight run of the handle (dispose waits for it). */
  readonly track: (p: Promise<unknown>) => void;
  readonly forget: (s: Session) => void;
  /** Registers a forked session with the handle (disposed with it). */
  readonly adopt: (s: Session) => void;
}

const SESSION_KEYS = new Set(['maxLength', 'batch', 'cache']);

export class Session implements AttentionSession {
  readonly info: SessionInfo;
  readonly maxLength: number;
  readonly #ctx: SessionContext;
  readonly #options: SessionOptions;
  #batch: number | null;
  /** Tokens fed (positions 0 … length − 1). */
  #length = 0;
  /** Largest K/V norm bounds of the cached tokens per (b, KV head), for the overflow check. */
  #cachedNorms: CachedNorms | null = null;
  #disposed = false;
  /** Steps run one after another: each needs the cache the previous one wrote. */
  #queue: Promise<unknown> = Promise.resolve();
  /** [B, capacity, KVH·hd] K and V, allocated on the first step (maybe shared with forks). */
  #cache: KvCache | null = null;
  /** Whether the steps carry sequenceIds: fixed by the first step after creation or reset(). */
  #packed: boolean | null = null;
  /** Window sessions: the sink rows and the ring of the last w. */
  readonly #window: WindowRing | null;

  constructor(ctx: SessionContext, options: SessionOptions) {
    this.#options = options;
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
    this.#window =
      config.window === null ? null : new WindowRing(config.sinkTokens ?? 0, config.window, this.maxLength);
    const capacity = this.#window ? this.#window.capacity : this.maxLength;
    this.info = {
      backend: ctx.backendName,
      maxLength: this.maxLength,
      capacity,
      cache: device ? 'device' : 'host',
      reason: device
        ? `backend "${ctx.backendName}" holds the K/V cache and appends with writeRows`
        : mode === 'host'
          ? "requested cache: 'host'"
          : `backend "${ctx.backendName}" has no writeRows kernel: K/V are kept on the host and uploaded every step (O(length) transfer per token)`,
    };
    // Refuse a cache that could never be allocated, before the first step.
    if (this.#batch !== null) this.#checkCacheSize(this.#batch);
  }

  #checkCacheSize(B: number): void {
    const width = this.#ctx.config.numKVHeads * this.#ctx.config.headDim;
    if (sizeOf([B, this.info.capacity, width]) > DEFAULT_MAX_TENSOR_ELEMENTS) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `createSession.maxLength: a cache of ${formatShape([B, this.info.capacity, width])} (B × ${this.#window ? 'cache rows' : 'maxLength'} × KVH·hd) is over the limit of ${DEFAULT_MAX_TENSOR_ELEMENTS} elements`,
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
      this.#packed = null;
      this.#cachedNorms = null;
    });
  }

  truncate(length: number): Promise<void> {
    return this.#enqueue(async () => {
      this.#checkAlive();
      if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > this.#length) {
        throw new QkvError(
          'INVALID_OPTION',
          `session.truncate(length): expected an integer 0 … ${this.#length} (the tokens in the cache), got ${describeValue(length)}`,
        );
      }
      const ring = this.#window;
      if (ring && !ring.canTruncate(this.#length, length)) {
        const held = `${ring.sinks ? `the ${ring.sinks} sink tokens and ` : ''}positions ${this.#length - ring.w} … ${this.#length - 1}`;
        throw new QkvError(
          'INVALID_OPTION',
          `session.truncate(length): this window session holds ${held} (a ring of w = ${ring.w}); a query after ${length} tokens needs positions from ${Math.max(ring.sinks, length - ring.w + 1)}: expected length ≤ ${ring.sinks} or ≥ ${this.#length - 1}, got ${length}`,
        );
      }
      this.#length = length;
    });
  }

  fork(): AttentionSession {
    this.#checkAlive();
    const child = new Session(this.#ctx, this.#options);
    // The child starts once every step queued on this session before fork() has settled.
    child.#queue = this.#enqueue(async () => {
      child.#batch = this.#batch;
      child.#length = this.#length;
      child.#cache = this.#cache;
      child.#packed = this.#packed;
      if (this.#cache) this.#cache.refs++;
      // The overflow bounds cover every token either session holds from here on.
      child.#cachedNorms = this.#cachedNorms && { k: this.#cachedNorms.k.slice(), v: this.#cachedNorms.v.slice() };
    });
    this.#ctx.adopt(child);
    return child;
  }

  dispose(): Promise<void> {
    if (this.#disposed) return this.#queue.then(() => undefined);
    this.#disposed = true;
    this.#ctx.forget(this);
    return this.#enqueue(async () => {
      this.#cache?.release(this.#ctx.backend);
      this.#cache = null;
    });
  }

  async #step(xIn: TensorLike, options: SessionStepOptions): Promise<SessionStepResult> {
    this.#checkAlive();
    const { x, unbatched, outputs, ids } = validateStep(this.#ctx.config, xIn, options);
    const [B, t] = x.shape as [number, number, number];
    if (this.#batch === null) this.#batch = B;
    if (B !== this.#batch) {
      throw new QkvError(
        'INVALID_SHAPE',
        `session.step x: this session's batch is ${this.#batch}, got ${formatShape(xIn.shape)}`,
      );
    }
    const offset = this.#length;
    if (offset + t > this.maxLength) {
      throw new QkvError(
        'SESSION_FULL',
        `session.step: ${t} new token(s) after ${offset} would make ${offset + t}, over maxLength ${this.maxLength}; call reset() or create a session with a larger maxLength`,
      );
    }
    this.#checkCacheSize(B);
    if (ids !== null && this.#packed !== false) {
      checkInputs(this.#ctx.backend, this.#ctx.backendName, new Map([['sequenceIds', ids]]));
    } else if (this.#packed !== null && (ids !== null) !== this.#packed) {
      throw new QkvError(
        'INVALID_OPTION',
        `session.step options.sequenceIds: this session's steps ${this.#packed ? 'are packed: expected [B, t] ids for every step' : 'have no ids: a session is packed from its first step (or after reset())'}, got ${ids === null ? 'none' : 'ids'}`,
      );
    }
    this.#packed = ids !== null;
    // A window ring takes what fits, then one token at a time.
    const parts: SessionStepResult[] = [];
    for (let at = 0, n = 0; at < t; at += n) {
      n = this.#window ? this.#window.piece(offset + at, t - at) : t - at;
      const xs = n === t ? x : sliceTokens(x, at, n);
      const piece = ids === null || n === t ? ids : sliceIds(ids, at, n);
      const withWeights = options.returnWeights !== undefined && options.returnWeights !== false;
      parts.push(await this.#stepRows(xs, piece, outputs, withWeights));
    }
    const Lk = offset + t;
    const take = (name: 'attention' | 'residual'): Tensor => {
      const tt = parts.length === 1 ? (parts[0] as SessionStepResult)[name] : concatTokens(parts.map((r) => r[name]));
      return unbatched ? unbatch(tt, ['B']) : tt;
    };
    const result: SessionStepResult = {
      attention: take('attention'),
      residual: take('residual'),
      positions: [offset, Lk],
      fused: parts.every((r) => r.fused),
    };
    if (options.returnLse) {
      const lse = concatLse(parts.map((r) => r.lse as Tensor));
      result.lse = unbatched ? unbatch(lse, ['B']) : lse;
    }
    if (options.returnWeights) {
      // [B, H, t, Lk] over every position so far (columns past a piece's own keys are 0).
      const w = concatQueries(
        parts.map((r) => r.weights as Tensor),
        Lk,
      );
      result.weights =
        options.returnWeights === 'averaged'
          ? unbatched
            ? unbatch(averageHeads(w), ['B'])
            : averageHeads(w)
          : unbatched
            ? unbatch(w, ['B'])
            : w;
    }
    return result;
  }

  /**
   * One piece of t tokens x [B, t, dModel] (their ids [B, t] in a packed session) through the
   * cache: all of a step, or what a window ring takes at once.
   */
  async #stepRows(x: Tensor, ids: Tensor | null, outputs: string[], withWeights: boolean): Promise<SessionStepResult> {
    const { config, backend } = this.#ctx;
    const [B, t] = x.shape as [number, number, number];
    const width = config.numKVHeads * config.headDim;
    const capacity = this.info.capacity;
    const device = this.info.cache === 'device';
    if (!this.#cache) this.#cache = await KvCache.allocate(backend, device, B, capacity, width);
    // Shared with a fork: this session's writes go to its own copy.
    if (this.#cache.refs > 1) this.#cache = await this.#cache.copy(backend);
    const cache = this.#cache;
    const offset = this.#length;
    const { Lk, ring } = this.#window ? this.#window.layout(offset, t) : { Lk: offset + t, ring: undefined };
    const writeRow = ring?.writeRow ?? Lk - t;
    // Packed: the ids of every row held. A wrapped ring's rows are out of position order, so
    // its one query gets them as a padding mask (other ids hidden) instead of sequenceIds.
    let packedFeed: [string, Tensor] | null = null;
    if (ids !== null) {
      cache.writeIds(ids.data, t, writeRow);
      packedFeed = ring ? ['keyPaddingMask', cache.otherSequences(Lk, writeRow)] : ['sequenceIds', cache.idRows(Lk)];
    }
    const shape: GraphShape = {
      batch: B,
      queryLength: t,
      keyLength: Lk,
      selfAttention: true,
      hasKeyPaddingMask: packedFeed?.[0] === 'keyPaddingMask',
      ...(packedFeed?.[0] === 'sequenceIds' ? { hasSequenceIds: true } : {}),
      hasAttnMask: false,
      positionOffset: offset,
      cache: { capacity, mode: device ? 'device' : 'host', ...(ring ? { ring } : {}) },
    };
    const graph = buildGraph(config, shape, this.#ctx.constants);
    const feeds = new Map<string, Tensor>([['input', x]]);
    if (this.#ctx.table) feeds.set('positionalEncoding', learnedPositionalEncoding(this.#ctx.table, t, offset));
    if (packedFeed) feeds.set(...packedFeed);
    // Refused before anything runs; the cached tokens' K/V norm bounds grow only when it passes.
    const kvh = config.numKVHeads;
    this.#cachedNorms ??= { k: new Float64Array(B * kvh), v: new Float64Array(B * kvh) };
    checkOverflow(config, this.#ctx.norms, feeds, shape, this.#cachedNorms);
    const checkpoint = () => this.#checkAlive();
    let params = this.#ctx.params;
    if (device) {
      params = new Map([...params, ['kCache', cache.k as BackendTensor], ['vCache', cache.v as BackendTensor]]);
    } else {
      // Phase 1: project the new tokens' K and V (RoPE applied) and bring them to the host.
      const kv = await execute({ graph, backend, params, feeds, outputs: ['k', 'v'], checkpoint, unfused: true });
      cache.writeHost('k', (kv.tensors.get('k') as Tensor).data, t, writeRow);
      cache.writeHost('v', (kv.tensors.get('v') as Tensor).data, t, writeRow);
      // Phase 2 feeds all Lk rows of each batch.
      feeds.set('kAll', cache.hostRows('k', Lk));
      feeds.set('vAll', cache.hostRows('v', Lk));
    }
    const { tensors, fused } = await execute({ graph, backend, params, feeds, outputs, checkpoint });
    // Only a step that completed extends the cache; a failed one is overwritten by the next.
    this.#length = offset + t;
    const result: SessionStepResult = {
      attention: tensors.get('attention') as Tensor,
      residual: tensors.get('residual') as Tensor,
      positions: [offset, offset + t],
      fused,
    };
    if (withWeights) {
      const positionOf = (j: number) => this.#window?.positionOf(j, ring) ?? j;
      result.weights = weightsByPosition(tensors.get('weights') as Tensor, offset + t, positionOf);
    }
    const lse = tensors.get('lse');
    if (lse) result.lse = lse;
    return result;
  }
}
