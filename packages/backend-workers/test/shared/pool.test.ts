import { CpuBackend, type CpuTensor, cpuBackend } from '@qkv/backend-cpu';
import {
  type Attention,
  type AttentionConfig,
  type AttentionResult,
  BackendRegistry,
  createAttention,
  type FusedAttentionAttrs,
  isQkvError,
  type QkvError,
} from '@qkv/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { planBlocks, type WorkersBackend, type WorkersTensor, workersBackend } from '../../dist/index.js';
import { capturingRegistry, expectSameData, inputsFor, random, randomTensor, weightsFor } from './helpers.js';

const handles: Attention[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.dispose()));
  vi.unstubAllGlobals();
});

async function pair(
  registry: BackendRegistry,
  config: AttentionConfig,
  seed: number,
  backendOptions: Record<string, unknown> = { threads: 2, inlineThreshold: 0 },
): Promise<{ workers: Attention; cpu: Attention }> {
  const weights = weightsFor(config, seed);
  const workers = await createAttention(config, weights, { registry, backend: 'workers', backendOptions });
  const cpu = await createAttention(config, weights, { registry, backend: 'cpu' });
  handles.push(workers, cpu);
  return { workers, cpu };
}

/**
 * A workers handle on 2 threads with every op on the pool, the cpu handle for the same weights,
 * and the workers backend instance behind the first (for its stats and fault injection).
 */
async function pooledPair(
  config: AttentionConfig,
  seed: number,
): Promise<{ attn: Attention; cpu: Attention; b: WorkersBackend }> {
  const { registry, created } = capturingRegistry();
  const weights = weightsFor(config, seed);
  const attn = await createAttention(config, weights, {
    registry,
    backend: 'workers',
    backendOptions: { threads: 2, inlineThreshold: 0 },
  });
  const cpu = await createAttention(config, weights, { registry, backend: 'cpu' });
  handles.push(attn, cpu);
  return { attn, cpu, b: created[0] as WorkersBackend };
}

/** One head, two query rows over two keys (q, k, v [1, 2, 4]): a fused op of two blocks on 2 threads. */
const twoRows: FusedAttentionAttrs = {
  batch: 1,
  numHeads: 1,
  numKVHeads: 1,
  queryLength: 2,
  keyLength: 2,
  headDim: 4,
  scale: 0.5,
  causal: false,
};

describe('work split', () => {
  it('gives every thread rows even for one head and a short sequence', () => {
    // B = 1, H = 1, Lq = 2: two rows, two threads → two blocks.
    expect(planBlocks(2, 10, 2)).toEqual({ blockRows: 1, blocks: 2 });
    // Never more blocks than rows, never an empty block.
    expect(planBlocks(1, 10 ** 9, 8)).toEqual({ blockRows: 1, blocks: 1 });
    const p = planBlocks(4096, 2 ** 14, 2);
    expect(p.blocks * p.blockRows).toBeGreaterThanOrEqual(4096);
    expect((p.blocks - 1) * p.blockRows).toBeLessThan(4096);
    expect(p.blocks).toBeGreaterThanOrEqual(2 * 8);
  });

  it('hands a one-head, two-row op to both threads', async () => {
    const b = (await workersBackend.create({ threads: 2, inlineThreshold: 0 })) as WorkersBackend;
    try {
      // q, k, v [1, 2, 4]: B = 1, Lq = Lk = 2, H = KVH = 1, hd = 4.
      const next = random(7);
      const q = b.upload(randomTensor([1, 2, 4], next));
      const k = b.upload(randomTensor([1, 2, 4], next));
      const v = b.upload(randomTensor([1, 2, 4], next));
      const attrs = twoRows;
      // The precondition, made explicit rather than hoped for: both threads idle when the op
      // arrives (a thread still finishing or reporting an earlier lease gets no lease on it).
      await vi.waitFor(() => expect(b.stats().idleThreads).toBe(2), { timeout: 30_000, interval: 5 });
      const before = b.stats().leases;
      // The op is queued; flush() submits it synchronously, and the pool decides all leases of
      // that submission before posting any: two idle threads and a split into two blocks lease
      // both at once (one block would lease one: a job gets no more leases than it has unclaimed
      // blocks). Which thread then claims which block is the claim counters' business.
      const pending = b.fused.fusedAttention(q, k, v, null, null, attrs);
      expect(b.stats().leases - before, 'nothing runs before the queue is submitted').toBe(0);
      b.flush();
      const leasedAtSubmit = b.stats().leases - before;
      const idleAtSubmit = b.stats().idleThreads;
      const out = await pending;
      expect(leasedAtSubmit).toBe(2);
      expect(idleAtSubmit).toBe(0);
      expect(b.stats().leases - before).toBe(2);
      const cpu = new CpuBackend();
      const ref = await cpu.fused.fusedAttention(
        cpu.upload(await b.download(q)),
        cpu.upload(await b.download(k)),
        cpu.upload(await b.download(v)),
        null,
        null,
        attrs,
      );
      expectSameData('heads', await b.download(out), await cpu.download(ref));
    } finally {
      await b.destroy();
    }
  });

  it('leases every thread for a job submitted as the last one settles, before its last done is back', async () => {
    const b = (await workersBackend.create({ threads: 2, inlineThreshold: 0 })) as WorkersBackend;
    try {
      // Two query rows: two blocks, one per thread, which finish at about the same time, so the
      // 'done' that completes a job often arrives while the other thread's is still on its way.
      const next = random(11);
      const [q, k, v] = [0, 1, 2].map(() => b.upload(randomTensor([1, 2, 4], next))) as [
        WorkersTensor,
        WorkersTensor,
        WorkersTensor,
      ];
      const attrs = twoRows;
      await vi.waitFor(() => expect(b.stats().idleThreads).toBe(2), { timeout: 30_000, interval: 5 });
      const before = b.stats().leases;
      const runs = 30;
      // Back to back, as a session's decode steps: each submitted from the microtasks of the
      // previous one's completion. A thread whose jobs are all settled takes the next lease
      // (its 'done' may still be in flight); waiting for that 'done' left it out of the job.
      for (let i = 0; i < runs; i++) {
        const out = await b.fused.fusedAttention(q, k, v, null, null, attrs);
        await b.ready(out);
        b.dispose(out);
      }
      expect(b.stats().leases - before).toBe(2 * runs);
    } finally {
      await b.destroy();
    }
  });

  it('runs ops under the threshold on the calling thread and larger ones on the pool', async () => {
    const { registry, created } = capturingRegistry();
    const config = { dModel: 64, numHeads: 4 };
    const weights = weightsFor(config, 1);
    const attn = await createAttention(config, weights, {
      registry,
      backend: 'workers',
      backendOptions: { threads: 2 },
    });
    handles.push(attn);
    const b = created[0] as WorkersBackend;
    await attn.run(inputsFor(1, 2, 64, 2));
    expect(b.stats()).toMatchObject({ dispatchedOps: 0 });
    expect(b.stats().inlineOps).toBeGreaterThan(0);
    await attn.run(inputsFor(1, 256, 64, 3));
    expect(b.stats().dispatchedOps).toBeGreaterThan(0);
  });
});

describe('queues', () => {
  it('runs a whole attention layer as one job: one lease per thread, not one per op', async () => {
    const { attn, cpu, b } = await pooledPair({ dModel: 32, numHeads: 4 }, 41);
    const inputs = inputsFor(2, 64, 32, 42);
    for (let i = 0; i < 3; i++) {
      await vi.waitFor(() => expect(b.stats().idleThreads).toBe(2), { timeout: 30_000, interval: 5 });
      const before = b.stats();
      const [got, want] = await Promise.all([attn.run(inputs), cpu.run(inputs)]);
      expectSameData('residual', got.residual, want.residual);
      const after = b.stats();
      // q, k, v, fused attention, output projection, residual add: six ops, one job.
      expect(after.dispatchedOps - before.dispatchedOps).toBe(6);
      expect(after.dispatchedQueues - before.dispatchedQueues).toBe(1);
      expect(after.jobs - before.jobs).toBe(1);
      // A lone job keeps its threads to the end: at most one lease per thread.
      expect(after.leases - before.leases).toBeGreaterThanOrEqual(1);
      expect(after.leases - before.leases).toBeLessThanOrEqual(2);
    }
  });

  it('orders ops across queues and around an in-place write by what they read and write', async () => {
    const b = (await workersBackend.create({ threads: 2, inlineThreshold: 0 })) as WorkersBackend;
    const cpu = new CpuBackend();
    try {
      const next = random(51);
      const n = 96;
      const xHost = randomTensor([n, n], next);
      const wHost = randomTensor([n, n], next);
      const rowsHost = randomTensor([1, 8, n], next);
      const attrs = { rows: n, inFeatures: n, outFeatures: n };
      const x = b.upload(xHost);
      const w = b.upload(wHost);
      const rows = b.upload(rowsHost);
      // Queue 1 (direct calls): y = x·w, submitted at once.
      const y = b.kernels.linear(x, w, null, attrs) as WorkersTensor;
      b.flush();
      // Queue 2 reads y (still being computed by queue 1: queue 2 must start after it), reads
      // x, then overwrites rows 16…23 of x in place, then reads x again: the write must wait for
      // the first read and the second read for the write.
      const token = {};
      b.useQueue(token);
      const z = b.kernels.linear(y, w, null, attrs) as WorkersTensor;
      const before = b.kernels.linear(x, w, null, attrs) as WorkersTensor;
      const written = b.kernels.writeRows?.(x, rows, { batch: 1, rows: 8, capacity: n, offset: 16, width: n });
      expect(written).toBe(x);
      const afterWrite = b.kernels.linear(x, w, null, attrs) as WorkersTensor;
      b.useQueue(null);

      const cx = cpu.upload(xHost);
      const cw = cpu.upload(wHost);
      const cy = cpu.kernels.linear(cx, cw, null, attrs) as CpuTensor;
      const cz = cpu.kernels.linear(cy, cw, null, attrs) as CpuTensor;
      const cBefore = cpu.kernels.linear(cx, cw, null, attrs) as CpuTensor;
      cpu.kernels.writeRows?.(cx, cpu.upload(rowsHost), { batch: 1, rows: 8, capacity: n, offset: 16, width: n });
      const cAfter = cpu.kernels.linear(cx, cw, null, attrs) as CpuTensor;
      // ready() submits the open queue and resolves once it has run; nothing is pending after.
      await b.ready(afterWrite);
      expect(b.stats().jobs).toBeGreaterThanOrEqual(2);
      expectSameData('z', await b.download(z), await cpu.download(cz));
      expectSameData('x·w before the write', await b.download(before), await cpu.download(cBefore));
      expectSameData('x·w after the write', await b.download(afterWrite), await cpu.download(cAfter));
      expectSameData('x', await b.download(x), await cpu.download(cx));
    } finally {
      await b.destroy();
    }
  });

  it('refuses a cache write past capacity when it is queued, naming the rows', async () => {
    const b = (await workersBackend.create({ threads: 2 })) as WorkersBackend;
    try {
      const cache = b.upload({ shape: [1, 4, 2], data: new Float32Array(8) });
      const rows = b.upload({ shape: [1, 2, 2], data: new Float32Array(4) });
      expect(() => b.kernels.writeRows?.(cache, rows, { batch: 1, rows: 2, capacity: 4, offset: 3, width: 2 })).toThrow(
        /writeRows: rows 3 … 4 do not fit a cache of 4/,
      );
    } finally {
      await b.destroy();
    }
  });
});

describe('concurrency', () => {
  it('completes 50 concurrent runs of mixed shapes on several handles, matching cpu exactly', async () => {
    const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
    const a = await pair(registry, { dModel: 32, numHeads: 4, causal: true }, 11);
    const b = await pair(registry, { dModel: 24, numHeads: 2, bias: false }, 12);
    // A handle with default options: small ops inline, big ones on its own pool size.
    const c = await pair(registry, { dModel: 16, numHeads: 1 }, 13, {});
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      const h = [a, b, c][i % 3] as { workers: Attention; cpu: Attention };
      const dModel = h.workers.config.dModel;
      const inputs = inputsFor(1 + (i % 3), [1, 3, 17, 64, 130][i % 5] as number, dModel, 100 + i);
      const returnWeights = i % 4 === 0;
      jobs.push(
        Promise.all([h.workers.run(inputs, { returnWeights }), h.cpu.run(inputs, { returnWeights })]).then(
          ([got, want]: AttentionResult[]) => {
            const g = got as AttentionResult;
            const w = want as AttentionResult;
            expect(g.fused).toBe(!returnWeights);
            expectSameData(`run ${i} residual`, g.residual, w.residual);
            if (returnWeights) expectSameData(`run ${i} weights`, g.weights as never, w.weights as never);
          },
        ),
      );
    }
    await Promise.all(jobs);
  });

  it('is fair: a small run started behind a large one finishes first', async () => {
    const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
    const big = await pair(registry, { dModel: 128, numHeads: 4 }, 21);
    const small = await pair(registry, { dModel: 16, numHeads: 2 }, 22);
    const order: string[] = [];
    const large = big.workers.run(inputsFor(2, 384, 128, 5)).then(() => order.push('large'));
    const short = small.workers.run(inputsFor(1, 8, 16, 6)).then(() => order.push('small'));
    await Promise.all([large, short]);
    // A first-come-first-served queue would finish the large run first.
    expect(order).toEqual(['small', 'large']);
  });
});

describe('faults', () => {
  it('fails exactly the op submitted after arming, not one in flight or one after it', async () => {
    const b = (await workersBackend.create({ threads: 2, inlineThreshold: 0 })) as WorkersBackend;
    try {
      const next = random(33);
      const attrsFor = (queryLength: number): FusedAttentionAttrs => ({
        batch: 1,
        numHeads: 2,
        numKVHeads: 2,
        queryLength,
        keyLength: queryLength,
        headDim: 8,
        scale: 0.25,
        causal: false,
      });
      const inputs = (L: number) =>
        [0, 1, 2].map(() => b.upload(randomTensor([1, L, 16], next))) as [WorkersTensor, WorkersTensor, WorkersTensor];
      const settle = (p: PromiseLike<unknown>) =>
        Promise.resolve(p).then(
          () => null,
          (e: unknown) => e,
        );
      const big = inputs(256);
      const small = inputs(1);
      const replacedBefore = b.stats().replaced;
      // Each op is queued and its queue submitted (flush) synchronously, so which job is armed
      // does not depend on scheduling: the one in flight when the fault is armed stays clean, the
      // next one fails, and the one after it is clean again, whichever thread takes which lease
      // or block (the armed op has two one-row blocks: one of its leases may well find both
      // claimed by the other thread).
      const submit = (t: WorkersTensor | PromiseLike<WorkersTensor>) => {
        b.flush();
        return settle(Promise.resolve(t).then((x) => b.download(x)));
      };
      const before = submit(b.fused.fusedAttention(...big, null, null, attrsFor(256)));
      b.injectWorkerFault('throw');
      const armed = submit(b.fused.fusedAttention(...small, null, null, attrsFor(1)));
      const after = submit(b.fused.fusedAttention(...small, null, null, attrsFor(1)));
      const [eBefore, eArmed, eAfter] = await Promise.all([before, armed, after]);
      expect(eBefore).toBeNull();
      expect(isQkvError(eArmed, 'WORKER_FAILED'), `expected QkvError WORKER_FAILED, got ${String(eArmed)}`).toBe(true);
      expect((eArmed as QkvError).message).toMatch(/worker thread #\d+ threw: .*injected fault/);
      expect(eAfter).toBeNull();
      // Exactly one thread crashed: only the claimer of the armed job's first block.
      expect(b.stats().replaced).toBe(replacedBefore + 1);
    } finally {
      await b.destroy();
    }
  });

  it('rejects the run whose worker throws with WORKER_FAILED, replaces the worker, and recovers', async () => {
    const { attn, cpu, b } = await pooledPair({ dModel: 32, numHeads: 4 }, 31);
    const inputs = inputsFor(2, 9, 32, 32);
    const replacedBefore = b.stats().replaced;
    b.injectWorkerFault('throw');
    const err = await attn.run(inputs).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isQkvError(err, 'WORKER_FAILED'), `expected QkvError WORKER_FAILED, got ${String(err)}`).toBe(true);
    expect((err as QkvError).message).toMatch(/worker thread #\d+ threw: .*injected fault/);
    expect(b.stats().replaced).toBe(replacedBefore + 1);
    expect(b.liveTensors()).toBe(8); // only the weights (wq…bo) remain; the run freed its tensors
    for (let i = 0; i < 3; i++) {
      const [got, want] = await Promise.all([attn.run(inputs), cpu.run(inputs)]);
      expectSameData('residual after recovery', got.residual, want.residual);
    }
  });
});

describe('options and availability', () => {
  it('refuses bad backendOptions with the expected and the actual value', async () => {
    const bad: [Record<string, unknown>, string, RegExp][] = [
      [{ threads: 0 }, 'INVALID_OPTION', /threads: expected an integer from 1 to 256, got 0/],
      [{ threads: 1.5 }, 'INVALID_OPTION', /got 1\.5/],
      [{ threads: '2' }, 'INVALID_OPTION', /got "2"/],
      [{ inlineThreshold: -1 }, 'INVALID_OPTION', /inlineThreshold: expected a number ≥ 0/],
      [{ thread: 2 }, 'UNKNOWN_OPTION', /unknown option "thread"; expected one of threads, inlineThreshold/],
    ];
    for (const [options, code, message] of bad) {
      const e = await workersBackend.create(options).then(
        () => null,
        (x: unknown) => x,
      );
      expect(isQkvError(e, code as never), `${JSON.stringify(options)} → ${String(e)}`).toBe(true);
      expect((e as Error).message).toMatch(message);
    }
  });

  it('uses the requested thread count', async () => {
    const b = (await workersBackend.create({ threads: 3 })) as WorkersBackend;
    try {
      expect(b.threads).toBe(3);
    } finally {
      await b.destroy();
    }
  });

  it('says it is unavailable without SharedArrayBuffer, and auto picks cpu instead', async () => {
    vi.stubGlobal('SharedArrayBuffer', undefined);
    const a = await workersBackend.isAvailable();
    expect(a.available).toBe(false);
    expect(a.available ? '' : a.reason).toMatch(/SharedArrayBuffer is unavailable/);
    const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
    const attn = await createAttention({ dModel: 8, numHeads: 2 }, weightsFor({ dModel: 8, numHeads: 2 }, 1), {
      registry,
    });
    handles.push(attn);
    expect(attn.backend).toBe('cpu');
    expect(attn.selection.skipped).toContainEqual({
      name: 'workers',
      reason: expect.stringMatching(/unavailable: SharedArrayBuffer is unavailable/),
    });
    // Asked for by name it refuses instead of degrading to copies.
    const e = await workersBackend.create({ threads: 2 }).then(
      () => null,
      (x: unknown) => x,
    );
    expect(isQkvError(e, 'CAPABILITY')).toBe(true);
  });

  it('is chosen by auto over cpu where it is available', async () => {
    const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
    const attn = await createAttention({ dModel: 8, numHeads: 2 }, weightsFor({ dModel: 8, numHeads: 2 }, 1), {
      registry,
    });
    handles.push(attn);
    expect(attn.backend).toBe('workers');
  });
});
