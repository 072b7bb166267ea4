import { assertKnownKeys, type ResolvedConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import type { GraphShape, StepName } from './graph.js';
import { STEP_NAMES } from './graph.js';
import { preparePositionIds } from './position-ids.js';
import { expectShape, validateSequenceIds, validateSinks } from './serving.js';
import { formatShape, type Tensor, type TensorLike, toTensor } from './tensor.js';

/**
 * What a caller hands to createAttention and run(), and their validation: every error names the
 * weight, input or option, the expected value or shape and the one that came.
 */

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
  /** One sink logit per head [numHeads], with config.sinks only. */
  sinks?: TensorLike;
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
  /**
   * [B, Lq] integer positions of the query tokens (Hugging Face's position_ids, e.g. under left
   * padding) for RoPE, learned and sinusoidal PE; default 0 … Lq−1. Self-attention keys share them.
   */
  positionIds?: TensorLike;
  /**
   * [B, L] integers (self-attention): packed sequences, query i sees key j only when their ids
   * are equal (besides the other masks), like flash-attn's cu_seqlens without padding.
   */
  sequenceIds?: TensorLike;
}

export interface RunOptions {
  /**
   * Also return the softmax weights: true or 'perHead' → [B, H, Lq, Lk]; 'averaged' → the mean
   * over heads [B, Lq, Lk] (PyTorch's `average_attn_weights=True`). Forces the unfused path.
   */
  returnWeights?: ReturnWeights;
  /** Step names to return in `captured`, or 'all'. Score-shaped steps force the unfused path. */
  capture?: readonly StepName[] | 'all';
  /**
   * Also return `lse` [B, H, Lq]: the natural log of each query's softmax denominator over its
   * visible scaled scores (−∞ when it sees no key). Results over disjoint key shards merge
   * exactly with it (docs/FEATURES.md › Log-sum-exp). Fused where the backend's kernel gives it.
   */
  returnLse?: boolean;
}

export type ReturnWeights = boolean | 'perHead' | 'averaged';

const WEIGHT_KEYS = new Set(['wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo', 'positionalEmbedding', 'sinks']);
const INPUT_KEYS = new Set(['query', 'key', 'value', 'keyPaddingMask', 'attnMask', 'positionIds', 'sequenceIds']);
const RUN_KEYS = new Set(['returnWeights', 'capture', 'returnLse']);

/** Validates weights against the config; returns float32 tensors by name. */
export function validateWeights(config: ResolvedConfig, weights: AttentionWeights): Map<string, Tensor> {
  if (weights === null || typeof weights !== 'object') {
    throw new QkvError(
      'INVALID_DATA',
      `weights: expected { wq, wk, wv, wo, bq?, bk?, bv?, bo? }, got ${describeValue(weights)}`,
    );
  }
  assertKnownKeys('weights', weights, WEIGHT_KEYS);
  const { dModel, numHeads: H, numKVHeads: KVH, headDim: hd, keyDim, valueDim } = config;
  const kIn = keyDim === dModel ? 'dModel' : 'keyDim';
  const vIn = valueDim === dModel ? 'dModel' : 'valueDim';
  const spec: [keyof AttentionWeights, number[], string][] = [
    ['wq', [dModel, H * hd], 'dModel × numHeads·headDim'],
    ['wk', [keyDim, KVH * hd], `${kIn} × numKVHeads·headDim`],
    ['wv', [valueDim, KVH * hd], `${vIn} × numKVHeads·headDim`],
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
    const expected = !isBias || (config.biases as readonly string[]).includes(name);
    if (value === undefined) {
      if (expected) {
        throw new QkvError(
          'INVALID_DATA',
          `weights.${name}: missing; expected ${formatShape(shape)} (${meaning})${isBias ? ` because config.bias is ${config.bias ? 'true' : `[${config.biases.join(', ')}]`}` : ''}`,
        );
      }
      continue;
    }
    if (!expected) {
      throw new QkvError(
        'INVALID_OPTION',
        config.biases.length === 0
          ? `weights.${name}: config.bias is false, so no biases are expected; remove it or set bias: true`
          : `weights.${name}: config.bias is [${config.biases.join(', ')}], which does not list ${name}; remove it or add it to config.bias`,
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
  const sinks = validateSinks(config, weights.sinks);
  if (sinks) out.set('sinks', sinks);
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
  if (hasKey) {
    const key = batched(toTensor('key', inputs.key, { finite: 'all' }));
    const value = batched(toTensor('value', inputs.value, { finite: 'all' }));
    for (const [name, t, width, widthName] of [
      ['key', key, config.keyDim, config.keyDim === dModel ? 'dModel' : 'keyDim'],
      ['value', value, config.valueDim, config.valueDim === dModel ? 'dModel' : 'valueDim'],
    ] as const) {
      if (t.shape.length !== 3 || t.shape[0] !== B || t.shape[2] !== width) {
        const expected = unbatched ? `[Lk, ${width}]` : `[${B}, Lk, ${width}]`;
        throw new QkvError(
          'INVALID_SHAPE',
          `${name}: expected ${expected} (${unbatched ? '' : 'batch × '}length × ${widthName}), got ${formatShape(unbatched ? t.shape.slice(1) : t.shape)}`,
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
  } else if (config.keyDim !== dModel || config.valueDim !== dModel) {
    throw new QkvError(
      'INVALID_DATA',
      `key: missing; config.keyDim ${config.keyDim} / valueDim ${config.valueDim} differ from dModel ${dModel}, so K and V cannot come from the query: give key [B, Lk, ${config.keyDim}] and value [B, Lk, ${config.valueDim}]`,
    );
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
  const positionIds = preparePositionIds(config, inputs.positionIds, {
    batch: B,
    queryLength: Lq,
    unbatched,
    selfAttention,
  });
  if (inputs.sequenceIds !== undefined) {
    feeds.set('sequenceIds', validateSequenceIds(inputs.sequenceIds, B, Lq, unbatched, selfAttention));
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
      ...(positionIds ? { positionIds } : {}),
      ...(feeds.has('sequenceIds') ? { hasSequenceIds: true } : {}),
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
  if (options.returnLse !== undefined && typeof options.returnLse !== 'boolean') {
    throw new QkvError(
      'INVALID_OPTION',
      `options.returnLse: expected true or false, got ${describeValue(options.returnLse)}`,
    );
  }
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
  if (options.returnLse) outputs.add('lse');
  if (hasPE) outputs.add('positionalEncoding');
  return { outputs: [...outputs], captures };
}
