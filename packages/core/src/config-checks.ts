import { describeValue, QkvError } from './errors.js';

/** The small checks every option validator shares (config, sessions, serving options). */

/** Throws unless every key of `obj` is in `allowed`, naming the offender and the valid ones. */
export function assertKnownKeys(what: string, obj: object, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) {
      throw new QkvError(
        'UNKNOWN_OPTION',
        `${what}: unknown option "${key}"; expected one of ${[...allowed].join(', ')}`,
      );
    }
  }
}

export function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new QkvError('INVALID_CONFIG', `${name}: expected a positive integer, got ${describeValue(v)}`);
  }
  return v;
}

export function optionalBool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') {
    throw new QkvError('INVALID_CONFIG', `${name}: expected true or false, got ${describeValue(v)}`);
  }
  return v;
}
