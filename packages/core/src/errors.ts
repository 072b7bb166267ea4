/**
 * Every error qkv throws on purpose is a `QkvError` with a stable `code`, so callers can branch
 * on the kind of failure without parsing messages. Messages name the argument, what was expected
 * and what came.
 */
export type QkvErrorCode =
  | 'INVALID_CONFIG'
  | 'INVALID_OPTION'
  | 'UNKNOWN_OPTION'
  | 'INVALID_SHAPE'
  | 'INVALID_DATA'
  | 'INVALID_CAPTURE'
  | 'BACKEND_UNKNOWN'
  | 'BACKEND_UNAVAILABLE'
  | 'BACKEND_FAILED'
  | 'CAPABILITY'
  | 'LIMIT_EXCEEDED'
  | 'DISPOSED'
  | 'WORKER_FAILED'
  | 'CONTEXT_LOST'
  | 'SESSION_FULL'
  /** A safetensors file or a checkpoint mapping is malformed or does not fit the config. */
  | 'INVALID_CHECKPOINT'
  /** Finite inputs whose projections, scores or sums would overflow float32. */
  | 'NUMERIC_OVERFLOW';

export class QkvError extends Error {
  readonly code: QkvErrorCode;
  constructor(code: QkvErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QkvError';
    this.code = code;
  }
}

export function isQkvError(e: unknown, code?: QkvErrorCode): e is QkvError {
  return e instanceof QkvError && (code === undefined || e.code === code);
}

/** Formats any value for an error message without dumping huge arrays. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as { length?: number }).length ?? '?'})`;
  if (typeof v === 'function') return 'a function';
  return typeof v === 'object' ? `an object with keys [${Object.keys(v).join(', ')}]` : typeof v;
}
