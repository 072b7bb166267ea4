import type { BackendTensor } from './backend.js';
import { buildGraph } from './build-graph.js';
import { QkvError } from './errors.js';
import { type ExecutionPlan, execute } from './executor.js';
import type { AttentionGraph, GraphShape } from './graph.js';
import { learnedPositionalEncoding } from './inputs.js';
import { averageHeads, unbatch } from './outputs.js';
import { type CachedNorms, checkOverflow } from './overflow.js';
import { KvCache } from './session-cache.js';
import { checkCacheSize, checkPacked, checkTruncate, resolveSession } from './session-checks.js';
import {
  concatLse,
  concatQueries,
  concatTokens,
  sliceIds,
  sliceTokens,
  validateStep,
  weightsByPosition,
} from './session-pieces.js';
import { StepPlans } from './session-plan.js';
import type { WindowRing } from './session-ring.js';
import type {
  AttentionSession,
  SessionContext,
  SessionInfo,
  SessionOptions,
  SessionStepOptions,
  SessionStepResult,
} from './session-types.js';
import { formatShape, type Tensor, type TensorLike } from './tensor.js';

export type * from './session-types.js';

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
 * the s sink rows and a ring of the last w + r (r = options.rollback, default 0), min(maxLength,
 * s + w + r) rows per batch however long the session runs (session-ring.ts). Until the ring is
 * full a step runs as one piece; from then on pieces of up to r + 1 tokens, each written over the
 * token w + r positions back.
 *
 * fork() shares the cache (copy on write: the first step of a session whose cache is shared
 * copies it, O(rows)); truncate(n) drops the cache back to n tokens.
 */

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
  /** The last step's plan, moved to the next step's position when its structure is the same. */
  readonly #plans: StepPlans;
  /** The handle's params plus this session's device cache (`kCache`, `vCache`), for that cache. */
  #params: { cache: KvCache; params: ReadonlyMap<string, BackendTensor> } | null = null;

  constructor(ctx: SessionContext, options: SessionOptions) {
    this.#options = options;
    this.#ctx = ctx;
    const setup = resolveSession(ctx, options);
    this.maxLength = setup.maxLength;
    this.#batch = setup.batch;
    this.#window = setup.window;
    this.info = setup.info;
    this.#plans = new StepPlans(ctx.config, ctx.constants, ctx.backend);
    // Refuse a cache that could never be allocated, before the first step.
    if (this.#batch !== null) this.#checkCacheSize(this.#batch);
  }

  #checkCacheSize(B: number): void {
    checkCacheSize(this.#ctx.config, this.info, B, this.#window !== null);
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
      checkTruncate(this.#length, length, this.#window);
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
    checkPacked(this.#ctx, this.#packed, ids);
    this.#packed = ids !== null;
    // A window ring takes what fits, then up to r + 1 tokens at a time.
    const parts: SessionStepResult[] = [];
    for (let at = 0, n = 0; at < t; at += n) {
      n = this.#window ? this.#window.piece(offset + at, t - at, ids !== null) : t - at;
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
    // A ring of w + r rows (r > 0): which rows each query sees, by their positions.
    const ringMask = ring && this.#window?.masked(ring) ? this.#window.mask(offset, t, ring) : null;
    const shape: GraphShape = {
      batch: B,
      queryLength: t,
      keyLength: Lk,
      selfAttention: true,
      hasKeyPaddingMask: packedFeed?.[0] === 'keyPaddingMask',
      ...(packedFeed?.[0] === 'sequenceIds' ? { hasSequenceIds: true } : {}),
      hasAttnMask: ringMask !== null,
      positionOffset: offset,
      cache: { capacity, mode: device ? 'device' : 'host', ...(ring ? { ring } : {}) },
    };
    const feeds = new Map<string, Tensor>([['input', x]]);
    if (this.#ctx.table) feeds.set('positionalEncoding', learnedPositionalEncoding(this.#ctx.table, t, offset));
    if (packedFeed) feeds.set(...packedFeed);
    if (ringMask) feeds.set('attnMask', ringMask);
    // Refused before anything runs; the cached tokens' K/V norm bounds grow only when it passes.
    const kvh = config.numKVHeads;
    this.#cachedNorms ??= { k: new Float64Array(B * kvh), v: new Float64Array(B * kvh) };
    checkOverflow(config, this.#ctx.norms, feeds, shape, this.#cachedNorms);
    const checkpoint = () => this.#checkAlive();
    let params = this.#ctx.params;
    // A device step's plan (moved from the last step's when it can be); a host step plans twice.
    let graph: AttentionGraph | ExecutionPlan;
    if (device) {
      graph = this.#plans.plan(shape, outputs);
      if (this.#params?.cache !== cache) {
        const withCache = new Map([
          ...params,
          ['kCache', cache.k as BackendTensor],
          ['vCache', cache.v as BackendTensor],
        ]);
        this.#params = { cache, params: withCache };
      }
      params = this.#params.params;
    } else {
      graph = buildGraph(config, shape, this.#ctx.constants);
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
