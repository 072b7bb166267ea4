import type { KernelExports as Exports } from './builds.js';

/**
 * Blocks that stay in a module's linear memory between calls: the packed projection weights of a
 * backend (`PreparedWeight`, wasm.ts). Each module instance (one per build per thread) has one
 * region from heapBase up: resident blocks low, first fit, and the per-call scratch that
 * `layout()` hands out from `scratchBase(m)`, just above the highest resident block. Freed blocks
 * are reused by later resident blocks (adjacent ones merge); the memory itself never shrinks
 * (WebAssembly memories cannot), so scratch and residents together stay at the most this thread
 * ever held at once.
 */
interface Region {
  /** Free blocks below `top`, sorted by address, never adjacent to each other. */
  free: { ptr: number; bytes: number }[];
  /** Live resident blocks: ptr → bytes. */
  live: Map<number, number>;
  /** End of the highest resident block: the scratch starts here. */
  top: number;
}

/** One per module instance; instances live as long as their thread (builds.ts). */
const regions = new Map<Exports, Region>();
const align16 = (n: number) => (n + 15) & ~15;

function regionOf(m: Exports): Region {
  let r = regions.get(m);
  if (r === undefined) {
    r = { free: [], live: new Map(), top: align16(m.heapBase()) };
    regions.set(m, r);
  }
  return r;
}

/** Where this module's per-call scratch starts (16-byte aligned). */
export function scratchBase(m: Exports): number {
  return regionOf(m).top;
}

/** Grows the module's memory to at least `end` bytes. */
export function ensureMemory(m: Exports, end: number): void {
  const have = m.memory.buffer.byteLength;
  if (end > have) m.memory.grow(Math.ceil((end - have) / 65536));
}

/** A resident block of `floats` float32s (16-byte aligned, contents undefined); its byte pointer. */
export function allocResident(m: Exports, floats: number): number {
  const r = regionOf(m);
  const bytes = align16(floats * 4);
  const i = r.free.findIndex((f) => f.bytes >= bytes);
  let ptr: number;
  if (i >= 0) {
    const f = r.free[i] as { ptr: number; bytes: number };
    ptr = f.ptr;
    if (f.bytes === bytes) r.free.splice(i, 1);
    else r.free[i] = { ptr: f.ptr + bytes, bytes: f.bytes - bytes };
  } else {
    // No free block ends at the top (freeing the highest block lowers the top instead).
    ptr = r.top;
    r.top += bytes;
    ensureMemory(m, r.top);
  }
  r.live.set(ptr, bytes);
  return ptr;
}

/** Returns a resident block (idempotent); the top comes down when the highest block goes. */
export function freeResident(m: Exports, ptr: number): void {
  const r = regionOf(m);
  const bytes = r.live.get(ptr);
  if (bytes === undefined) return;
  r.live.delete(ptr);
  let block = { ptr, bytes };
  // Insert sorted, merging with the neighbours it touches.
  let at = r.free.findIndex((f) => f.ptr > ptr);
  if (at < 0) at = r.free.length;
  const before = r.free[at - 1];
  if (before !== undefined && before.ptr + before.bytes === block.ptr) {
    block = { ptr: before.ptr, bytes: before.bytes + block.bytes };
    r.free.splice(--at, 1);
  }
  const after = r.free[at];
  if (after !== undefined && block.ptr + block.bytes === after.ptr) {
    block = { ptr: block.ptr, bytes: block.bytes + after.bytes };
    r.free.splice(at, 1);
  }
  if (block.ptr + block.bytes === r.top) r.top = block.ptr;
  else r.free.splice(at, 0, block);
}

/** Bytes of resident blocks live on this thread, all modules together (for leak checks). */
export function residentBytes(): number {
  let total = 0;
  for (const r of regions.values()) for (const b of r.live.values()) total += b;
  return total;
}

/**
 * Bump layout of one call's scratch buffers (`floats` each), 16-byte aligned, from `from`
 * (default: the module's scratch base) up, growing the memory as needed. The views are taken
 * after any growth, so they are valid until the next call that may grow the memory.
 */
export function layout(
  m: Exports,
  floats: readonly number[],
  from = scratchBase(m),
): { f32: Float32Array; ptr: number[]; end: number } {
  const ptr: number[] = [];
  let top = align16(from);
  for (const n of floats) {
    ptr.push(top);
    top += align16(n * 4);
  }
  ensureMemory(m, top);
  return { f32: new Float32Array(m.memory.buffer), ptr, end: top };
}
