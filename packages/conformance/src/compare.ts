export interface Tolerance {
  atol: number;
  rtol: number;
}

export const DEFAULT_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-3 };

export interface Comparison {
  ok: boolean;
  /** Elements outside |a − e| ≤ atol + rtol·|e|. */
  mismatches: number;
  maxAbsError: number;
  /** max over elements of |a − e| / (atol + rtol·|e|): below 1 passes. */
  worstRatio: number;
  message: string;
}

function index(flat: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d] as number;
    idx.unshift(flat % n);
    flat = Math.floor(flat / n);
  }
  return `[${idx.join(', ')}]`;
}

/**
 * Element-wise check with the golden files' rule. Equal infinities match; NaN matches only NaN.
 * The message names the tensor, the first offending indices and the values.
 */
export function compareArrays(
  name: string,
  actual: { shape: readonly number[]; data: ArrayLike<number> },
  expected: { shape: readonly number[]; data: ArrayLike<number> },
  tol: Tolerance = DEFAULT_TOLERANCE,
): Comparison {
  const shapeOk =
    actual.shape.length === expected.shape.length && actual.shape.every((d, i) => d === expected.shape[i]);
  if (!shapeOk || actual.data.length !== expected.data.length) {
    return {
      ok: false,
      mismatches: Number.POSITIVE_INFINITY,
      maxAbsError: Number.POSITIVE_INFINITY,
      worstRatio: Number.POSITIVE_INFINITY,
      message: `${name}: shape [${actual.shape.join(', ')}] (${actual.data.length} values), expected [${expected.shape.join(', ')}] (${expected.data.length})`,
    };
  }
  let mismatches = 0;
  let maxAbs = 0;
  let worst = 0;
  const shown: string[] = [];
  for (let i = 0; i < expected.data.length; i++) {
    const a = actual.data[i] as number;
    const e = expected.data[i] as number;
    if (a === e || (a !== a && e !== e)) continue;
    const err = Math.abs(a - e);
    const allowed = tol.atol + tol.rtol * Math.abs(e);
    const ratio = err !== err ? Number.POSITIVE_INFINITY : err / allowed;
    if (err > maxAbs || err !== err) maxAbs = err !== err ? Number.POSITIVE_INFINITY : err;
    if (ratio > worst) worst = ratio;
    if (!(err <= allowed)) {
      mismatches++;
      if (shown.length < 5)
        shown.push(`${index(i, expected.shape)}: got ${a}, expected ${e} (±${allowed.toExponential(2)})`);
    }
  }
  const ok = mismatches === 0;
  return {
    ok,
    mismatches,
    maxAbsError: maxAbs,
    worstRatio: worst,
    message: ok
      ? `${name}: ok (max |Δ| ${maxAbs.toExponential(2)}, ${(worst * 100).toFixed(1)}% of tolerance)`
      : `${name}: ${mismatches} of ${expected.data.length} values outside atol=${tol.atol} rtol=${tol.rtol}; ${shown.join('; ')}`,
  };
}
