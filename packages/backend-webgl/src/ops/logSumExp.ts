import type { LogSumExpAttrs } from '@qkv/core';
import type { KernelSpec } from '../device.js';
import type { Textures, WebGLTensor } from '../tensor.js';
import { type RowSinks, rowSinks, sinkArgs, sinkLine, withRowStats } from './softmax.js';

/*
 * lse = the log of the softmax denominator per score row, from the softmax's own first two passes
 * (softmax.rowMax m, softmax.rowSum l = Σ exp(s − m), both with the sink when there are sink
 * logits):
 *   lse[r] = m[r] + log l[r];  where l[r] = 0 (a row with no visible key): −∞, or sink_h with
 *   sink logits (the sink alone is then the denominator).
 * The fused path calls `lseTileSpec` once per score tile: the tile's rows come from its m and l,
 * every other row from the previous tile's lse (the first tile writes −∞ there).
 */

/** What a row with no visible key gets: −∞, or its head's sink (`sinkLine` needs r, rowStart). */
const empty = (sinks: RowSinks | null) => (sinks ? `${sinkLine}\n    return sink;` : 'return negInf;');
const constantsOf = (sinks: RowSinks | null): Record<string, number> =>
  sinks ? { H: sinks.numHeads, Lq: sinks.queryLength } : {};

/** m [rows], l [rows] (, sinks [H], rowStart) → lse [rows]. */
export function lseSpec(rows: number, sinks: RowSinks | null): KernelSpec {
  return {
    name: sinks ? 'logSumExp+sinks' : 'logSumExp',
    output: rows,
    constants: constantsOf(sinks),
    source: `function logSumExp(m, l, negInf${sinks ? ', sinks, rowStart' : ''}) {
  const r = this.thread.x;
  const lr = l[r];
  if (lr <= 0.0) {
    ${empty(sinks)}
  }
  return m[r] + Math.log(lr);
}`,
  };
}

/**
 * m, l [tileRows] of the tile starting at row `rowStart` (, prev [rows]) (, sinks [H], rowStart)
 * → lse [rows].
 */
export function lseTileSpec(rows: number, tileRows: number, hasPrev: boolean, sinks: RowSinks | null): KernelSpec {
  return {
    name: `logSumExp.tile${hasPrev ? '+prev' : ''}${sinks ? '+sinks' : ''}`,
    output: rows,
    constants: { tileRows, ...constantsOf(sinks) },
    source: `function logSumExpTile(m, l${hasPrev ? ', prev' : ''}, negInf, rowStart${sinks ? ', sinks' : ''}) {
  const t = this.thread.x;
  const r = t - rowStart;
  if (r < 0.0 || r >= this.constants.tileRows) {
    return ${hasPrev ? 'prev[t]' : 'negInf'};
  }
  const lr = l[r];
  if (lr <= 0.0) {
    ${empty(sinks)}
  }
  return m[r] + Math.log(lr);
}`,
  };
}

/** masked [B, H, Lq, Lk] → lse [B, H, Lq]: the softmax's passes 1–2, then m + log l. */
export function logSumExp(ctx: Textures, s: WebGLTensor, attrs: LogSumExpAttrs): WebGLTensor {
  const sinks = rowSinks(attrs);
  return withRowStats(ctx, s, attrs, (m, l) =>
    ctx.run(lseSpec(attrs.rows, sinks), s.shape.slice(0, -1), [
      ctx.tex(m),
      ctx.tex(l),
      Number.NEGATIVE_INFINITY,
      ...sinkArgs(attrs),
    ]),
  );
}
