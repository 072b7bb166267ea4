// Which attrs the fast kernels implement: anything else sends a call to the reference kernel.

/** The fused attrs the SIMD kernels implement (the decode kernel too); anything else → reference. */
export const FUSED_KEYS: ReadonlySet<string> = new Set([
  'batch',
  'numHeads',
  'numKVHeads',
  'queryLength',
  'keyLength',
  'headDim',
  'keyCapacity',
  'scale',
  'causal',
  'queryOffset',
]);

/**
 * True when attrs carry nothing the fast kernels do not implement. Any other defined key (a
 * sliding window, ALiBi slopes, score/mask mods, whatever comes next) sends the call to the
 * reference kernel, so features added there are never silently ignored here.
 */
export function onlyKnown(attrs: object, known: ReadonlySet<string>): boolean {
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && !known.has(key)) return false;
  return true;
}
