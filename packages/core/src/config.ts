import { assertKnownKeys, optionalBool, positiveInt } from './config-checks.js';
import { resolveServing } from './config-serving.js';
import { describeValue, QkvError } from './errors.js';

export { assertKnownKeys, positiveInt } from './config-checks.js';

/**
 * 'sinusoidal' and 'learned' are added to E before the projections (X = E + PE); 'rotary' rotates
 * Q and K per head after the projections; 'alibi' adds a per-head linear bias to the scores.
 */
export type PositionalEncodingKind = 'none' | 'sinusoidal' | 'learned' | 'rotary' | 'alibi';
export const POSITIONAL_ENCODINGS: readonly PositionalEncodingKind[] = [
  'none',
  'sinusoidal',
  'learned',
  'rotary',
  'alibi',
];

/**
 * How RoPE pairs the channels of a head it rotates together:
 *   'half'        channel c with c + hd/2 (`rotate_half`, Llama / GPT-NeoX)
 *   'interleaved' channel 2c with 2c + 1 (GPT-J)
 */
export type RotaryPairing = 'half' | 'interleaved';

/** The projection biases, each optional. */
export type BiasName = 'bq' | 'bk' | 'bv' | 'bo';
export const BIAS_NAMES: readonly BiasName[] = ['bq', 'bk', 'bv', 'bo'];

/** FlexAttention-style mask: false hides key k from query q (positions, not row indices). */
export type MaskMod = (b: number, h: number, q: number, k: number) => boolean;
/** FlexAttention-style score modifier on the scaled score (e.g. softcapping). */
export type ScoreMod = (score: number, b: number, h: number, q: number, k: number) => number;

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
  /**
   * Which projection biases the weights carry: true (default) = bq, bk, bv and bo; false = none;
   * or the list of those present (e.g. ['bq', 'bk', 'bv'] for Qwen2): an absent bias is zero.
   */
  bias?: boolean | readonly BiasName[];
  /** Width of the cross-attention `key` input (PyTorch's kdim); default dModel. */
  keyDim?: number;
  /** Width of the cross-attention `value` input (PyTorch's vdim); default dModel. */
  valueDim?: number;
  /** Multiplies Q·Kᵀ; `null`/absent means 1/sqrt(headDim). */
  scale?: number | null;
  /**
   * Default 'none'. 'sinusoidal' | 'learned': X = E + PE ('learned' reads
   * `weights.positionalEmbedding` [maxLength, dModel]). 'rotary': RoPE on Q and K per head.
   * 'alibi': −slope_h·|q − k| added to the scaled scores.
   */
  positionalEncoding?: PositionalEncodingKind | null;
  /** RoPE channel pairing (only with positionalEncoding 'rotary'). Default 'half'. */
  rotaryPairing?: RotaryPairing;
  /** RoPE base: θ_c = base^(−2c/headDim) (only with 'rotary'). Default 10000. */
  rotaryBase?: number;
  /**
   * Sliding-window (local) attention: query q sees keys q−w+1 … q when causal, |q − k| < w
   * otherwise. Absent or null: no window.
   */
  window?: number | null;
  /** Hides key k from query q where it returns false (document masking, prefix-LM, …). */
  maskMod?: MaskMod | null;
  /** Rewrites each scaled score (softcapping, custom biases). Must be a pure function. */
  scoreMod?: ScoreMod | null;
  /** Logit softcapping (Gemma 2): after scaling, s = c·tanh(s/c), before ALiBi and masks. c > 0. */
  softcap?: number | null;
  /**
   * Learned attention sinks (gpt-oss): `weights.sinks` [numHeads] holds one logit per head that
   * joins every row's softmax denominator and carries no value, so a row's weights sum to < 1.
   */
  sinks?: boolean;
  /** StreamingLLM: with `window`, the first s tokens stay visible to every query (causal permitting). */
  sinkTokens?: number | null;
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
  /** True when all four biases are present (see `biases` for which ones are). */
  readonly bias: boolean;
  /** The biases present, in the order bq, bk, bv, bo; absent ones are zero. */
  readonly biases: readonly BiasName[];
  readonly keyDim: number;
  readonly valueDim: number;
  readonly scale: number;
  readonly positionalEncoding: PositionalEncodingKind;
  readonly rotaryPairing: RotaryPairing;
  readonly rotaryBase: number;
  readonly window: number | null;
  readonly maskMod: MaskMod | null;
  readonly scoreMod: ScoreMod | null;
  readonly selfAttention: boolean | undefined;
  /** Logit softcap c (Gemma 2): s = c·tanh(s/c) after scaling; null: none. */
  readonly softcap: number | null;
  /** Learned sink logits (gpt-oss): `weights.sinks` [numHeads] joins each row's denominator. */
  readonly sinks: boolean;
  /** StreamingLLM sink tokens: the first s positions stay visible next to the window; null: none. */
  readonly sinkTokens: number | null;
}

/** Optional features a backend must declare (via `supports`) before it is given such a config. */
export type BackendFeature =
  | 'rotary'
  | 'alibi'
  | 'window'
  | 'maskMod'
  | 'scoreMod'
  | 'softcap'
  | 'sinks'
  | 'sinkTokens'
  | 'sequenceIds';

/** The option a user sets to ask for each feature, for error messages. */
export const FEATURE_OPTIONS: Readonly<Record<BackendFeature, string>> = {
  rotary: "config.positionalEncoding 'rotary'",
  alibi: "config.positionalEncoding 'alibi'",
  window: 'config.window',
  maskMod: 'config.maskMod',
  scoreMod: 'config.scoreMod',
  softcap: 'config.softcap',
  sinks: 'config.sinks',
  sinkTokens: 'config.sinkTokens',
  sequenceIds: 'inputs.sequenceIds',
};

/**
 * The backend features a resolved config needs. 'sinusoidal' and 'learned' PE and the averaged
 * weights are computed by core from base kernels, so they need nothing from the backend.
 */
export function requiredFeatures(config: ResolvedConfig): BackendFeature[] {
  const out: BackendFeature[] = [];
  if (config.positionalEncoding === 'rotary') out.push('rotary');
  if (config.positionalEncoding === 'alibi') out.push('alibi');
  if (config.window !== null) out.push('window');
  if (config.maskMod !== null) out.push('maskMod');
  if (config.scoreMod !== null) out.push('scoreMod');
  if (config.softcap !== null) out.push('softcap');
  if (config.sinks) out.push('sinks');
  if (config.sinkTokens !== null) out.push('sinkTokens');
  return out;
}

/**
 * `supports` for a shader backend: every feature but maskMod/scoreMod, JavaScript callbacks per
 * score that a shader (`language`: GLSL, WGSL) cannot call, and the features in `pending`, which
 * its kernels do not implement yet. Core turns the reason into CAPABILITY for an explicit request
 * and a skip under 'auto'.
 */
export function shaderSupports(
  backend: string,
  language: string,
  pending: readonly BackendFeature[] = [],
): (config: ResolvedConfig) => true | string {
  return (config) => {
    const reasons = requiredFeatures(config)
      .filter((f) => f === 'maskMod' || f === 'scoreMod')
      .map(
        (f) =>
          `${FEATURE_OPTIONS[f]} is a JavaScript function, and ${backend} kernels are ${language} shaders that cannot call back into JavaScript`,
      );
    for (const f of requiredFeatures(config)) {
      if (pending.includes(f)) reasons.push(`${FEATURE_OPTIONS[f]} is not implemented in the ${language} kernels yet`);
    }
    return reasons.length === 0 ? true : `${backend} backend: ${reasons.join('; ')}`;
  };
}

const CONFIG_KEYS = new Set([
  'dModel',
  'numHeads',
  'numKVHeads',
  'headDim',
  'causal',
  'bias',
  'keyDim',
  'valueDim',
  'scale',
  'positionalEncoding',
  'rotaryPairing',
  'rotaryBase',
  'window',
  'maskMod',
  'scoreMod',
  'selfAttention',
  'softcap',
  'sinks',
  'sinkTokens',
]);

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
  if (!POSITIONAL_ENCODINGS.includes(pe)) {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.positionalEncoding: expected one of ${POSITIONAL_ENCODINGS.map((k) => `'${k}'`).join(', ')}, got ${describeValue(pe)}`,
    );
  }
  if (pe !== 'rotary') {
    for (const key of ['rotaryPairing', 'rotaryBase'] as const) {
      if (config[key] !== undefined) {
        throw new QkvError(
          'INVALID_CONFIG',
          `config.${key}: only applies with positionalEncoding 'rotary', got positionalEncoding ${describeValue(pe)}`,
        );
      }
    }
  }
  const rotaryPairing = config.rotaryPairing ?? 'half';
  if (rotaryPairing !== 'half' && rotaryPairing !== 'interleaved') {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.rotaryPairing: expected 'half' (rotate_half, Llama/GPT-NeoX) or 'interleaved' (GPT-J), got ${describeValue(rotaryPairing)}`,
    );
  }
  const rotaryBase = config.rotaryBase ?? 10000;
  if (typeof rotaryBase !== 'number' || !Number.isFinite(rotaryBase) || rotaryBase <= 1) {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.rotaryBase: expected a finite number greater than 1, got ${describeValue(rotaryBase)}`,
    );
  }
  // RoPE rotates channel pairs, so a head must have an even number of channels.
  if (pe === 'rotary' && headDim % 2 !== 0) {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.positionalEncoding: 'rotary' needs an even headDim (channels are rotated in pairs), got headDim ${headDim}`,
    );
  }
  const window =
    config.window === undefined || config.window === null ? null : positiveInt('config.window', config.window);
  for (const key of ['maskMod', 'scoreMod'] as const) {
    const f = config[key];
    if (f !== undefined && f !== null && typeof f !== 'function') {
      throw new QkvError(
        'INVALID_CONFIG',
        `config.${key}: expected a function ${key === 'maskMod' ? '(b, h, q, k) => boolean' : '(score, b, h, q, k) => number'} or null, got ${describeValue(f)}`,
      );
    }
  }
  const selfAttention =
    config.selfAttention === undefined ? undefined : optionalBool('config.selfAttention', config.selfAttention, true);
  const serving = resolveServing(config, window);
  return {
    dModel,
    numHeads,
    numKVHeads,
    headDim,
    causal: optionalBool('config.causal', config.causal, false),
    ...resolveProjectionWidths(config, dModel),
    scale,
    positionalEncoding: pe,
    rotaryPairing,
    rotaryBase,
    window,
    maskMod: config.maskMod ?? null,
    scoreMod: config.scoreMod ?? null,
    selfAttention,
    ...serving,
  };
}

/**
 * Projection options: which biases exist (`bias`) and the widths of cross-attention's key and
 * value inputs (`keyDim`, `valueDim`).
 */
function resolveProjectionWidths(
  config: AttentionConfig,
  dModel: number,
): { bias: boolean; biases: readonly BiasName[]; keyDim: number; valueDim: number } {
  const raw = config.bias;
  let biases: readonly BiasName[];
  if (raw === undefined || raw === true) biases = BIAS_NAMES;
  else if (raw === false) biases = [];
  else if (Array.isArray(raw)) {
    for (const b of raw) {
      if (!(BIAS_NAMES as readonly unknown[]).includes(b)) {
        throw new QkvError(
          'INVALID_CONFIG',
          `config.bias: expected true, false or a list of ${BIAS_NAMES.join(', ')}, got an entry ${describeValue(b)}`,
        );
      }
    }
    if (new Set(raw).size !== raw.length) {
      throw new QkvError('INVALID_CONFIG', `config.bias: lists a bias twice: [${raw.join(', ')}]`);
    }
    biases = BIAS_NAMES.filter((b) => raw.includes(b));
  } else {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.bias: expected true, false or a list of ${BIAS_NAMES.join(', ')}, got ${describeValue(raw)}`,
    );
  }
  const keyDim = config.keyDim === undefined ? dModel : positiveInt('config.keyDim', config.keyDim);
  const valueDim = config.valueDim === undefined ? dModel : positiveInt('config.valueDim', config.valueDim);
  if (config.selfAttention === true && (keyDim !== dModel || valueDim !== dModel)) {
    throw new QkvError(
      'INVALID_CONFIG',
      `config.${keyDim !== dModel ? 'keyDim' : 'valueDim'}: self-attention projects K and V from X of width dModel (${dModel}), got ${keyDim !== dModel ? keyDim : valueDim}`,
    );
  }
  return { bias: biases.length === 4, biases, keyDim, valueDim };
}
