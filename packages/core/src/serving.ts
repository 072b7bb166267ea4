import type { Backend } from './backend.js';
import type { ResolvedConfig } from './config.js';
import { QkvError } from './errors.js';
import { formatShape, type Tensor, type TensorLike, toTensor } from './tensor.js';

/**
 * Validation of the serving features' weights and inputs (issue #18): the sink logits and the
 * packed-sequence ids. Config options (softcap, sinks, sinkTokens) are checked in config-serving.ts.
 */

/** Throws INVALID_SHAPE naming the tensor, the expected shape and its meaning, and what came. */
export function expectShape(name: string, t: Tensor, expected: readonly number[], meaning: string): void {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw new QkvError(
      'INVALID_SHAPE',
      `${name}: expected ${formatShape(expected)} (${meaning}), got ${formatShape(t.shape)}`,
    );
  }
}

/** `weights.sinks`: [numHeads] finite logits, present exactly when config.sinks is true. */
export function validateSinks(config: ResolvedConfig, sinks: TensorLike | undefined): Tensor | null {
  if (!config.sinks) {
    if (sinks !== undefined) {
      throw new QkvError('INVALID_OPTION', 'weights.sinks: only used with config.sinks true, got config.sinks false');
    }
    return null;
  }
  if (sinks === undefined) {
    throw new QkvError(
      'INVALID_DATA',
      `weights.sinks: missing; expected [${config.numHeads}] (one logit per head) because config.sinks is true`,
    );
  }
  const t = toTensor('sinks', sinks, { finite: 'all' });
  expectShape('sinks', t, [config.numHeads], 'one sink logit per query head');
  return t;
}

/** Largest integer a float32 holds exactly: ids travel to the kernels as float32. */
const MAX_SEQUENCE_ID = 2 ** 24;

/** `inputs.sequenceIds`: [B, Lq] integers for self-attention (unbatched: [Lq]). */
export function validateSequenceIds(ids: TensorLike, B: number, L: number, unbatched: boolean, self: boolean): Tensor {
  if (!self) {
    throw new QkvError(
      'INVALID_OPTION',
      'inputs.sequenceIds: packed sequences need self-attention (queries and keys are the same tokens), got key/value inputs',
    );
  }
  let t = toTensor('sequenceIds', ids, { allowIntegerArrays: true, finite: 'all' });
  t = unbatched ? { shape: [1, ...t.shape], data: t.data } : t;
  expectShape('sequenceIds', t, [B, L], 'batch × length, one integer id per token');
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i] as number;
    if (!Number.isInteger(v) || Math.abs(v) > MAX_SEQUENCE_ID) {
      throw new QkvError(
        'INVALID_DATA',
        `sequenceIds.data[${i}]: expected an integer id with |id| ≤ 2^24 (exact in float32), got ${v}`,
      );
    }
  }
  return t;
}

/** Refuses a run input the backend does not declare (it would ignore it silently). */
export function checkInputs(backend: Backend, name: string, feeds: ReadonlyMap<string, Tensor>): void {
  if (feeds.has('sequenceIds') && !(backend.inputs ?? []).includes('sequenceIds')) {
    throw new QkvError(
      'CAPABILITY',
      `inputs.sequenceIds: backend "${name}" does not run packed sequences (its Backend.inputs does not list 'sequenceIds'); use the cpu backend`,
    );
  }
}
