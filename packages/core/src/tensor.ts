import { describeValue, QkvError } from './errors.js';

/** A dense, row-major (last index fastest) float32 tensor. */
export interface Tensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Anything qkv accepts where a tensor is expected: converted to float32 at the boundary. */
export interface TensorLike {
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array | readonly number[] | ArrayLike<number>;
}

export type NestedNumbers = number | readonly NestedNumbers[];

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(', ')}]`;
}

function inferShape(value: NestedNumbers, name: string): number[] {
  const shape: number[] = [];
  let cur: NestedNumbers = value;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0] as NestedNumbers;
  }
  if (shape.length === 0 && typeof value !== 'number') {
    throw new QkvError('INVALID_DATA', `${name}: expected nested number arrays, got ${describeValue(value)}`);
  }
  return shape;
}

function flattenInto(value: NestedNumbers, shape: number[], depth: number, out: number[], name: string): void {
  if (depth === shape.length) {
    if (typeof value !== 'number') {
      throw new QkvError('INVALID_DATA', `${name}: expected a number at depth ${depth}, got ${describeValue(value)}`);
    }
    out.push(value);
    return;
  }
  if (!Array.isArray(value) || value.length !== shape[depth]) {
    throw new QkvError(
      'INVALID_SHAPE',
      `${name}: ragged nested array: expected length ${shape[depth]} at depth ${depth}, got ${describeValue(value)}`,
    );
  }
  for (const v of value as readonly NestedNumbers[]) flattenInto(v, shape, depth + 1, out, name);
}

/**
 * Makes a tensor from nested arrays (shape inferred) or from flat data plus a shape.
 * `tensor([[1, 2], [3, 4]])` and `tensor([1, 2, 3, 4], [2, 2])` are the same tensor.
 */
export function tensor(values: NestedNumbers | ArrayLike<number>, shape?: readonly number[]): Tensor {
  if (shape !== undefined) {
    return toTensor('tensor', { shape, data: values as ArrayLike<number> });
  }
  if (ArrayBuffer.isView(values)) {
    const data = values as unknown as ArrayLike<number>;
    return toTensor('tensor', { shape: [data.length], data });
  }
  const inferred = inferShape(values as NestedNumbers, 'tensor');
  const flat: number[] = [];
  flattenInto(values as NestedNumbers, inferred, 0, flat, 'tensor');
  return { shape: inferred, data: Float32Array.from(flat) };
}

export function zeros(shape: readonly number[]): Tensor {
  return { shape: [...shape], data: new Float32Array(sizeOf(shape)) };
}

function checkShape(name: string, shape: unknown): readonly number[] {
  if (!Array.isArray(shape)) {
    throw new QkvError(
      'INVALID_SHAPE',
      `${name}.shape: expected an array of positive integers, got ${describeValue(shape)}`,
    );
  }
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d <= 0) {
      throw new QkvError(
        'INVALID_SHAPE',
        `${name}.shape: expected positive integer dimensions, got ${formatShape(shape.map(String))}`,
      );
    }
  }
  return shape as readonly number[];
}

export interface ToTensorOptions {
  /** Also accept integer/uint8 typed arrays (masks are often bytes). */
  allowIntegerArrays?: boolean;
  /**
   * Refuse non-finite values: 'all' refuses NaN and ±Infinity; 'allowNegativeInfinity' lets −∞
   * through (attnMask, where it means masked).
   */
  finite?: 'all' | 'allowNegativeInfinity';
}

/**
 * True when every element is finite: x · 0 is 0 for finite x and NaN for NaN and ±∞, so one sum
 * says it. Four independent sums, because this runs over every input on every run and a single
 * dependent chain of adds is ~2.5× slower (measured: 0.1 ms vs 0.24 ms per 2^18 floats).
 */
function allFinite(data: Float32Array): boolean {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = data.length;
  const n4 = n & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    s0 += (data[i] as number) * 0;
    s1 += (data[i + 1] as number) * 0;
    s2 += (data[i + 2] as number) * 0;
    s3 += (data[i + 3] as number) * 0;
  }
  for (; i < n; i++) s0 += (data[i] as number) * 0;
  return s0 + s1 + s2 + s3 === 0;
}

/**
 * qkv's NaN policy: NaN and ±Infinity are refused in inputs and weights on every backend, because
 * GPU shaders do not propagate them reliably (GLSL ES leaves NaN undefined) and the promise is the
 * same result on every backend. −∞ in attnMask is the one exception: it means "masked".
 */
export function assertFinite(name: string, data: Float32Array, allowNegativeInfinity = false): void {
  if (allFinite(data)) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    if (v - v === 0) continue; // finite (NaN − NaN and ∞ − ∞ are NaN)
    if (allowNegativeInfinity && v === Number.NEGATIVE_INFINITY) continue;
    throw new QkvError(
      'INVALID_DATA',
      `${name}.data[${i}]: expected a finite number, got ${v}; qkv refuses NaN and ±Infinity on every backend${allowNegativeInfinity ? ' (−Infinity is allowed here and means masked)' : ''}`,
    );
  }
}

/**
 * Validates a tensor-like value and returns a float32 `Tensor`. Float32Array data is used as is
 * (no copy); number arrays and Float64Array are converted. Other typed arrays are refused unless
 * `allowIntegerArrays` is set, because silently reinterpreting ints as weights hides bugs.
 */
export function toTensor(name: string, value: unknown, options: ToTensorOptions = {}): Tensor {
  if (value === null || typeof value !== 'object') {
    throw new QkvError('INVALID_DATA', `${name}: expected a tensor { shape, data }, got ${describeValue(value)}`);
  }
  const { shape: rawShape, data } = value as { shape?: unknown; data?: unknown };
  const shape = checkShape(name, rawShape);
  const n = sizeOf(shape);
  let out: Float32Array;
  if (data instanceof Float32Array) {
    out = data;
  } else if (data instanceof Float64Array || Array.isArray(data)) {
    out = Float32Array.from(data as ArrayLike<number>);
    if (Array.isArray(data)) {
      for (let i = 0; i < data.length; i++) {
        if (typeof data[i] !== 'number') {
          throw new QkvError('INVALID_DATA', `${name}.data[${i}]: expected a number, got ${describeValue(data[i])}`);
        }
      }
    }
  } else if (
    options.allowIntegerArrays &&
    (data instanceof Uint8Array ||
      data instanceof Int32Array ||
      data instanceof Int8Array ||
      data instanceof Uint32Array)
  ) {
    out = Float32Array.from(data);
  } else {
    const accepted = options.allowIntegerArrays
      ? 'Float32Array, Float64Array, Uint8Array, Int32Array or number[]'
      : 'Float32Array, Float64Array or number[]';
    throw new QkvError('INVALID_DATA', `${name}.data: expected ${accepted}, got ${describeValue(data)}`);
  }
  if (out.length !== n) {
    throw new QkvError(
      'INVALID_DATA',
      `${name}.data: shape ${formatShape(shape)} needs ${n} values, got ${out.length}`,
    );
  }
  if (options.finite) assertFinite(name, out, options.finite === 'allowNegativeInfinity');
  return { shape: [...shape], data: out };
}

/** Largest |a-b| over two equally sized arrays (NaN if either holds NaN at the same place). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length)
    throw new QkvError('INVALID_SHAPE', `maxAbsDiff: lengths differ (${a.length} vs ${b.length})`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue; // also equal infinities, whose difference is NaN
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (Number.isNaN(d)) {
      if (Number.isNaN(a[i] as number) && Number.isNaN(b[i] as number)) continue;
      return Number.NaN;
    }
    if (d > m) m = d;
  }
  return m;
}
