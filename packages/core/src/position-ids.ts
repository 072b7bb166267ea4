/**
 * `positionIds` [B, Lq]: the position of every query token, as Hugging Face passes
 * `position_ids` under left padding. They replace the default positions 0 … Lq−1 wherever a
 * positional encoding reads positions: RoPE (q, and k in self-attention, rotate at them), learned
 * PE (rows of the table) and sinusoidal PE (PE at them). Causality, padding, the window and ALiBi
 * keep using row indices, as the frameworks do.
 */
import type { ResolvedConfig } from './config.js';
import { describeValue, QkvError } from './errors.js';
import { sinusoidalPositionalEncoding } from './positional.js';
import { formatShape, type Tensor, toTensor } from './tensor.js';

/** Largest position: float32 holds every integer up to 2^24 exactly (the kernels' angle inputs). */
const MAX_POSITION = 2 ** 24;

/**
 * Validates `positionIds` for a call with B batches of Lq queries; returns them flat [B·Lq]
 * (row-major), or null when not given.
 */
export function preparePositionIds(
  config: ResolvedConfig,
  value: unknown,
  dims: { batch: number; queryLength: number; unbatched: boolean; selfAttention: boolean },
): number[] | null {
  if (value === undefined) return null;
  const pe = config.positionalEncoding;
  if (pe === 'none' || pe === 'alibi') {
    throw new QkvError(
      'INVALID_OPTION',
      `positionIds: only used by positionalEncoding 'rotary', 'learned' or 'sinusoidal', got positionalEncoding '${pe}' (nothing would read them)`,
    );
  }
  if (pe === 'rotary' && !dims.selfAttention) {
    throw new QkvError(
      'INVALID_OPTION',
      'positionIds: with cross-attention and RoPE the keys are another sequence whose positions positionIds do not give; omit positionIds (keys and queries at 0 … L−1)',
    );
  }
  const { batch: B, queryLength: Lq, unbatched } = dims;
  let t = toTensor('positionIds', value, { allowIntegerArrays: true, finite: 'all' });
  if (unbatched) t = { shape: [1, ...t.shape], data: t.data };
  const expected = [B, Lq];
  if (t.shape.length !== 2 || t.shape[0] !== B || t.shape[1] !== Lq) {
    throw new QkvError(
      'INVALID_SHAPE',
      `positionIds: expected ${unbatched ? `[${Lq}]` : formatShape(expected)} (${unbatched ? '' : 'batch × '}query length), got ${formatShape(unbatched ? t.shape.slice(1) : t.shape)}`,
    );
  }
  const ids: number[] = new Array(B * Lq);
  for (let i = 0; i < t.data.length; i++) {
    const p = t.data[i] as number;
    if (!Number.isInteger(p) || p < 0 || p >= MAX_POSITION) {
      throw new QkvError(
        'INVALID_DATA',
        `positionIds.data[${i}]: expected an integer position in 0 … ${MAX_POSITION - 1}, got ${describeValue(p)}`,
      );
    }
    ids[i] = p;
  }
  return ids;
}

/**
 * PE rows at the given positions, [B, Lq, dModel]: rows of the learned table, or the sinusoidal
 * encoding at each position (computed in float64 and rounded once, like the kernel).
 */
export function positionalEncodingAt(
  config: ResolvedConfig,
  table: Tensor | null,
  ids: readonly number[],
  B: number,
  Lq: number,
): Tensor {
  const D = config.dModel;
  const out = new Float32Array(B * Lq * D);
  for (let r = 0; r < ids.length; r++) {
    const p = ids[r] as number;
    if (table) {
      const rows = table.shape[0] as number;
      if (p >= rows) {
        throw new QkvError(
          'INVALID_SHAPE',
          `positionIds.data[${r}]: position ${p} needs row ${p} of the learned positionalEmbedding, which has ${rows} rows ([${rows}, ${D}])`,
        );
      }
      out.set(table.data.subarray(p * D, (p + 1) * D), r * D);
    } else {
      out.set(sinusoidalPositionalEncoding(1, D, p).data, r * D);
    }
  }
  return { shape: [B, Lq, D], data: out };
}
