import type { KernelExports as Exports } from './builds.js';

/**
 * Reuse of packed operands between calls on this thread. Packing W (linear) or one head's K/V
 * (fusedAttention, with the Q, K and V slabs it copies in) into the module's memory is O(n²) and
 * is the same for every row block of one op, so a caller that runs many blocks of one op (the
 * workers backend, one lease) opens a scope; inside it, a call whose operands are the very arrays
 * of the previous call skips the copy and the pack. The cpu backend opens one per run, where
 * x staged by one projection serves the next ones on the same tensor ('rows', keyed by the
 * backend's tensor object, never reused). Outside a scope nothing is reused, so an array whose
 * contents changed between two ops can never be served stale. The caller promises that the
 * operands' contents do not change within its scope (a job's inputs are immutable while it runs).
 * Every call that writes a module's scratch from its base takes (and so forgets) the record.
 */
let scope = 0;
let scopes = 0;

/** What one call left packed in a module's scratch (at scratch base `base`). */
export type Packing =
  | {
      kind: 'rows';
      m: Exports;
      base: number;
      /** The tensor whose rows [from, to) of width K sit at `base`. */
      key: object;
      from: number;
      to: number;
      K: number;
    }
  | {
      kind: 'linear';
      m: Exports;
      base: number;
      w: Float32Array;
      bias: Float32Array | null;
      K: number;
      N: number;
    }
  | {
      kind: 'attention';
      m: Exports;
      base: number;
      k: Float32Array;
      v: Float32Array;
      q: Float32Array;
      mask: Float32Array | null;
      shape: string;
      /** b · KVH + kvh of the head packed, b of the key bias, of the K/V slabs, of the Q slab (−1: none). */
      kv: number;
      bias: number;
      kvSlab: number;
      qSlab: number;
      vNonFinite: number;
    };
/** What the module's memory holds from the previous call, for reuse inside the same scope. */
let packed: Packing | null = null;
/** The scope `packed` was left in. */
let packedScope = 0;

/**
 * Opens a reuse scope (see `packed`); calls up to `endPackScope()` may reuse packed operands.
 * Its id, for `resumePackScope`.
 */
export function beginPackScope(): number {
  scope = ++scopes;
  return scope;
}

/** Reopens scope `id` (a run's next kernel): what its earlier calls left is reusable again. */
export function resumePackScope(id: number): void {
  scope = id;
}

/** Forgets what the scratch holds (a tensor is about to change in place). */
export function forgetPacked(): void {
  packed = null;
}

/** Closes the scope: later calls pack their operands afresh. */
export function endPackScope(): void {
  scope = 0;
}

/**
 * What an earlier call of the current scope left packed of `kind` in module `m`'s scratch at
 * `base`, or null (always null outside a scope). Taking it forgets it: a call about to overwrite
 * the scratch hands back what it leaves there with `keepPacked` once done, so a throw halfway
 * never leaves a stale claim.
 */
export function takePacked<K extends Packing['kind']>(
  kind: K,
  m: Exports,
  base: number,
): Extract<Packing, { kind: K }> | null {
  const p = packed;
  packed = null;
  if (scope === 0 || p === null || p.kind !== kind || p.m !== m || packedScope !== scope || p.base !== base)
    return null;
  return p as Extract<Packing, { kind: K }>;
}

/** Records what this call left packed, for the next call of the same scope. */
export function keepPacked(p: Packing): void {
  packed = p;
  packedScope = scope;
}
