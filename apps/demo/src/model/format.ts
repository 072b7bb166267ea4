/** Number and time formatting shared by the tooltips, tables and legends. */

/** A matrix value as a learner reads it: −∞ for masked cells, 3 decimals, exponent when tiny/huge. */
export function formatNumber(v: number, digits = 3): string {
  if (v === Number.NEGATIVE_INFINITY) return '−∞';
  if (v === Number.POSITIVE_INFINITY) return '+∞';
  if (Number.isNaN(v)) return 'NaN';
  if (v === 0) return '0';
  const a = Math.abs(v);
  const text = a < 10 ** -digits || a >= 1e5 ? v.toExponential(Math.max(1, digits - 1)) : v.toFixed(digits);
  // A typographic minus reads better next to "−∞" and lines up in tables.
  return text.replace('-', '−');
}

/** Milliseconds with a precision that matches their size. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 10_000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A max |Δ| against the CPU result: exact zero is worth saying so. */
export function formatDiff(d: number): string {
  if (Number.isNaN(d)) return 'NaN (mismatch)';
  if (d === 0) return '0 (identical)';
  return d.toExponential(1).replace('-', '−');
}

/** A tensor shape with its dimension names: [L=9, dModel=64]. */
export function formatShape(shape: readonly number[], dims?: readonly string[]): string {
  return `[${shape.map((d, i) => (dims?.[i] ? `${dims[i]}=${d}` : String(d))).join(', ')}]`;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
