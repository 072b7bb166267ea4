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

/** s [rows, cols] → m [rows]. */
export function rowMaxSpec(rows: number, cols: number): KernelSpec {
  return {
    name: 'softmax.rowMax',
    output: rows,
    constants: { cols },
    source: `function rowMax(s, negInf) {
  const off = this.thread.x * this.constants.cols;
  let m = negInf;
  for (let j = 0; j < this.constants.cols; j++) {
    const v = s[off + j];
    if (v > m) {
      m = v;
    }
  }
  return m;
}`,
  };
}

/** s [rows, cols], m [rows] → l [rows]. */
export function rowSumSpec(rows: number, cols: number): KernelSpec {
  return {
    name: 'softmax.rowSum',
    output: rows,
    constants: { cols },
    // −3e38 rather than == −∞: robust on drivers that flush infinities to ±FLT_MAX.
    source: `function rowSum(s, m) {
  const r = this.thread.x;
  const mr = m[r];
  if (mr < -3.0e38) {
    return 0.0;
  }
  const off = r * this.constants.cols;
  let l = 0.0;
  for (let j = 0; j < this.constants.cols; j++) {
    l += Math.exp(s[off + j] - mr);
  }
  return l;
}`,
  };
}

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
 * pass 3 exp(s − m) / l (0 for a row with no visible key).
 */
export function softmax(ctx: Textures, s: WebGLTensor, attrs: SoftmaxAttrs): WebGLTensor {
  const { rows, cols } = attrs;
  const m = ctx.run(rowMaxSpec(rows, cols), [rows], [ctx.tex(s), Number.NEGATIVE_INFINITY]);
  try {
    const l = ctx.run(rowSumSpec(rows, cols), [rows], [ctx.tex(s), ctx.tex(m)]);
    try {
      return ctx.run(normalizeSpec(rows, cols), s.shape, [ctx.tex(s), ctx.tex(m), ctx.tex(l)]);
    } finally {
      ctx.dispose(l);
    }
  } finally {
    ctx.dispose(m);
  }
}
