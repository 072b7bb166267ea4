import type { Backend, BackendCreateOptions, BackendTensor } from './backend.js';
import { buildGraph } from './build-graph.js';
import { type AttentionConfig, assertKnownKeys, type ResolvedConfig, resolveConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { execute } from './executor.js';
import { type AttentionGraph, formatGraph, type GraphConstants, type GraphShape, type StepName } from './graph.js';
import {
  type AttentionInputs,
  type AttentionWeights,
  learnedPositionalEncoding,
  prepareInputs,
  type RunOptions,
  validateRunOptions,
  validateWeights,
} from './inputs.js';
import { readOutputs } from './outputs.js';
import { checkOverflow, type WeightNorms, weightNorms } from './overflow.js';
import { positionalEncodingAt } from './position-ids.js';
import type { BackendRegistry, Selection } from './registry.js';
import { checkInputs } from './serving.js';
import { type AttentionSession, Session, type SessionOptions } from './session.js';
import type { Tensor } from './tensor.js';

export interface AttentionResult {
  /** ΔE = concat(heads)·Wo + bo: [B, Lq, dModel]. */
  attention: Tensor;
  /** E' = X + ΔE: [B, Lq, dModel]. */
  residual: Tensor;
  /** [B, H, Lq] with `returnLse: true`: log Σ_j exp(masked score), −∞ for a query that sees nothing. */
  lse?: Tensor;
  /** [B, H, Lq, Lk] with `returnWeights: true | 'perHead'`, [B, Lq, Lk] with 'averaged'. */
  weights?: Tensor;
  /** [Lq, dModel] when the config adds a positional encoding. */
  positionalEncoding?: Tensor;
  /** The captured steps, by name. */
  captured: Partial<Record<StepName, Tensor>>;
  /** The backend that computed this result. */
  backend: string;
  /** Whether the fused scores→softmax→sum path ran. */
  fused: boolean;
}

export interface CreateAttentionOptions {
  /** A registered backend name, or 'auto' (default). */
  backend?: string;
  /** Where backends are looked up. */
  registry: BackendRegistry;
  /** Passed to the backend factory (e.g. `{ threads: 2 }`). */
  backendOptions?: BackendCreateOptions;
}

export interface Attention {
  /** The backend that runs this handle. */
  readonly backend: string;
  /** Why that backend, and why not each of the others. */
  readonly selection: Selection;
  readonly config: ResolvedConfig;
  readonly disposed: boolean;
  /** The graph for given input shapes (defaults: B=1, Lq=Lk=8, self-attention). */
  graph(shape?: Partial<GraphShape>): AttentionGraph;
  /** `graph()` as text: one line per node with op, inputs, shape and formula. */
  describe(shape?: Partial<GraphShape>): string;
  run(inputs: AttentionInputs, options?: RunOptions): Promise<AttentionResult>;
  /**
   * Incremental (KV-cache) decoding: `step(x)` feeds the next t tokens [B, t, dModel] and returns
   * their outputs, attending to every token fed so far. Needs a causal self-attention config.
   */
  createSession(options: SessionOptions): AttentionSession;
  /** Counters for leak and soak checks: live backend tensors (weights included), runs so far. */
  stats(): AttentionStats;
  /** Frees the backend's copies of the weights and the backend itself; in-flight runs reject. */
  dispose(): Promise<void>;
}

export interface AttentionStats {
  /** Backend tensors alive now, the uploaded weights included; null if the backend cannot tell. */
  liveTensors: number | null;
  /** Runs started on this handle. */
  runs: number;
  /** Runs not yet settled. */
  inFlight: number;
}

const CREATE_KEYS = new Set(['backend', 'registry', 'backendOptions']);

/**
 * Validates config and weights, picks a backend, uploads the weights once and returns a handle.
 * Runs on one handle may overlap: weights are read-only and every run owns its intermediates.
 */
export async function createAttention(
  config: AttentionConfig,
  weights: AttentionWeights,
  options: CreateAttentionOptions,
): Promise<Attention> {
  if (options === null || typeof options !== 'object') {
    throw new QkvError('INVALID_OPTION', `options: expected an object, got ${describeValue(options)}`);
  }
  assertKnownKeys('createAttention options', options, CREATE_KEYS);
  const resolved = resolveConfig(config);
  const hostWeights = validateWeights(resolved, weights);
  const norms = weightNorms(resolved, hostWeights);
  const { backend, selection } = await options.registry.create(
    options.backend ?? 'auto',
    options.backendOptions,
    resolved,
  );
  // The learned table stays on the host: core slices the rows a call needs and feeds them.
  const table = hostWeights.get('positionalEmbedding') ?? null;
  hostWeights.delete('positionalEmbedding');
  // Sink logits reach the kernels as attrs (a number per head), not as an uploaded tensor.
  const sinks = hostWeights.get('sinks');
  hostWeights.delete('sinks');
  const constants: GraphConstants = sinks ? { sinks: Array.from(sinks.data) } : {};
  const params = new Map<string, BackendTensor>();
  try {
    for (const [name, t] of hostWeights) params.set(name, await backend.upload(t));
  } catch (e) {
    for (const h of params.values()) backend.dispose(h);
    await backend.destroy();
    throw e;
  }
  return new AttentionHandle(resolved, backend, selection, params, table, norms, constants);
}

class AttentionHandle implements Attention {
  readonly config: ResolvedConfig;
  readonly selection: Selection;
  readonly #backend: Backend;
  readonly #params: Map<string, BackendTensor>;
  readonly #graphs = new Map<string, AttentionGraph>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #disposed = false;
  #runs = 0;
  #disposing: Promise<void> | null = null;
  readonly #table: Tensor | null;
  readonly #norms: WeightNorms;
  readonly #constants: GraphConstants;
  readonly #sessions = new Set<Session>();

  constructor(
    config: ResolvedConfig,
    backend: Backend,
    selection: Selection,
    params: Map<string, BackendTensor>,
    table: Tensor | null,
    norms: WeightNorms,
    constants: GraphConstants,
  ) {
    this.config = config;
    this.#constants = constants;
    this.#backend = backend;
    this.selection = selection;
    this.#params = params;
    this.#table = table;
    this.#norms = norms;
  }

  get backend(): string {
    return this.selection.backend;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  graph(shape: Partial<GraphShape> = {}): AttentionGraph {
    const full: GraphShape = {
      batch: 1,
      queryLength: 8,
      keyLength: shape.keyLength ?? shape.queryLength ?? 8,
      selfAttention: true,
      hasKeyPaddingMask: false,
      hasAttnMask: false,
      ...shape,
    };
    const key = JSON.stringify(full);
    let g = this.#graphs.get(key);
    if (!g) {
      g = buildGraph(this.config, full, this.#constants);
      if (this.#graphs.size > 64) this.#graphs.clear();
      this.#graphs.set(key, g);
    }
    return g;
  }

  describe(shape?: Partial<GraphShape>): string {
    return formatGraph(this.graph(shape));
  }

  #checkAlive = (): void => {
    if (this.#disposed) {
      throw new QkvError('DISPOSED', `attention handle (backend "${this.backend}") was disposed; create a new one`);
    }
  };

  stats(): AttentionStats {
    return { liveTensors: this.#backend.liveTensors?.() ?? null, runs: this.#runs, inFlight: this.#inFlight.size };
  }

  run(inputs: AttentionInputs, options: RunOptions = {}): Promise<AttentionResult> {
    this.#runs++;
    const p = this.#run(inputs, options);
    this.#inFlight.add(p);
    const done = () => this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  async #run(inputs: AttentionInputs, options: RunOptions): Promise<AttentionResult> {
    this.#checkAlive();
    const prepared = prepareInputs(this.config, inputs);
    const { outputs, captures } = validateRunOptions(this.config, options);
    checkInputs(this.#backend, this.backend, prepared.feeds);
    const { positionIds: ids, batch, queryLength } = prepared.shape;
    // Explicit positions are per call: their graph is built for this call, not cached.
    const graph = ids ? buildGraph(this.config, prepared.shape, this.#constants) : this.graph(prepared.shape);
    const pe = this.config.positionalEncoding;
    if (ids && (pe === 'learned' || pe === 'sinusoidal')) {
      prepared.feeds.set('positionalEncoding', positionalEncodingAt(this.config, this.#table, ids, batch, queryLength));
    } else if (this.#table) {
      prepared.feeds.set('positionalEncoding', learnedPositionalEncoding(this.#table, queryLength));
    }
    // NUMERIC_OVERFLOW is decided here, on the host, so every backend gives the same answer.
    checkOverflow(this.config, this.#norms, prepared.feeds, prepared.shape);
    const { tensors, fused } = await execute({
      graph,
      backend: this.#backend,
      params: this.#params,
      feeds: prepared.feeds,
      outputs,
      checkpoint: this.#checkAlive,
    });
    const { attention, residual, weights, take } = readOutputs(
      graph,
      tensors,
      prepared.unbatched,
      options.returnWeights,
    );
    const result: AttentionResult = { attention, residual, captured: {}, backend: this.backend, fused };
    if (weights) result.weights = weights;
    if (tensors.has('positionalEncoding')) result.positionalEncoding = take('positionalEncoding');
    if (tensors.has('lse')) result.lse = take('lse');
    for (const c of captures) result.captured[c] = take(c);
    return result;
  }

  createSession(options: SessionOptions): AttentionSession {
    this.#checkAlive();
    const session = new Session(
      {
        config: this.config,
        backend: this.#backend,
        backendName: this.backend,
        params: this.#params,
        table: this.#table,
        norms: this.#norms,
        constants: this.#constants,
        checkAlive: this.#checkAlive,
        track: (p) => {
          this.#runs++;
          this.#inFlight.add(p);
          const done = () => this.#inFlight.delete(p);
          p.then(done, done);
        },
        forget: (s) => this.#sessions.delete(s),
        adopt: (s) => this.#sessions.add(s),
      },
      options,
    );
    this.#sessions.add(session);
    return session;
  }

  dispose(): Promise<void> {
    if (this.#disposing) return this.#disposing;
    this.#disposed = true;
    this.#disposing = (async () => {
      // In-flight runs reject with DISPOSED at their next step; wait so nothing they use is freed early.
      await Promise.allSettled([...this.#inFlight]);
      for (const s of [...this.#sessions]) await s.dispose();
      for (const h of this.#params.values()) this.#backend.dispose(h);
      this.#params.clear();
      await this.#backend.destroy();
    })();
    return this.#disposing;
  }
}
