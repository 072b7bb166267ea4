import {
  type Attention,
  type AttentionConfig,
  type AttentionSession,
  type AttentionWeights,
  isQkvError,
  type Tensor,
} from '@qkv/core';
import { expect } from 'vitest';
import { randomTensor, rng } from './random.js';

/** What the serving blocks (serving.ts, serving-sessions.ts, lse-serving.ts) share. */

/** Tokens at … at+t−1 of E [B, L, D] → [B, t, D]. */
export function tokens(E: Tensor, at: number, t: number): Tensor {
  const [B, L, D] = E.shape as [number, number, number];
  const x = new Float32Array(B * t * D);
  for (let b = 0; b < B; b++) x.set(E.data.subarray((b * L + at) * D, (b * L + at + t) * D), b * t * D);
  return { shape: [B, t, D], data: x };
}

/** Feeds E through `session` in steps of `sizes` (cycled); returns the attention [B, L, D]. */
export async function feed(session: AttentionSession, E: Tensor, from: number, to: number, sizes: number[]) {
  const [B, , D] = E.shape as [number, number, number];
  const out = new Float32Array(B * (to - from) * D);
  let k = 0;
  for (let at = from; at < to; ) {
    const t = Math.min(sizes[k++ % sizes.length] as number, to - at);
    const r = await session.step(tokens(E, at, t));
    expect(r.positions).toEqual([at, at + t]);
    for (let b = 0; b < B; b++)
      out.set(r.attention.data.subarray(b * t * D, (b + 1) * t * D), (b * (to - from) + at - from) * D);
    at += t;
  }
  return { shape: [B, to - from, D], data: out };
}

/** Rows at … at+t−1 of a [B, L, D] result. */
export const rowsOf = (full: Tensor, at: number, t: number) => tokens(full, at, t);

/** Runs `body`, or checks that a backend without packed sequences refuses them with CAPABILITY. */
export async function packed(attn: Attention, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (!isQkvError(e, 'CAPABILITY')) throw e;
    expect((e as Error).message).toMatch(/^inputs.sequenceIds: backend "[^"]+" does not run packed sequences/);
    expect(attn.backend, 'cpu runs packed sequences').not.toBe('cpu');
  }
}

export const ids = (B: number, L: number, rows: number[][]): Tensor => ({
  shape: [B, L],
  data: Float32Array.from(rows.flat()),
});

/** weights.sinks [H] for a config with sink logits (none otherwise). */
export const sinkWeights = (config: AttentionConfig, seed: number): Partial<AttentionWeights> =>
  config.sinks ? { sinks: randomTensor([config.numHeads], rng(seed), 2) } : {};

/** The last query's row of weights [B, H, L, L] → [B, H, 1, L] (a session's last step). */
export function lastQueryWeights(w: { shape: readonly number[]; data: ArrayLike<number> }): {
  shape: number[];
  data: Float64Array;
} {
  const [B, H, , L] = w.shape as [number, number, number, number];
  const data = Float64Array.from(
    { length: B * H * L },
    (_, e) => w.data[Math.floor(e / L) * L * L + (L - 1) * L + (e % L)] as number,
  );
  return { shape: [B, H, 1, L], data };
}

/** Query rows at … at+n−1 of weights [B, H, t, Lk] → [B, H, n, Lk]. */
export function queryRows(w: Tensor, at: number, n: number): Tensor {
  const [B, H, t, Lk] = w.shape as [number, number, number, number];
  const data = new Float32Array(B * H * n * Lk);
  for (let bh = 0; bh < B * H; bh++) data.set(w.data.subarray((bh * t + at) * Lk, (bh * t + at + n) * Lk), bh * n * Lk);
  return { shape: [B, H, n, Lk], data };
}

/** Rows at … at+n−1, columns 0 … cols−1 of one run's weights [B, H, L, L] → [B, H, n, cols]. */
export function weightRows(
  w: { shape: readonly number[]; data: ArrayLike<number> },
  at: number,
  n: number,
  cols: number,
): { shape: number[]; data: Float64Array } {
  const [B, H, , L] = w.shape as [number, number, number, number];
  const data = Float64Array.from({ length: B * H * n * cols }, (_, e) => {
    const [bh, i, j] = [Math.floor(e / (n * cols)), Math.floor(e / cols) % n, e % cols];
    return w.data[(bh * L + at + i) * L + j] as number;
  });
  return { shape: [B, H, n, cols], data };
}
