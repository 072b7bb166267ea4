import { assertKnownKeys, positiveInt, type ResolvedConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { DEFAULT_MAX_TENSOR_ELEMENTS } from './executor.js';
import { checkInputs } from './serving.js';
import { WindowRing } from './session-ring.js';
import type { SessionContext, SessionInfo, SessionOptions } from './session-types.js';
import { formatShape, sizeOf, type Tensor } from './tensor.js';

/** What a KV-cache session refuses, each with its coded error: its options, steps and truncation. */

const SESSION_KEYS = new Set(['maxLength', 'batch', 'cache', 'rollback']);

/** createSession's options against the config and backend: the session's fixed settings. */
export function resolveSession(
  ctx: SessionContext,
  options: SessionOptions,
): { maxLength: number; batch: number | null; window: WindowRing | null; info: SessionInfo } {
  const { config } = ctx;
  if (options === null || typeof options !== 'object') {
    throw new QkvError(
      'INVALID_OPTION',
      `createSession: expected { maxLength, batch?, cache?, rollback? }, got ${describeValue(options)}`,
    );
  }
  assertKnownKeys('createSession options', options, SESSION_KEYS);
  const maxLength = positiveInt('createSession.maxLength', options.maxLength);
  const batch = options.batch === undefined ? null : positiveInt('createSession.batch', options.batch);
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
  if (ctx.table && maxLength > (ctx.table.shape[0] as number)) {
    throw new QkvError(
      'INVALID_OPTION',
      `createSession.maxLength: the learned positionalEmbedding has ${ctx.table.shape[0]} rows, got maxLength ${maxLength}`,
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
  const rollback = resolveRollback(config, options.rollback);
  const window =
    config.window === null ? null : new WindowRing(config.sinkTokens ?? 0, config.window, rollback, maxLength);
  const capacity = window ? window.capacity : maxLength;
  const info: SessionInfo = {
    backend: ctx.backendName,
    maxLength,
    capacity,
    cache: device ? 'device' : 'host',
    reason: device
      ? `backend "${ctx.backendName}" holds the K/V cache and appends with writeRows`
      : mode === 'host'
        ? "requested cache: 'host'"
        : `backend "${ctx.backendName}" has no writeRows kernel: K/V are kept on the host and uploaded every step (O(length) transfer per token)`,
  };
  return { maxLength, batch, window, info };
}

/** createSession.rollback: an integer r ≥ 0 (default 0); r > 0 only for a window session. */
function resolveRollback(config: ResolvedConfig, r: unknown): number {
  if (r === undefined) return 0;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 0) {
    throw new QkvError(
      'INVALID_OPTION',
      `createSession.rollback: expected an integer ≥ 0 (extra window-ring rows for truncate and multi-token steps), got ${describeValue(r)}`,
    );
  }
  if (config.window === null && r > 0) {
    throw new QkvError(
      'INVALID_OPTION',
      `createSession.rollback: needs config.window (it sizes a window session's ring of w + rollback rows), got rollback ${r} with window null`,
    );
  }
  return r;
}

/** Refuses a cache [B, capacity, KVH·hd] that could never be allocated. */
export function checkCacheSize(config: ResolvedConfig, info: SessionInfo, B: number, windowed: boolean): void {
  const width = config.numKVHeads * config.headDim;
  if (sizeOf([B, info.capacity, width]) > DEFAULT_MAX_TENSOR_ELEMENTS) {
    throw new QkvError(
      'LIMIT_EXCEEDED',
      `createSession.maxLength: a cache of ${formatShape([B, info.capacity, width])} (B × ${windowed ? 'cache rows' : 'maxLength'} × KVH·hd) is over the limit of ${DEFAULT_MAX_TENSOR_ELEMENTS} elements`,
    );
  }
}

/** session.truncate(n) of a session holding `length` tokens (a window ring may lack what n needs). */
export function checkTruncate(length: number, n: number, ring: WindowRing | null): void {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > length) {
    throw new QkvError(
      'INVALID_OPTION',
      `session.truncate(length): expected an integer 0 … ${length} (the tokens in the cache), got ${describeValue(n)}`,
    );
  }
  if (ring && !ring.canTruncate(length, n)) {
    const held = `${ring.sinks ? `the ${ring.sinks} sink tokens and ` : ''}positions ${length - ring.size} … ${length - 1}`;
    throw new QkvError(
      'INVALID_OPTION',
      `session.truncate(length): this window session holds ${held} (a ring of w + rollback = ${ring.w} + ${ring.r}); a query after ${n} tokens needs positions from ${Math.max(ring.sinks, n - ring.w + 1)}: expected length ≤ ${ring.sinks} or ≥ ${length - ring.r - 1} (create the session with a larger rollback to go further back), got ${n}`,
    );
  }
}

/**
 * A step's ids against the session's packing (fixed by its first step, until reset()) and the
 * backend (`Backend.inputs`).
 */
export function checkPacked(ctx: SessionContext, packed: boolean | null, ids: Tensor | null): void {
  if (ids !== null && packed !== false) {
    checkInputs(ctx.backend, ctx.backendName, new Map([['sequenceIds', ids]]));
  } else if (packed !== null && (ids !== null) !== packed) {
    throw new QkvError(
      'INVALID_OPTION',
      `session.step options.sequenceIds: this session's steps ${packed ? 'are packed: expected [B, t] ids for every step' : 'have no ids: a session is packed from its first step (or after reset())'}, got ${ids === null ? 'none' : 'ids'}`,
    );
  }
}
