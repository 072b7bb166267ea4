import { assertKnownKeys, type ResolvedConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { type RunOptions, validateRunOptions } from './inputs.js';
import { validateSequenceIds } from './serving.js';
import { formatShape, type Tensor, type TensorLike, toTensor } from './tensor.js';

/**
 * Reshaping a session step's pieces: a window session runs a long step as pieces of at most w
 * tokens, and its compacted cache's weights are put back on positions; and the validation of a
 * step's x and options.
 */

const STEP_KEYS = new Set(['returnWeights', 'returnLse', 'sequenceIds']);

/**
 * A step's options and x [B, t, dModel] (or unbatched [t, dModel], answered unbatched), and its
 * `sequenceIds` [B, t] (unbatched [t]) when given.
 */
export function validateStep(
  config: ResolvedConfig,
  xIn: TensorLike,
  options: { sequenceIds?: TensorLike },
): { x: Tensor; unbatched: boolean; outputs: string[]; ids: Tensor | null } {
  const { dModel } = config;
  if (options === null || typeof options !== 'object') {
    throw new QkvError('INVALID_OPTION', `session.step options: expected an object, got ${describeValue(options)}`);
  }
  assertKnownKeys('session.step options', options, STEP_KEYS);
  const { sequenceIds, ...runOptions } = options;
  const { outputs } = validateRunOptions(config, runOptions as RunOptions);
  let x = toTensor('x', xIn, { finite: 'all' });
  const unbatched = x.shape.length === 2;
  if (unbatched) x = { shape: [1, ...x.shape], data: x.data };
  if (x.shape.length !== 3 || x.shape[2] !== dModel || (x.shape[1] as number) < 1) {
    throw new QkvError(
      'INVALID_SHAPE',
      `session.step x: expected [B, t, ${dModel}] (batch × new tokens × dModel) or [t, ${dModel}], got ${formatShape(xIn.shape)}`,
    );
  }
  const [B, t] = x.shape as [number, number];
  const ids = sequenceIds === undefined ? null : validateSequenceIds(sequenceIds, B, t, unbatched, true);
  return { x, unbatched, outputs, ids };
}

/**
 * Weights over a compacted cache's rows [B, H, t, rows] → over every position [B, H, t, length]:
 * column j goes to position `positionOf(j)`, the positions no longer cached (outside every
 * window) get 0, so a window session's weights match one causal run()'s.
 */
export function weightsByPosition(w: Tensor, length: number, positionOf: (j: number) => number): Tensor {
  const [B, H, t, rows] = w.shape as [number, number, number, number];
  if (rows === length && positionOf(rows - 1) === rows - 1) return w;
  const out = new Float32Array(B * H * t * length);
  for (let r = 0; r < B * H * t; r++) {
    for (let j = 0; j < rows; j++) out[r * length + positionOf(j)] = w.data[r * rows + j] as number;
  }
  return { shape: [B, H, t, length], data: out };
}

/** Ids at … at+n−1 of ids [B, t] → [B, n]. */
export function sliceIds(ids: Tensor, at: number, n: number): Tensor {
  const [B, t] = ids.shape as [number, number];
  const out = new Float32Array(B * n);
  for (let b = 0; b < B; b++) out.set(ids.data.subarray(b * t + at, b * t + at + n), b * n);
  return { shape: [B, n], data: out };
}

/** Tokens at … at+n−1 of x [B, t, D] → [B, n, D]. */
export function sliceTokens(x: Tensor, at: number, n: number): Tensor {
  const [B, t, D] = x.shape as [number, number, number];
  const out = new Float32Array(B * n * D);
  for (let b = 0; b < B; b++) out.set(x.data.subarray((b * t + at) * D, (b * t + at + n) * D), b * n * D);
  return { shape: [B, n, D], data: out };
}

/** [B, t_p, D] pieces → [B, Σ t_p, D]. */
export function concatTokens(parts: Tensor[]): Tensor {
  const [B, , D] = (parts[0] as Tensor).shape as [number, number, number];
  const t = parts.reduce((n, p) => n + (p.shape[1] as number), 0);
  const out = new Float32Array(B * t * D);
  let at = 0;
  for (const p of parts) {
    const n = p.shape[1] as number;
    for (let b = 0; b < B; b++) out.set(p.data.subarray(b * n * D, (b + 1) * n * D), (b * t + at) * D);
    at += n;
  }
  return { shape: [B, t, D], data: out };
}

/** Weights pieces [B, H, t_p, L_p] (L_p ≤ Lk) → [B, H, Σ t_p, Lk], zero past each piece's keys. */
export function concatQueries(parts: Tensor[], Lk: number): Tensor {
  if (parts.length === 1 && (parts[0] as Tensor).shape[3] === Lk) return parts[0] as Tensor;
  const [B, H] = (parts[0] as Tensor).shape as [number, number];
  const t = parts.reduce((n, p) => n + (p.shape[2] as number), 0);
  const out = new Float32Array(B * H * t * Lk);
  let at = 0;
  for (const p of parts) {
    const [, , n, L] = p.shape as [number, number, number, number];
    for (let bh = 0; bh < B * H; bh++)
      for (let i = 0; i < n; i++)
        out.set(p.data.subarray((bh * n + i) * L, (bh * n + i + 1) * L), (bh * t + at + i) * Lk);
    at += n;
  }
  return { shape: [B, H, t, Lk], data: out };
}

/** lse pieces [B, H, t_p] → [B, H, Σ t_p] (side by side on the query axis). */
export function concatLse(parts: Tensor[]): Tensor {
  const w = concatQueries(
    parts.map((p) => ({ shape: [...p.shape, 1], data: p.data })),
    1,
  );
  return { shape: w.shape.slice(0, 3), data: w.data };
}
