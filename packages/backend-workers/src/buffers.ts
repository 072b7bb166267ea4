/**
 * Recycling of tensors' SharedArrayBuffers.
 *
 * Why: a SharedArrayBuffer's memory is freed only when every thread that ever received a view of
 * it has garbage-collected that view. Each lease message gives every worker its own JS objects
 * for the task's buffers; the worker drops them when the lease ends, but a worker allocates
 * almost nothing on the JS heap (the kernels work in WebAssembly memory), so its collector can go
 * many runs without looking at them, and the main thread's `gc()` cannot free a backing store a
 * worker still references. Measured before this existed: L = 8192 fused causal runs grew
 * `process.memoryUsage().arrayBuffers` by ~144 MB per run (every intermediate of the run), and
 * still by ~64 MB per run with a forced main-thread GC after each one.
 *
 * The fix does not depend on any collector: a disposed tensor's buffer goes back to a free list
 * and the next tensor of the same byte size takes it, so repeated runs of one shape allocate no
 * new shared memory at all. Stale worker-side references then point at memory that is in use
 * anyway.
 */
export class BufferRecycler {
  readonly #free = new Map<number, SharedArrayBuffer[]>();
  #freeBytes = 0;
  #liveBytes = 0;
  #peakLiveBytes = 0;
  #allocatedBytes = 0;

  /**
   * A buffer of exactly `bytes` bytes: a recycled one if any, else a new one. Its contents are
   * stale: every user overwrites all of it (uploads copy every element; every kernel writes every
   * element of its output, which the conformance suite checks with `poisonOutputs`).
   */
  take(bytes: number): SharedArrayBuffer {
    this.#liveBytes += bytes;
    if (this.#liveBytes > this.#peakLiveBytes) this.#peakLiveBytes = this.#liveBytes;
    const list = this.#free.get(bytes);
    const buf = list?.pop();
    if (buf === undefined) {
      this.#allocatedBytes += bytes;
      return new SharedArrayBuffer(bytes);
    }
    if (list?.length === 0) this.#free.delete(bytes);
    this.#freeBytes -= bytes;
    return buf;
  }

  /**
   * Gives a buffer back for reuse. Only for buffers no thread can still write: the caller must
   * not return the output of a job that failed (a thread may still be inside one of its blocks).
   * The free list is capped at the peak of bytes live at once: a repeat of the largest run so far
   * finds every buffer it needs, and memory held idle never exceeds what was once in use. Buffers
   * over the cap are left to the collectors.
   */
  give(buf: SharedArrayBuffer): void {
    const bytes = buf.byteLength;
    this.#liveBytes -= bytes;
    if (bytes === 0 || this.#freeBytes + bytes > this.#peakLiveBytes) return;
    let list = this.#free.get(bytes);
    if (!list) {
      list = [];
      this.#free.set(bytes, list);
    }
    list.push(buf);
    this.#freeBytes += bytes;
  }

  /** Forgets a buffer without recycling it (a failed job's output). */
  drop(buf: SharedArrayBuffer): void {
    this.#liveBytes -= buf.byteLength;
  }

  /** Bytes in live tensors, bytes waiting on the free list, bytes of new buffers ever made. */
  bytes(): { live: number; free: number; allocated: number } {
    return { live: this.#liveBytes, free: this.#freeBytes, allocated: this.#allocatedBytes };
  }

  /** Drops the free list (backend destroyed): from here on only the collectors free memory. */
  clear(): void {
    this.#free.clear();
    this.#freeBytes = 0;
  }
}
