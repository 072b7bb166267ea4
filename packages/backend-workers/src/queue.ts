import { cpuKernels } from '@qkv/backend-cpu';
import { QkvError, sizeOf } from '@qkv/core';
import { BufferRecycler } from './buffers.js';
import { dispatchWork, type Enqueue, rowsOfTask, runSlice, type SliceTask } from './ops.js';
import type { StepSpec, WorkerPool } from './pool.js';
import { dropPrepared } from './prepared.js';
import { d, WorkersTensor } from './tensor.js';

/**
 * Ops queued for one run (or for direct kernel calls outside a run), submitted to the pool as
 * one job. Each step lists the earlier steps it reads from; the threads walk the steps without
 * returning to the main thread in between, so a run pays one round of messages, not one per op.
 */
export class OpQueue {
  readonly steps: StepSpec[] = [];
  state: 'open' | 'running' | 'done' | 'failed' = 'open';
  error: unknown = null;
  /** Queues whose results this one reads (or whose reads it must not overwrite): it starts after them. */
  readonly after = new Set<OpQueue>();
  /** Tensors its steps read or write. */
  readonly tensors = new Set<WorkersTensor>();
  /**
   * Buffers of tensors disposed while the queue was open, with the steps that used them: a later
   * step of the same queue may write its output there once those steps are done.
   */
  readonly free: { readonly buf: SharedArrayBuffer; readonly after: readonly number[] }[] = [];
  /** Work units of all steps (`dispatchWork`): the inline threshold applies to the whole queue. */
  work = 0;
  /** Settles when the queue has run (or failed); set on submit. */
  done: Promise<void> | null = null;
  constructor(readonly key: object) {}
}

/**
 * The workers backend's memory and queues. Kernels do not run when called: they queue a step and
 * return the output tensor at once. The executor names each run's queue (`scope`, set through
 * `Backend.useQueue`), so one run's ops form one queue, submitted to the pool as one job when its
 * first result is downloaded (or at the next macrotask, whichever comes first); the threads then
 * go from op to op by themselves, each op waiting in shared memory only for the ops it reads. A
 * queue whose total work is under the inline threshold runs on the calling thread instead.
 * Buffers of tensors disposed while their queue is still open are reused by the queue's later ops
 * (after the ops that used them), so a run holds no more memory than it did op by op.
 */
/** Weight ids (`WorkersTensor.weightId`): process-wide, never reused, so a packing is never mistaken. */
let nextWeightId = 1;

export class Scheduler {
  readonly live = new Set<WorkersTensor>();
  readonly buffers = new BufferRecycler();
  /** The queue the next kernel calls go to: a run's token, or null for calls outside runs. */
  scope: object | null = null;
  /** Testing aid (`WorkersBackend.poisonOutputs`): fill fresh output buffers with NaN. */
  poison = false;
  /** Set first thing in the backend's destroy(): no new work, nothing recycled. */
  dead = false;
  inlineOps = 0;
  dispatchedOps = 0;
  dispatchedQueues = 0;
  readonly #pool: WorkerPool;
  readonly #inlineThreshold: number;
  /** Open queues by key: a run's token from `useQueue`, or `#directKey` for calls outside runs. */
  readonly #open = new Map<object, OpQueue>();
  readonly #directKey = {};
  #flushScheduled = false;
  /** Where KV caches live for split-KV decoding (decode.ts): created with the first cache. */
  #arena: cpuKernels.DecodeArena | string | null = null;

  constructor(pool: WorkerPool, inlineThreshold: number) {
    this.#pool = pool;
    this.#inlineThreshold = inlineThreshold;
  }

  /** What the op records queue through (`OpRecord.kernel`). */
  readonly enqueueOp: Enqueue = (shape, inputs, build, inPlace = null) => this.enqueue(shape, inputs, build, inPlace);

  assertUsable(): void {
    if (this.dead) throw new QkvError('DISPOSED', 'workers backend: used after destroy()');
  }

  /**
   * A weight tensor (what `upload` makes): `make`, plus an id under which threads may keep it
   * packed for `linear` (prepared.ts).
   */
  makeWeight(shape: readonly number[]): WorkersTensor {
    const t = this.make(shape);
    t.weightId = nextWeightId++;
    return t;
  }

  /** A new tensor on a recycled or new buffer, for data written right now on this thread. */
  make(shape: readonly number[]): WorkersTensor {
    this.assertUsable();
    const t = new WorkersTensor(shape, this.buffers.take(sizeOf(shape) * Float32Array.BYTES_PER_ELEMENT));
    this.live.add(t);
    return t;
  }

  /**
   * A KV cache holding `data` (zeros when absent) in the decode arena: shared WebAssembly memory
   * that every thread instantiates the decode kernel over, so a decode step's keys split across
   * threads and are read in place. Without the arena (no WebAssembly SIMD here), a shared buffer.
   */
  allocateCache(shape: readonly number[], data?: Float32Array): WorkersTensor {
    this.assertUsable();
    this.#arena ??= cpuKernels.createArena();
    let t: WorkersTensor;
    if (typeof this.#arena === 'string') {
      t = this.make([...shape]);
      t.data.fill(0);
    } else {
      const n = sizeOf(shape);
      const ptr = this.#arena.alloc(n * 4);
      const { memory, id } = this.#arena;
      t = new WorkersTensor([...shape], this.#arena.f32(ptr, n), { memory, id, ptr });
      this.live.add(t);
    }
    if (data) t.data.set(data);
    return t;
  }

  dispose(t: WorkersTensor): void {
    t.disposed = true;
    // Only a tensor this instance still owns goes back, and only once (disposing twice must not
    // hand one buffer to two later tensors).
    if (!this.live.delete(t)) return;
    // Used only by its own still-open queue: later steps of that queue may take the buffer. Not a
    // packed weight: its packings are dropped in #release, once that queue is done with it.
    if (t.uses.size === 1 && t.error === null && t.arena === null && !t.packed) {
      const [queue, steps] = t.uses.entries().next().value as [OpQueue, number[]];
      if (queue.state === 'open') {
        queue.free.push({ buf: t.data.buffer as SharedArrayBuffer, after: steps });
        t.released = true;
        return;
      }
    }
    this.#release(t);
  }

  /**
   * Gives a disposed tensor's buffer back once no queue that uses it is pending. The output of a
   * failed queue is dropped instead: a thread can still be inside one of its blocks, writing.
   */
  #release(t: WorkersTensor): void {
    if (!t.disposed || t.released || t.uses.size > 0 || this.live.has(t)) return;
    t.released = true;
    if (t.packed) this.#dropPacked([t.weightId]);
    if (t.arena !== null) {
      if (typeof this.#arena === 'object' && this.#arena !== null && !this.dead) this.#arena.free(t.arena.ptr);
      return;
    }
    const buf = t.data.buffer as SharedArrayBuffer;
    if (t.error !== null || this.dead) this.buffers.drop(buf);
    else this.buffers.give(buf);
  }

  /** Frees the packings of these weight tensors here (inline runs) and on every thread. */
  #dropPacked(ids: number[]): void {
    dropPrepared(ids);
    this.#pool.dropPrepared(ids);
  }

  #openQueue(): OpQueue {
    const key = this.scope ?? this.#directKey;
    let queue = this.#open.get(key);
    if (!queue) {
      queue = new OpQueue(key);
      this.#open.set(key, queue);
      // Nothing may stay queued forever (a run that failed before its download, direct kernel
      // calls whose outputs are only disposed): submit whatever is still open at the next
      // macrotask. A run downloads, and so submits, long before.
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setTimeout(() => {
          this.#flushScheduled = false;
          if (!this.dead) this.flush();
        }, 0);
      }
    }
    return queue;
  }

  /**
   * Queues one op and returns its output at once. `inputs` are the tensors it reads; `inPlace`
   * a tensor it writes instead of a new output (the KV cache). The step waits for the steps of
   * its queue that write what it reads (and, writing in place, for every step that uses the
   * target); where another queue still has to write (or read) them, this queue starts after that
   * one, which is submitted now so that open queues never wait for each other.
   */
  enqueue(
    shape: readonly number[] | null,
    inputs: readonly (WorkersTensor | null)[],
    build: (out: Float32Array) => SliceTask,
    inPlace: WorkersTensor | null = null,
  ): WorkersTensor {
    const [out] = this.enqueueOutputs(
      shape === null ? [] : [shape],
      inputs,
      ([o]) => build(o as Float32Array),
      inPlace,
    );
    return out as WorkersTensor;
  }

  /** As `enqueue`, for a step that writes several new tensors (fused attention with its lse). */
  enqueueOutputs(
    shapes: readonly (readonly number[])[],
    inputs: readonly (WorkersTensor | null)[],
    build: (outs: Float32Array[]) => SliceTask,
    inPlace: WorkersTensor | null = null,
  ): WorkersTensor[] {
    this.assertUsable();
    const queue = this.#openQueue();
    const deps = new Set<number>();
    for (const t of inputs) if (t !== null) this.#order(queue, deps, t, false);
    let outs: WorkersTensor[];
    if (inPlace !== null) {
      this.#order(queue, deps, inPlace, true);
      outs = [inPlace];
    } else {
      outs = shapes.map((shape) => this.#output(queue, shape, deps));
    }
    // Inputs were checked above (`#order`), so building the descriptor cannot throw.
    const task = build(outs.map((o) => o.data));
    const step = queue.steps.length;
    queue.steps.push({ task, deps: [...deps].sort((x, y) => x - y) });
    queue.work += dispatchWork(task);
    for (const t of [...inputs, ...outs]) if (t !== null) this.#use(queue, t, step);
    for (const out of outs) out.writer = { queue, step };
    return outs;
  }

  /**
   * Adds to `deps` the steps of `queue` that must be done before a step that reads (or, `writes`,
   * overwrites) `t`; a pending other queue that writes it (or, `writes`, uses it at all) is
   * submitted and this queue starts after it.
   */
  #order(queue: OpQueue, deps: Set<number>, t: WorkersTensor, writes: boolean): void {
    d(t);
    if (t.error !== null) throw t.error;
    for (const [other, steps] of t.uses) {
      if (!writes && t.writer?.queue !== other) continue;
      if (other === queue) {
        if (writes) for (const s of steps) deps.add(s);
        else deps.add((t.writer as { step: number }).step);
      } else {
        this.submit(other);
        queue.after.add(other);
      }
    }
  }

  /**
   * A new tensor for the output of the step about to be queued on `queue`: on the buffer of a
   * tensor the queue is done with when one of the size is free (the step then also waits for
   * every step that used it), else on a recycled or new buffer.
   */
  #output(queue: OpQueue, shape: readonly number[], deps: Set<number>): WorkersTensor {
    const bytes = sizeOf(shape) * Float32Array.BYTES_PER_ELEMENT;
    const i = queue.free.findIndex((f) => f.buf.byteLength === bytes);
    let buf: SharedArrayBuffer;
    if (i >= 0) {
      const [f] = queue.free.splice(i, 1) as [{ buf: SharedArrayBuffer; after: readonly number[] }];
      buf = f.buf;
      for (const s of f.after) deps.add(s);
    } else {
      buf = this.buffers.take(bytes);
      if (this.poison) new Float32Array(buf).fill(Number.NaN);
    }
    const out = new WorkersTensor(shape, buf);
    this.live.add(out);
    return out;
  }

  /** Records that step `step` of `queue` (its newest) reads or writes `t`. */
  #use(queue: OpQueue, t: WorkersTensor, step: number): void {
    queue.tensors.add(t);
    const steps = t.uses.get(queue);
    if (!steps) t.uses.set(queue, [step]);
    else if (steps.at(-1) !== step) steps.push(step);
  }

  /**
   * Runs a queue: on the calling thread when its total work is under the threshold, else as one
   * job on the pool; first waits for the queues it reads from.
   */
  submit(queue: OpQueue): void {
    if (queue.state !== 'open') return;
    queue.state = 'running';
    this.#open.delete(queue.key);
    const start = (): void | Promise<void> => {
      for (const a of queue.after) if (a.state === 'failed') throw a.error;
      if (this.dead) throw new QkvError('DISPOSED', 'workers backend: destroyed before this run could start');
      if (queue.work < this.#inlineThreshold) {
        this.inlineOps += queue.steps.length;
        for (const { task } of queue.steps) runSlice(task, 0, rowsOfTask(task));
        return;
      }
      this.dispatchedOps += queue.steps.length;
      this.dispatchedQueues++;
      return this.#pool.run(queue.steps);
    };
    const waits = [...queue.after].filter((a) => a.state === 'running').map((a) => a.done);
    let run: Promise<void>;
    try {
      run = waits.length > 0 ? Promise.all(waits).then(start) : Promise.resolve(start());
    } catch (e) {
      run = Promise.reject(e);
    }
    queue.done = run.then(
      () => this.#settle(queue, null),
      (e: unknown) => {
        this.#settle(queue, e ?? new Error('workers backend: queue failed'));
        throw e;
      },
    );
    // Observed through download(); a queue nobody downloads must not count as unhandled.
    queue.done.catch(() => {});
  }

  /** Marks a queue done or failed and releases what only it still used. */
  #settle(queue: OpQueue, error: unknown): void {
    queue.state = error === null ? 'done' : 'failed';
    queue.error = error;
    for (const t of queue.tensors) {
      t.uses.delete(queue);
      if (t.writer?.queue === queue) {
        const inPlace = queue.steps[t.writer.step]?.task.op === 'writeRows';
        t.writer = null;
        // A failed queue's outputs are garbage, except a tensor written in place (a KV cache):
        // a failed session step does not extend the cache, and the next step overwrites the rows.
        if (error !== null && !inPlace) t.error = error;
      }
      this.#release(t);
    }
    for (const f of queue.free.splice(0)) {
      if (error === null && !this.dead) this.buffers.give(f.buf);
      else this.buffers.drop(f.buf);
    }
  }

  /** Submits every open queue now (they are submitted by themselves on download or at the next macrotask). */
  flush(): void {
    for (const queue of [...this.#open.values()]) this.submit(queue);
  }

  /** Abandons the queued work (its queues reject with DISPOSED) and drops every buffer. */
  destroy(): void {
    this.dead = true;
    for (const queue of [...this.#open.values()]) this.submit(queue);
    const packed: number[] = [];
    const pending = new Set<Promise<void>>();
    for (const t of this.live) {
      t.disposed = true;
      t.released = true;
      if (t.arena === null) this.buffers.drop(t.data.buffer as SharedArrayBuffer);
      if (!t.packed) continue;
      packed.push(t.weightId);
      for (const q of t.uses.keys()) if (q.done) pending.add(q.done);
    }
    this.#dropPacked(packed);
    // A queue still running may pack one of them after this drop: drop again once it has ended.
    if (pending.size > 0) void Promise.allSettled(pending).then(() => this.#dropPacked(packed));
    this.live.clear();
    this.buffers.clear();
    if (typeof this.#arena === 'object' && this.#arena !== null) cpuKernels.releaseDecodeKernel(this.#arena.id);
  }
}
