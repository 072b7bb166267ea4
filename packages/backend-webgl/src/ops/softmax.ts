import type { SoftmaxAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { divmod } from './common.js';

/*
 * Row softmax over the last axis in three passes, so no thread loops over a row more than once
 * per pass (one thread per output element recomputing its row's max and sum would cost
 * O(cols²) per row):
 *   pass 1  rowMax:  m[r] = max_j s[r, j]                      (−∞ when every key is hidden)
 *   pass 2  rowSum:  l[r] = Σ_j exp(s[r, j] − m[r])            (0 for an all −∞ row)
 *   pass 3  normalize: out[r, j] = exp(s[r, j] − m[r]) / l[r]  (0 where l[r] = 0)
 * The max is subtracted only for stability (exp never overflows). A row with no visible key
 * yields zeros, not NaN, as the kernel contract requires. The fused path reuses all three on
 * its score tiles.
 */

/**
 * Sink logits (config.sinks) of a row softmax: row r is head floor(r / Lq) mod H, whose logit
 * sinks[h] joins the row's max (pass 1, rows with a visible key only) and adds exp(sink − m) to
 * its sum (pass 2); normalize is unchanged, so the row sums to < 1 and an all −∞ row stays 0.
 */
export interface RowSinks {
  readonly numHeads: number;
  readonly queryLength: number;
}

/** The sink rows of a softmax/fused call, or null without sink logits. */
export function rowSinks(attrs: { sinks?: readonly number[]; queryLength?: number }): RowSinks | null {
  return attrs.sinks === undefined ? null : { numHeads: attrs.sinks.length, queryLength: attrs.queryLength as number };
}

// Score row rowStart + r (a fused tile's rows start at rowStart) belongs to head bh mod H.
export const sinkLine = `const bh = Math.floor((r + rowStart + 0.5) / this.constants.Lq);
  const sink = sinks[bh - Math.floor((bh + 0.5) / this.constants.H) * this.constants.H];`;

/** s [rows, cols] (, sinks [H], rowStart) → m [rows]. */
export function rowMaxSpec(rows: number, cols: number, sinks: RowSinks | null = null): KernelSpec {
  return {
    name: sinks ? 'softmax.rowMax+sinks' : 'softmax.rowMax',
    output: rows,
    constants: sinks ? { cols, H: sinks.numHeads, Lq: sinks.queryLength } : { cols },
    source: `function rowMax(s, negInf${sinks ? ', sinks, rowStart' : ''}) {
  const r = this.thread.x;
  const off = r * this.constants.cols;
  let m = negInf;
  for (let j = 0; j < this.constants.cols; j++) {
    const v = s[off + j];
    if (v > m) {
      m = v;
    }
  }
  ${
    sinks
      ? `if (m > -3.0e38) {
    ${sinkLine}
    if (sink > m) {
      m = sink;
    }
  }`
      : ''
  }
  return m;
}`,
  };
}

/** s [rows, cols], m [rows] (, sinks [H], rowStart) → l [rows]. */
export function rowSumSpec(rows: number, cols: number, sinks: RowSinks | null = null): KernelSpec {
  return {
    name: sinks ? 'softmax.rowSum+sinks' : 'softmax.rowSum',
    output: rows,
    constants: sinks ? { cols, H: sinks.numHeads, Lq: sinks.queryLength } : { cols },
    // −3e38 rather than == −∞: robust on drivers that flush infinities to ±FLT_MAX.
    source: `function rowSum(s, m${sinks ? ', sinks, rowStart' : ''}) {
  const r = this.thread.x;
  const mr = m[r];
  if (mr < -3.0e38) {
    return 0.0;
  }
  const off = r * this.constants.cols;
  let l = 0.0;
  ${sinks ? `${sinkLine}\n  l = Math.exp(sink - mr);` : ''}
  for (let j = 0; j < this.constants.cols; j++) {
    l += Math.exp(s[off + j] - mr);
  }
  return l;
}`,
  };
}

/** The extra arguments of rowMax/rowSum with sink logits (none without): sinks [H], rowStart. */
export const sinkArgs = (attrs: { sinks?: readonly number[] }, rowStart = 0): unknown[] =>
  attrs.sinks === undefined ? [] : [Float32Array.from(attrs.sinks), rowStart];

/** s [rows, cols], m [rows], l [rows] → weights [rows, cols]. */
export function normalizeSpec(rows: number, cols: number): KernelSpec {
  return {
    name: 'softmax.normalize',
    output: rows * cols,
    constants: { cols },
    source: `function normalize(s, m, l) {
  const t = this.thread.x;
  ${divmod('r', 'j', 't', 'cols')}
  const lr = l[r];
  if (lr <= 0.0) {
    return 0.0;
  }
  return Math.exp(s[t] - m[r]) / lr;
}`,
  };
}

/**
 * Row softmax (gpu.js), three kernels: pass 1 row max m, pass 2 row sum l = Σ exp(s − m),
 * pass 3 exp(s − m) / l (0 for a row with no visible key); with sink logits (`RowSinks`) the
 * head's sink joins m and l.
 */
export function softmax(ctx: Textures, s: WebGLTensor, attrs: SoftmaxAttrs): WebGLTensor {
  const { rows, cols } = attrs;
  return withRowStats(ctx, s, attrs, (m, l) =>
    ctx.run(normalizeSpec(rows, cols), s.shape, [ctx.tex(s), ctx.tex(m), ctx.tex(l)]),
  );
}

/**
 * Passes 1–2 over the rows of s (row max m, l = Σ exp(s − m), the sink in both with sink logits),
 * then `use(m, l)`; frees m and l after. Shared with logSumExp.
 */
export function withRowStats(
  ctx: Textures,
  s: WebGLTensor,
  attrs: SoftmaxAttrs,
  use: (m: WebGLTensor, l: WebGLTensor) => WebGLTensor,
): WebGLTensor {
  const { rows, cols } = attrs;
  const sinks = rowSinks(attrs);
  const m = ctx.run(rowMaxSpec(rows, cols, sinks), [rows], [ctx.tex(s), Number.NEGATIVE_INFINITY, ...sinkArgs(attrs)]);
  try {
    const l = ctx.run(rowSumSpec(rows, cols, sinks), [rows], [ctx.tex(s), ctx.tex(m), ...sinkArgs(attrs)]);
    try {
      return use(m, l);
    } finally {
      ctx.dispose(l);
    }
  } finally {
    ctx.dispose(m);
  }
}
