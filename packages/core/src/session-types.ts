import type { Backend, BackendTensor } from './backend.js';
import type { ResolvedConfig } from './config.js';
import type { GraphConstants } from './graph.js';
import type { ReturnWeights } from './inputs.js';
import type { WeightNorms } from './overflow.js';
import type { Session } from './session.js';
import type { Tensor, TensorLike } from './tensor.js';

/** The public shapes of KV-cache sessions (session.ts) and what a session needs from its handle. */

export interface SessionOptions {
  /** Rows of cache per batch: the most tokens the session can hold. */
  maxLength: number;
  /** Batch size B; default: fixed by the first step. */
  batch?: number;
  /** 'auto' (default): 'device' when the backend can hold the cache, else 'host'. */
  cache?: 'auto' | 'device' | 'host';
  /**
   * Window sessions only (config.window w, optional sinkTokens s): r ≥ 0 extra ring rows, for
   * speculative decoding with a sliding-window model. The cache keeps s + w + r rows per batch
   * (at most maxLength) whatever the session's length; once the ring is full, `truncate(n)`
   * works for any n ≥ length − r − 1 (and n ≤ s), and a step runs up to r + 1 tokens per graph
   * run (a packed session's: one). Default 0: a ring of exactly w, one token per run once full.
   * INVALID_OPTION for a non-integer or negative r, or r > 0 without config.window.
   */
  rollback?: number;
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
   * Cache rows per batch: maxLength, or min(maxLength, s + w + r) for a window session (the
   * sinks and a ring of the last w + r keys, r = the `rollback` option), whatever its length.
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
   * (or, in a full window ring, when positions it needs were already overwritten: a ring of
   * w + r rows goes back to any length ≥ this.length − r − 1, or to the sink tokens).
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
