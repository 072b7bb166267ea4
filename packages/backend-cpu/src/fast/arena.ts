import { DECODE_WASM_BASE64 } from './decode-bytes.generated.js';

/**
 * A shared WebAssembly memory that holds KV caches where the decode kernel (assembly/decode.ts)
 * reads them: a cache tensor's Float32Array is a view of this memory, written in place by
 * writeRows and read in place by the kernel, so a decode step copies nothing of the cache.
 *
 * Shared, because (1) worker threads instantiate the decode module over the same memory and
 * split a step's keys between them, and (2) growing a shared memory never detaches the views
 * handed out before (a non-shared one would). Where shared memory is unavailable (a browser page
 * without cross-origin isolation) `createArena` answers why, and caches are plain arrays.
 *
 * Allocation: a bump pointer in the memory itself (an Int32 at the header, `Atomics.add`, so any
 * thread can take its scratch), plus a first-fit free list of released caches, used only by the
 * thread that owns the arena (caches are allocated and freed there).
 */
export class DecodeArena {
  readonly memory: WebAssembly.Memory;
  /** Names this arena to worker threads (they keep one instance per arena). */
  readonly id: number;
  readonly #free: { ptr: number; bytes: number }[] = [];
  readonly #sizes = new Map<number, number>();

  constructor(memory: WebAssembly.Memory, id: number) {
    this.memory = memory;
    this.id = id;
  }

  /** A zero-filled block of `bytes`, 64-byte aligned (a cache line). */
  alloc(bytes: number): number {
    const size = align(bytes, 64);
    const i = this.#free.findIndex((f) => f.bytes >= size);
    let ptr: number;
    if (i >= 0) {
      const f = this.#free[i] as { ptr: number; bytes: number };
      ptr = f.ptr;
      if (f.bytes === size) this.#free.splice(i, 1);
      else this.#free[i] = { ptr: f.ptr + size, bytes: f.bytes - size };
      new Uint8Array(this.memory.buffer, ptr, size).fill(0);
    } else {
      ptr = bump(this.memory, size); // fresh memory is zero
    }
    this.#sizes.set(ptr, size);
    return ptr;
  }

  free(ptr: number): void {
    const bytes = this.#sizes.get(ptr);
    if (bytes === undefined) return;
    this.#sizes.delete(ptr);
    this.#free.push({ ptr, bytes });
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;
let module: WebAssembly.Module | { error: string } | undefined;
let arenas = 0;

function decodeModule(): WebAssembly.Module | { error: string } {
  if (module === undefined) {
    try {
      const bin = atob(DECODE_WASM_BASE64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      module = new WebAssembly.Module(bytes as BufferSource);
    } catch (e) {
      module = { error: `the decode kernel needs WebAssembly SIMD: ${(e as Error).message}` };
    }
  }
  return module;
}

interface DecodeExports {
  heapBase(): number;
  streamSum(p: number, bytes: number): number;
  decode(
    q: number,
    nq: number,
    heads: number,
    hd: number,
    k: number,
    v: number,
    stride: number,
    n: number,
    count: number,
    s: number,
    o: number,
    m: number,
    l: number,
  ): void;
}

/** Per thread: the decode module instantiated over each arena it has seen, and its scratch there. */
const perArena = new Map<number, { kernel: DecodeExports; scratch: number; scratchBytes: number }>();

function header(memory: WebAssembly.Memory, kernel: DecodeExports): Int32Array {
  return new Int32Array(memory.buffer, align(kernel.heapBase(), 16), 1);
}

/** Takes `bytes` from the arena's bump pointer (any thread), growing the memory as needed. */
function bump(memory: WebAssembly.Memory, bytes: number): number {
  const { kernel } = instanceFor(memory, -1);
  const ptr = Atomics.add(header(memory, kernel), 0, bytes);
  const end = ptr + bytes;
  const have = memory.buffer.byteLength;
  if (end > have) memory.grow(Math.ceil((end - have) / 65536));
  return ptr;
}

function instanceFor(memory: WebAssembly.Memory, id: number): { kernel: DecodeExports } {
  const known = id >= 0 ? perArena.get(id) : undefined;
  if (known) return known;
  const mod = decodeModule();
  if ('error' in mod) throw new Error(mod.error);
  const kernel = new WebAssembly.Instance(mod, { env: { memory, abort: () => {} } })
    .exports as unknown as DecodeExports;
  if (id >= 0) perArena.set(id, { kernel, scratch: 0, scratchBytes: 0 });
  return { kernel };
}

/** The decode kernel over `memory` on this thread, with a scratch block of at least `bytes`. */
export function decodeKernel(
  memory: WebAssembly.Memory,
  id: number,
  bytes: number,
): { kernel: DecodeExports; scratch: number } {
  instanceFor(memory, id);
  const entry = perArena.get(id) as { kernel: DecodeExports; scratch: number; scratchBytes: number };
  if (entry.scratchBytes < bytes) {
    // Scratch only grows (to the largest step this thread has run); the old block stays unused.
    entry.scratch = bump(memory, align(bytes, 64));
    entry.scratchBytes = align(bytes, 64);
  }
  return entry;
}

/** Forgets this thread's instance of an arena (the arena is gone). */
export function releaseDecodeKernel(id: number): void {
  perArena.delete(id);
}

/** A new arena, or why there can be none here (no shared WebAssembly memory, no SIMD). */
export function createArena(): DecodeArena | string {
  const mod = decodeModule();
  if ('error' in mod) return mod.error;
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  } catch (e) {
    return `shared WebAssembly memory is unavailable here (${(e as Error).message}); browsers need cross-origin isolation`;
  }
  const id = ++arenas;
  const { kernel } = instanceFor(memory, id);
  // The bump pointer starts after the module's statics and the header itself.
  Atomics.store(header(memory, kernel), 0, align(kernel.heapBase(), 16) + 64);
  return new DecodeArena(memory, id);
}
