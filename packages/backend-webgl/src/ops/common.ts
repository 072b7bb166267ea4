/**
 * Shared pieces of the kernel sources.
 *
 * Every kernel is a gpu.js source *string*, not a JS function: gpu.js translates
 * `fn.toString()` to GLSL, and a bundler's minifier or a TS transpiler rewriting a function
 * (`!0` for true, renamed locals, helpers) breaks that translation. A string is what we wrote.
 *
 * Every tensor is a flat float texture read as `a[flatIndex]` (gpu.js lays out n values in a
 * near-square texture). Index arithmetic runs in float (WebGL1 has no integer textures or
 * reliable int division), exact below 2^24, which `checkLimits` enforces; `floor((t + 0.5) / n)`
 * is the integer quotient even when the driver divides by multiplying with a rounded reciprocal.
 */
import type { KernelSpec } from '../device.js';

/** GLSL-side integer quotient and remainder of `t` by the constant `n` (both emitted as lines). */
export function divmod(q: string, r: string, t: string, n: string): string {
  return `const ${q} = Math.floor((${t} + 0.5) / this.constants.${n});\n  const ${r} = ${t} - ${q} * this.constants.${n};`;
}

/** Rows and heads of the attention kernels, as the compile-time constants they use. */
export interface HeadConstants {
  readonly [key: string]: number;
  readonly H: number;
  readonly KVH: number;
  readonly group: number;
  readonly Lq: number;
  readonly Lk: number;
  readonly hd: number;
  /** Rows per batch in k and v: keyCapacity for a KV cache [B, maxLength, KVH·hd], else Lk. */
  readonly cap: number;
}

export function headConstants(a: {
  numHeads: number;
  numKVHeads: number;
  queryLength: number;
  keyLength: number;
  headDim: number;
  keyCapacity?: number;
}): HeadConstants {
  return {
    H: a.numHeads,
    KVH: a.numKVHeads,
    group: a.numHeads / a.numKVHeads,
    Lq: a.queryLength,
    Lk: a.keyLength,
    hd: a.headDim,
    cap: a.keyCapacity ?? a.keyLength,
  };
}

/**
 * Decomposes a score row index `row` = (b·H + h)·Lq + i into b, h, i and the KV head
 * kvh = floor(h / group) it reads (grouped-query: consecutive query heads share a KV head).
 */
export function rowToBHI(row: string): string {
  return [
    divmod('bh', 'i', row, 'Lq'),
    divmod('b', 'h', 'bh', 'H'),
    'const kvh = Math.floor((h + 0.5) / this.constants.group);',
  ].join('\n  ');
}

/** Copies a host array (or texture) into a texture of its own: `upload`. */
export function copySpec(n: number): KernelSpec {
  return {
    name: 'copy',
    output: n,
    constants: {},
    source: `function copy(a) {
  return a[this.thread.x];
}`,
  };
}
