import { describeValue, QkvError } from './errors.js';

export type PositionalEncodingKind = 'none' | 'sinusoidal';

/** What a user passes to `createAttention`. Every field is validated; unknown keys are refused. */
export interface AttentionConfig {
  /** Width of the residual stream (embedding size). */
  dModel: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads; defaults to `numHeads`. Fewer = grouped-query, 1 = multi-query. */
  numKVHeads?: number;
  /** Per-head width; defaults to `dModel / numHeads` (which must then divide evenly). */
  headDim?: number;
  /** Query i sees key j only when j <= i + (Lk - Lq) (bottom-right aligned). */
  causal?: boolean;
  /** Whether the projections carry biases bq, bk, bv, bo. Default true. */
  bias?: boolean;
  /** Multiplies Q·Kᵀ; `null`/absent means 1/sqrt(headDim). */
  scale?: number | null;
  /** Added to the input E before the projections (X = E + PE). Default 'none'. */
  positionalEncoding?: PositionalEncodingKind | null;
  /**
   * true: K and V are projected from X (key/value inputs, if given, must equal the query).
   * false: cross-attention, key/value inputs are required. Absent: inferred per run.
   */
  selfAttention?: boolean;
}

export interface ResolvedConfig {
  readonly dModel: number;
  readonly numHeads: number;
  readonly numKVHeads: number;
  readonly headDim: number;
  readonly causal: boolean;
  readonly bias: boolean;
  readonly scale: number;
  readonly positionalEncoding: PositionalEncodingKind;
  readonly selfAttention: boolean | undefined;
}

const CONFIG_KEYS = new Set([
  'dModel',
  'numHeads',
  'numKVHeads',
  'headDim',
  'causal',
  'bias',
  'scale',
  'positionalEncoding',
  'selfAttention',
]);

/** Throws unless every key of `obj` is in `allowed`, naming the offender and the valid ones. */
export function assertKnownKeys(what: string, obj: object, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) {
      throw new QkvError(
        'UNKNOWN_OPTION',
        `${what}: unknown option "${key}"; expected one of ${[...allowed].join(', ')}`,
      );
    }
  }
}

export function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new QkvError('INVALID_CONFIG', `${name}: expected a positive integer, got ${describeValue(v)}`);
  }
  return v;
}

function optionalBool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') {
    throw new QkvError('INVALID_CONFIG', `${name}: expected true or false, got ${describeValue(v)}`);
  }
  return v;
}

/** Validates a config and fills the defaults. */
export function resolveConfig(config: AttentionConfig): ResolvedConfig {
  if (config === null || typeof config !== 'object') {
    throw new QkvError('INVALID_CONFIG', `config: expected an object, got ${describeValue(config)}`);
  }
  assertKnownKeys('config', config, CONFIG_KEYS);
  const dModel = positiveInt('config.dModel', config.dModel);
  const numHeads = positiveInt('config.numHeads', config.numHeads);
  const numKVHeads = config.numKVHeads === undefined ? numHeads : positiveInt('config.numKVHeads', config.numKVHeads);
  if (numHeads % numKVHeads !== 0) {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.numKVHeads: numHeads (${numHeads}) must be a multiple of numKVHeads, got ${numKVHeads}`,
    );
  }
  let headDim: number;
  if (config.headDim === undefined) {
    if (dModel % numHeads !== 0) {
      throw new QkvError(
        'INVALID_CONFIG',
        `config.numHeads: must divide dModel (${dModel}) when headDim is not given, got ${numHeads}`,
      );
    }
    headDim = dModel / numHeads;
  } else {
    headDim = positiveInt('config.headDim', config.headDim);
  }
  let scale: number;
  if (config.scale === undefined || config.scale === null) {
    scale = 1 / Math.sqrt(headDim);
  } else if (typeof config.scale !== 'number' || !Number.isFinite(config.scale)) {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.scale: expected a finite number or null, got ${describeValue(config.scale)}`,
    );
  } else {
    scale = config.scale;
  }
  const pe = config.positionalEncoding ?? 'none';
  if (pe !== 'none' && pe !== 'sinusoidal') {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.positionalEncoding: expected 'none' or 'sinusoidal', got ${describeValue(pe)}`,
    );
  }
  const selfAttention =
    config.selfAttention === undefined ? undefined : optionalBool('config.selfAttention', config.selfAttention, true);
  return {
    dModel,
    numHeads,
    numKVHeads,
    headDim,
    causal: optionalBool('config.causal', config.causal, false),
    bias: optionalBool('config.bias', config.bias, true),
    scale,
    positionalEncoding: pe,
    selfAttention,
  };
}
