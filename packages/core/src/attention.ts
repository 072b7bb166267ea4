import type { Backend, BackendCreateOptions, BackendTensor } from './backend.js';
import { type AttentionConfig, assertKnownKeys, type ResolvedConfig, resolveConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { execute } from './executor.js';
import { type AttentionGraph, buildGraph, formatGraph, type GraphShape, STEP_NAMES, type StepName } from './graph.js';
import type { BackendRegistry, Selection } from './registry.js';
import { type AttentionSession, Session, type SessionOptions } from './session.js';
import { formatShape, type Tensor, type TensorLike, toTensor } from './tensor.js';

export interface AttentionWeights {
  wq: TensorLike;
  wk: TensorLike;
  wv: TensorLike;
  wo: TensorLike;
  bq?: TensorLike;
  bk?: TensorLike;
  bv?: TensorLike;
  bo?: TensorLike;
  /** The learned position table [maxLength, dModel], with positionalEncoding 'learned' only. */
  positionalEmbedding?: TensorLike;
}

export interface AttentionInputs {
  /** E: [B, Lq, dModel], or unbatched [Lq, dModel] (outputs then come unbatched too). */
  query: TensorLike;
  /** Cross-attention keys [B, Lk, dModel]; omit (with `value`) for self-attention. */
  key?: TensorLike;
  value?: TensorLike;
  /** [B, Lk]: nonzero marks a padding key that no query may see. */
  keyPaddingMask?: TensorLike;
  /** [Lq, Lk]: added to the scaled scores; -Infinity hides a key. */
  attnMask?: TensorLike;
}

export interface RunOptions {
  /**
   * Also return the softmax weights: true or 'perHead' → [B, H, Lq, Lk]; 'averaged' → the mean
   * over heads [B, Lq, Lk] (PyTorch's `average_attn_weights=True`). Forces the unfused path.
   */
  returnWeights?: ReturnWeights;
  /** Step names to return in `captured`, or 'all'. Score-shaped steps force the unfused path. */
  capture?: readonly StepName[] | 'all';
}

export type ReturnWeights = boolean | 'perHead' | 'averaged';

export interface AttentionResult {
  /** ΔE = concat(heads)·Wo + bo: [B, Lq, dModel]. */
  attention: Tensor;
  /** E' = X + ΔE: [B, Lq, dModel]. */
  residual: Tensor;
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
const WEIGHT_KEYS = new Set(['wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo', 'positionalEmbedding']);
const INPUT_KEYS = new Set(['query', 'key', 'value', 'keyPaddingMask', 'attnMask']);
const RUN_KEYS = new Set(['returnWeights', 'capture']);

function expectShape(name: string, t: Tensor, expected: readonly number[], meaning: string): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw new QkvError(
      'INVALID_SHAPE',
      `${name}: expected ${formatShape(expected)} (${meaning}), got ${formatShape(t.shape)}`,
    );
  }
}

/** Validates weights against the config; returns float32 tensors by name. */
export function validateWeights(config: ResolvedConfig, weights: AttentionWeights): Map<string, Tensor> {
  if (weights === null || typeof weights !== 'object') {
    throw new QkvError(
      'INVALID_DATA',
      `weights: expected { wq, wk, wv, wo, bq?, bk?, bv?, bo? }, got ${describeValue(weights)}`,
    );
  }
  assertKnownKeys('weights', weights, WEIGHT_KEYS);
  const { dModel, numHeads: H, numKVHeads: KVH, headDim: hd } = config;
  const spec: [keyof AttentionWeights, number[], string][] = [
    ['wq', [dModel, H * hd], 'dModel × numHeads·headDim'],
    ['wk', [dModel, KVH * hd], 'dModel × numKVHeads·headDim'],
    ['wv', [dModel, KVH * hd], 'dModel × numKVHeads·headDim'],
    ['wo', [H * hd, dModel], 'numHeads·headDim × dModel'],
    ['bq', [H * hd], 'numHeads·headDim'],
    ['bk', [KVH * hd], 'numKVHeads·headDim'],
    ['bv', [KVH * hd], 'numKVHeads·headDim'],
    ['bo', [dModel], 'dModel'],
  ];
  const out = new Map<string, Tensor>();
  for (const [name, shape, meaning] of spec) {
    const value = weights[name];
    const isBias = name.startsWith('b');
    if (value === undefined) {
      if (!isBias || config.bias) {
        throw new QkvError(
          'INVALID_DATA',
          `weights.${name}: missing; expected ${formatShape(shape)} (${meaning})${isBias ? ' because config.bias is true' : ''}`,
        );
      }
      continue;
    }
    if (isBias && !config.bias) {
      throw new QkvError(
        'INVALID_OPTION',
        `weights.${name}: config.bias is false, so no biases are expected; remove it or set bias: true`,
      );
    }
    const t = toTensor(name, value, { finite: 'all' });
    expectShape(name, t, shape, meaning);
    out.set(name, t);
  }
  const table = weights.positionalEmbedding;
  if (config.positionalEncoding === 'learned') {
    if (table === undefined) {
      throw new QkvError(
        'INVALID_DATA',
        `weights.positionalEmbedding: missing; expected [maxLength, ${dModel}] because config.positionalEncoding is 'learned'`,
      );
    }
    const t = toTensor('positionalEmbedding', table, { finite: 'all' });
    if (t.shape.length !== 2 || t.shape[1] !== dModel || (t.shape[0] as number) < 1) {
      throw new QkvError(
        'INVALID_SHAPE',
        `positionalEmbedding: expected [maxLength, ${dModel}] (positions × dModel), got ${formatShape(t.shape)}`,
      );
    }
    out.set('positionalEmbedding', t);
  } else if (table !== undefined) {
    throw new QkvError(
      'INVALID_OPTION',
      `weights.positionalEmbedding: only used with positionalEncoding 'learned', got positionalEncoding '${config.positionalEncoding}'`,
    );
  }
  return out;
}

/** Rows offset … offset+length−1 of the learned table → PE [length, dModel]. */
export function learnedPositionalEncoding(table: Tensor, length: number, offset = 0): Tensor {
  const [maxLength, dModel] = table.shape as [number, number];
  if (offset + length > maxLength) {
    throw new QkvError(
      'INVALID_SHAPE',
      `positionalEmbedding: positions ${offset} … ${offset + length - 1} needed, but the learned table has ${maxLength} rows ([${maxLength}, ${dModel}])`,
    );
  }
  return { shape: [length, dModel], data: table.data.subarray(offset * dModel, (offset + length) * dModel) };
}

/** Mean over heads: weights [B, H, Lq, Lk] → [B, Lq, Lk] (PyTorch's average_attn_weights). */
export function averageHeads(w: Tensor): Tensor {
  const [B, H, Lq, Lk] = w.shape as [number, number, number, number];
  const plane = Lq * Lk;
  const out = new Float32Array(B * plane);
  for (let b = 0; b < B; b++) {
    for (let e = 0; e < plane; e++) {
      let sum = 0;
      for (let h = 0; h < H; h++) sum += w.data[(b * H + h) * plane + e] as number;
      out[b * plane + e] = sum / H;
    }
  }
  return { shape: [B, Lq, Lk], data: out };
}

interface PreparedInputs {
  shape: GraphShape;
  feeds: Map<string, Tensor>;
  unbatched: boolean;
}

function sameData(a: Tensor, b: Tensor): boolean {
  if (a.data === b.data) return true;
  if (a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.data.length; i++) if (!Object.is(a.data[i], b.data[i])) return false;
  return true;
}

/** Validates one call's inputs; every error names the input, the expected and the actual shape. */
export function prepareInputs(config: ResolvedConfig, inputs: AttentionInputs): PreparedInputs {
  if (inputs === null || typeof inputs !== 'object') {
    throw new QkvError(
      'INVALID_DATA',
      `inputs: expected { query, key?, value?, keyPaddingMask?, attnMask? }, got ${describeValue(inputs)}`,
    );
  }
  assertKnownKeys('inputs', inputs, INPUT_KEYS);
  const { dModel } = config;
  let query = toTensor('query', inputs.query, { finite: 'all' });
  const unbatched = query.shape.length === 2;
  if (query.shape.length !== 3 && !unbatched) {
    throw new QkvError(
      'INVALID_SHAPE',
      `query: expected [B, Lq, ${dModel}] (batch × length × dModel) or [Lq, ${dModel}], got ${formatShape(query.shape)}`,
    );
  }
  const batched = (t: Tensor): Tensor => {
    if (!unbatched) return t;
    return { shape: [1, ...t.shape], data: t.data };
  };
  query = batched(query);
  const [B, Lq, qd] = query.shape as [number, number, number];
  if (qd !== dModel) {
    throw new QkvError(
      'INVALID_SHAPE',
      `query: expected last dimension dModel = ${dModel}, got ${formatShape(unbatched ? query.shape.slice(1) : query.shape)}`,
    );
  }
  const hasKey = inputs.key !== undefined;
  const hasValue = inputs.value !== undefined;
  if (hasKey !== hasValue) {
    throw new QkvError(
      'INVALID_DATA',
      `${hasKey ? 'value' : 'key'}: missing; give both key and value (cross-attention) or neither (self-attention)`,
    );
  }
  let selfAttention = config.selfAttention ?? !hasKey;
  const feeds = new Map<string, Tensor>([['input', query]]);
  let Lk = Lq;
  const rankName = unbatched ? `[Lk, ${dModel}]` : `[${B}, Lk, ${dModel}]`;
  if (hasKey) {
    const key = batched(toTensor('key', inputs.key, { finite: 'all' }));
    const value = batched(toTensor('value', inputs.value, { finite: 'all' }));
    for (const [name, t] of [
      ['key', key],
      ['value', value],
    ] as const) {
      if (t.shape.length !== 3 || t.shape[0] !== B || t.shape[2] !== dModel) {
        throw new QkvError(
          'INVALID_SHAPE',
          `${name}: expected ${rankName} (${unbatched ? '' : 'batch × '}length × dModel), got ${formatShape(unbatched ? t.shape.slice(1) : t.shape)}`,
        );
      }
    }
    if (key.shape[1] !== value.shape[1]) {
      throw new QkvError(
        'INVALID_SHAPE',
        `value: expected the key's length ${key.shape[1]}, got ${formatShape(value.shape)}`,
      );
    }
    if (config.selfAttention === true) {
      // The golden files pass key = value = query for self-attention; anything else is a mistake.
      for (const [name, t] of [
        ['key', key],
        ['value', value],
      ] as const) {
        if (t.shape[1] !== Lq || !sameData(t, query)) {
          throw new QkvError(
            'INVALID_DATA',
            `${name}: config.selfAttention is true, so ${name} must be omitted or equal to query`,
          );
        }
      }
      selfAttention = true;
    } else {
      feeds.set('key', key);
      feeds.set('value', value);
      Lk = key.shape[1] as number;
    }
  } else if (config.selfAttention === false) {
    throw new QkvError('INVALID_DATA', 'key: missing; config.selfAttention is false, so key and value are required');
  }
  if (inputs.keyPaddingMask !== undefined) {
    let m = toTensor('keyPaddingMask', inputs.keyPaddingMask, { allowIntegerArrays: true, finite: 'all' });
    m = unbatched ? { shape: [1, ...m.shape], data: m.data } : m;
    expectShape('keyPaddingMask', m, [B, Lk], 'batch × key length; nonzero = padding');
    feeds.set('keyPaddingMask', m);
  }
  if (inputs.attnMask !== undefined) {
    const m = toTensor('attnMask', inputs.attnMask, { finite: 'allowNegativeInfinity' });
    expectShape('attnMask', m, [Lq, Lk], 'query length × key length, additive');
    feeds.set('attnMask', m);
  }
  return {
    unbatched,
    feeds,
    shape: {
      batch: B,
      queryLength: Lq,
      keyLength: Lk,
      selfAttention,
      hasKeyPaddingMask: feeds.has('keyPaddingMask'),
      hasAttnMask: feeds.has('attnMask'),
    },
  };
}

export function validateRunOptions(
  config: ResolvedConfig,
  options: RunOptions,
): { outputs: string[]; captures: StepName[] } {
  if (options === null || typeof options !== 'object') {
    throw new QkvError('INVALID_OPTION', `options: expected an object, got ${describeValue(options)}`);
  }
  assertKnownKeys('run options', options, RUN_KEYS);
  const rw = options.returnWeights;
  if (rw !== undefined && typeof rw !== 'boolean' && rw !== 'perHead' && rw !== 'averaged') {
    throw new QkvError(
      'INVALID_OPTION',
      `options.returnWeights: expected true, false, 'perHead' or 'averaged', got ${describeValue(rw)}`,
    );
  }
  let captures: StepName[] = [];
  // Only the additive encodings are a [Lq, dModel] tensor; rotary and ALiBi act inside the heads.
  const hasPE = config.positionalEncoding === 'sinusoidal' || config.positionalEncoding === 'learned';
  if (options.capture === 'all') {
    captures = STEP_NAMES.filter((n) => n !== 'positionalEncoding' || hasPE);
  } else if (options.capture !== undefined) {
    if (!Array.isArray(options.capture)) {
      throw new QkvError(
        'INVALID_OPTION',
        `options.capture: expected an array of step names or 'all', got ${describeValue(options.capture)}`,
      );
    }
    for (const c of options.capture) {
      if (!(STEP_NAMES as readonly string[]).includes(c)) {
        throw new QkvError(
          'INVALID_CAPTURE',
          `options.capture: unknown step ${describeValue(c)}; expected one of ${STEP_NAMES.join(', ')}`,
        );
      }
      if (c === 'positionalEncoding' && !hasPE) {
        throw new QkvError(
          'INVALID_CAPTURE',
          `options.capture: "positionalEncoding" needs config.positionalEncoding 'sinusoidal' or 'learned', got '${config.positionalEncoding}'`,
        );
      }
    }
    captures = [...options.capture];
  }
  const outputs = new Set<string>(['attention', 'residual', ...captures]);
  if (options.returnWeights) outputs.add('weights');
  if (hasPE) outputs.add('positionalEncoding');
  return { outputs: [...outputs], captures };
}

/** Drops the leading batch dim of batch-first nodes for unbatched calls. */
export function unbatch(t: Tensor, dims: readonly string[]): Tensor {
  if (dims[0] !== 'B') return t;
  return { shape: t.shape.slice(1), data: t.data };
}

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
  const { backend, selection } = await options.registry.create(
    options.backend ?? 'auto',
    options.backendOptions,
    resolved,
  );
  // The learned table stays on the host: core slices the rows a call needs and feeds them.
  const table = hostWeights.get('positionalEmbedding') ?? null;
  hostWeights.delete('positionalEmbedding');
  const params = new Map<string, BackendTensor>();
  try {
    for (const [name, t] of hostWeights) params.set(name, await backend.upload(t));
  } catch (e) {
    for (const h of params.values()) backend.dispose(h);
    await backend.destroy();
    throw e;
  }
  return new AttentionHandle(resolved, backend, selection, params, table);
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
  readonly #sessions = new Set<Session>();

  constructor(
    config: ResolvedConfig,
    backend: Backend,
    selection: Selection,
    params: Map<string, BackendTensor>,
    table: Tensor | null,
  ) {
    this.config = config;
    this.#backend = backend;
    this.selection = selection;
    this.#params = params;
    this.#table = table;
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
      g = buildGraph(this.config, full);
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
    const graph = this.graph(prepared.shape);
    if (this.#table) {
      prepared.feeds.set('positionalEncoding', learnedPositionalEncoding(this.#table, prepared.shape.queryLength));
    }
    const { tensors, fused } = await execute({
      graph,
      backend: this.#backend,
      params: this.#params,
      feeds: prepared.feeds,
      outputs,
      checkpoint: this.#checkAlive,
    });
    const dimsOf = new Map(graph.nodes.map((n) => [n.name, n.dims]));
    const take = (name: string): Tensor => {
      const t = tensors.get(name) as Tensor;
      return prepared.unbatched ? unbatch(t, dimsOf.get(name) ?? []) : t;
    };
    const result: AttentionResult = {
      attention: take('attention'),
      residual: take('residual'),
      captured: {},
      backend: this.backend,
      fused,
    };
    if (options.returnWeights) {
      const w = tensors.get('weights') as Tensor;
      result.weights =
        options.returnWeights === 'averaged'
          ? prepared.unbatched
            ? unbatch(averageHeads(w), ['B'])
            : averageHeads(w)
          : take('weights');
    }
    if (tensors.has('positionalEncoding')) result.positionalEncoding = take('positionalEncoding');
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
        checkAlive: this.#checkAlive,
        track: (p) => {
          this.#runs++;
          this.#inFlight.add(p);
          const done = () => this.#inFlight.delete(p);
          p.then(done, done);
        },
        forget: (s) => this.#sessions.delete(s),
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
