import type { Backend, BackendCreateOptions, BackendTensor } from './backend.js';
import { type AttentionConfig, assertKnownKeys, type ResolvedConfig, resolveConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { execute } from './executor.js';
import { type AttentionGraph, buildGraph, formatGraph, type GraphShape, STEP_NAMES, type StepName } from './graph.js';
import type { BackendRegistry, Selection } from './registry.js';
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
  /** Also return the softmax weights [B, H, Lq, Lk] (per head). Forces the unfused path. */
  returnWeights?: boolean;
  /** Step names to return in `captured`, or 'all'. Score-shaped steps force the unfused path. */
  capture?: readonly StepName[] | 'all';
}

export interface AttentionResult {
  /** ΔE = concat(heads)·Wo + bo: [B, Lq, dModel]. */
  attention: Tensor;
  /** E' = X + ΔE: [B, Lq, dModel]. */
  residual: Tensor;
  /** [B, H, Lq, Lk] when `returnWeights`. */
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
const WEIGHT_KEYS = new Set(['wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo']);
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
    const t = toTensor(name, value);
    expectShape(name, t, shape, meaning);
    out.set(name, t);
  }
  return out;
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
  let query = toTensor('query', inputs.query);
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
    const key = batched(toTensor('key', inputs.key));
    const value = batched(toTensor('value', inputs.value));
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
    let m = toTensor('keyPaddingMask', inputs.keyPaddingMask, { allowIntegerArrays: true });
    m = unbatched ? { shape: [1, ...m.shape], data: m.data } : m;
    expectShape('keyPaddingMask', m, [B, Lk], 'batch × key length; nonzero = padding');
    feeds.set('keyPaddingMask', m);
  }
  if (inputs.attnMask !== undefined) {
    const m = toTensor('attnMask', inputs.attnMask);
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

function validateRunOptions(config: ResolvedConfig, options: RunOptions): { outputs: string[]; captures: StepName[] } {
  if (options === null || typeof options !== 'object') {
    throw new QkvError('INVALID_OPTION', `options: expected an object, got ${describeValue(options)}`);
  }
  assertKnownKeys('run options', options, RUN_KEYS);
  if (options.returnWeights !== undefined && typeof options.returnWeights !== 'boolean') {
    throw new QkvError(
      'INVALID_OPTION',
      `options.returnWeights: expected true or false, got ${describeValue(options.returnWeights)}`,
    );
  }
  let captures: StepName[] = [];
  const hasPE = config.positionalEncoding !== 'none';
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
          `options.capture: "positionalEncoding" needs config.positionalEncoding other than 'none'`,
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
function unbatch(t: Tensor, dims: readonly string[]): Tensor {
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
  const { backend, selection } = await options.registry.create(options.backend ?? 'auto', options.backendOptions);
  const params = new Map<string, BackendTensor>();
  try {
    for (const [name, t] of hostWeights) params.set(name, await backend.upload(t));
  } catch (e) {
    for (const h of params.values()) backend.dispose(h);
    await backend.destroy();
    throw e;
  }
  return new AttentionHandle(resolved, backend, selection, params);
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

  constructor(config: ResolvedConfig, backend: Backend, selection: Selection, params: Map<string, BackendTensor>) {
    this.config = config;
    this.#backend = backend;
    this.selection = selection;
    this.#params = params;
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
    if (options.returnWeights) result.weights = take('weights');
    if (tensors.has('positionalEncoding')) result.positionalEncoding = take('positionalEncoding');
    for (const c of captures) result.captured[c] = take(c);
    return result;
  }

  dispose(): Promise<void> {
    if (this.#disposing) return this.#disposing;
    this.#disposed = true;
    this.#disposing = (async () => {
      // In-flight runs reject with DISPOSED at their next step; wait so nothing they use is freed early.
      await Promise.allSettled([...this.#inFlight]);
      for (const h of this.#params.values()) this.#backend.dispose(h);
      this.#params.clear();
      await this.#backend.destroy();
    })();
    return this.#disposing;
  }
}
