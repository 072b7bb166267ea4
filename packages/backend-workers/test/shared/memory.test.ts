import { createAttention, type FusedAttentionAttrs, type LinearAttrs } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import {
  blockRange,
  LINEAR_COLUMN_BLOCKS_PER_THREAD,
  LINEAR_COLUMN_MAX_ROWS,
  LINEAR_PANEL,
  MIN_COLUMN_BLOCK_WORK,
  MIN_FUSED_BLOCK_ROWS,
  MIN_LINEAR_BLOCK_ROWS,
  planColumns,
  planTask,
  type SliceTask,
  type TaskPlan,
  type WorkersBackend,
  workersBackend,
} from '../../dist/index.js';
import { capturingRegistry, inputsFor, weightsFor } from './helpers.js';

const none = new Float32Array(0);

function fusedTask(batch: number, numHeads: number, queryLength: number): SliceTask {
  const attrs: FusedAttentionAttrs = {
    batch,
    numHeads,
    numKVHeads: numHeads,
    queryLength,
    keyLength: queryLength,
    headDim: 64,
    scale: 0.125,
    causal: true,
  };
  return {
    op: 'fusedAttention',
    q: none,
    k: none,
    v: none,
    keyPaddingMask: null,
    attnMask: null,
    sequenceIds: null,
    out: none,
    lse: null,
    attrs,
    kernels: 'simd128',
  };
}

function linearTask(rows: number): SliceTask {
  const attrs: LinearAttrs = { rows, inFeatures: 512, outFeatures: 512 };
  return {
    op: 'linear',
    x: none,
    w: none,
    bias: null,
    out: none,
    attrs,
    kernels: 'simd128',
    weight: null,
    byColumns: false,
  };
}

/** Every block's [from, to), checking that together they cover 0…rows once, in order. */
function ranges(plan: TaskPlan, rows: number): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (let b = 0; b < plan.blocks; b++) {
    const [from, to] = blockRange(plan, rows, b);
    expect(from).toBe(next);
    expect(to).toBeGreaterThan(from);
    out.push([from, to]);
    next = to;
  }
  expect(next).toBe(rows);
  return out;
}

describe('work split for the WebAssembly kernels', () => {
  it('gives linear blocks of at least MIN_LINEAR_BLOCK_ROWS rows, several per thread (W is packed once per lease)', () => {
    for (const [rows, threads, blocks] of [
      [512, 2, 16],
      [1024, 2, 32],
      [16384, 2, 32],
      [1001, 3, 31],
      [100, 2, 3],
      [1, 4, 1],
    ] as const) {
      const plan = planTask(linearTask(rows), threads);
      expect(plan.blocks).toBe(blocks);
      const blocksOf = ranges(plan, rows);
      if (blocks > threads)
        for (const [from, to] of blocksOf.slice(0, -1)) expect(to - from).toBeGreaterThanOrEqual(MIN_LINEAR_BLOCK_ROWS);
    }
  });

  it('splits a few-row linear on a packed W by 8-column panels, one block per thread at least', () => {
    for (const [rows, K, N, threads, blocks] of [
      [1, 512, 512, 2, 4], // 64 panels of 2^12 multiply-adds: 4 blocks of 2^16
      [1, 2048, 2048, 2, 2 * LINEAR_COLUMN_BLOCKS_PER_THREAD], // 256 panels: blocks per thread cap
      [1, 64, 44, 2, 2], // 6 panels (the last half padding), little work: one per thread
      [LINEAR_COLUMN_MAX_ROWS, 512, 512, 3, 11], // 12 wanted: 6 panels each make 11
    ] as const) {
      const task = {
        ...linearTask(rows),
        attrs: { rows, inFeatures: K, outFeatures: N },
        byColumns: true,
      } as SliceTask;
      const panels = Math.ceil(N / LINEAR_PANEL);
      const plan = planTask(task, threads);
      expect(plan).toEqual(planColumns(panels, rows * K * LINEAR_PANEL, threads));
      expect(plan.blocks, `rows ${rows}, ${K} × ${N}`).toBe(blocks);
      const blocksOf = ranges(plan, panels);
      if (blocks > threads)
        for (const [from, to] of blocksOf)
          expect((to - from) * rows * K * LINEAR_PANEL).toBeGreaterThanOrEqual(MIN_COLUMN_BLOCK_WORK);
    }
  });

  it('keeps fused blocks inside one head, with at least a query chunk of rows when heads allow', () => {
    for (const [B, H, Lq, threads] of [
      [1, 8, 512, 2],
      [1, 12, 512, 2],
      [2, 3, 1000, 2],
      [1, 1, 4096, 2],
      [1, 1, 300, 4],
      [1, 1, 2, 2],
      [3, 2, 1, 2],
    ] as const) {
      const rows = B * H * Lq;
      const plan = planTask(fusedTask(B, H, Lq), threads);
      const blocks = ranges(plan, rows);
      for (const [from, to] of blocks) {
        expect(Math.floor(from / Lq)).toBe(Math.floor((to - 1) / Lq));
        // Short of the end of a head, a block has the minimum size unless the head is too short
        // to give every thread one.
        if (to % Lq !== 0 && B * H * Math.ceil(Lq / MIN_FUSED_BLOCK_ROWS) >= threads) {
          expect(to - from).toBeGreaterThanOrEqual(MIN_FUSED_BLOCK_ROWS);
        }
      }
      // Every thread gets work whenever there are enough rows.
      expect(blocks.length).toBeGreaterThanOrEqual(Math.min(threads, rows));
    }
    // d = 512, h = 8 on two threads: quarter heads (two query chunks), sixteen per thread.
    expect(planTask(fusedTask(1, 8, 512), 2)).toEqual({ blockRows: 128, blocks: 32, segmentRows: 512 });
  });
});

describe('shared memory reuse', () => {
  it('allocates no new shared memory for repeated fused runs of one shape, and frees it all on dispose', async () => {
    const { registry, created } = capturingRegistry();
    // L = 2048, d = 128: 1 MiB per [L, d] tensor, several per run. Before buffers were recycled
    // every run allocated all of them anew, and their memory came back only once every worker
    // thread's collector had dropped its views (at L = 8192, d = 512 the process grew by
    // ~144 MB per run); now the bound is exact: nothing new after the first run.
    const L = 2048;
    const config = { dModel: 128, numHeads: 2, causal: true };
    const attn = await createAttention(config, weightsFor(config, 3), {
      registry,
      backend: 'workers',
      backendOptions: { threads: 2, inlineThreshold: 0 },
    });
    const b = created[0] as WorkersBackend;
    try {
      const params = b.stats().liveBytes;
      const inputs = inputsFor(1, L, 128, 4);
      const first = await attn.run(inputs);
      expect(first.fused).toBe(true);
      const afterFirst = b.stats().allocatedBytes;
      // Run 1 needs at least the input, q, k and v at once; later tensors may reuse theirs.
      expect(afterFirst - params).toBeGreaterThanOrEqual(4 * L * 128 * 4);
      for (let i = 0; i < 5; i++) {
        const r = await attn.run(inputs);
        expect(r.attention.data).toEqual(first.attention.data);
      }
      // Every buffer of runs 2…6 came off the free list: shared memory stays where run 1 left it,
      // whatever the threads' garbage collectors do.
      expect(b.stats().allocatedBytes).toBe(afterFirst);
      expect(b.stats().liveBytes).toBe(params);
      expect(b.stats().recycledBytes).toBeLessThanOrEqual(afterFirst - params);
    } finally {
      await attn.dispose();
    }
    expect(b.stats().recycledBytes).toBe(0);
  });

  it('never hands one buffer to two tensors when a tensor is disposed twice', async () => {
    const b = (await workersBackend.create({ threads: 1 })) as WorkersBackend;
    try {
      const t = b.upload({ shape: [4], data: new Float32Array([1, 2, 3, 4]) });
      b.dispose(t);
      b.dispose(t);
      const x = b.upload({ shape: [4], data: new Float32Array([5, 6, 7, 8]) });
      const y = b.upload({ shape: [4], data: new Float32Array([9, 10, 11, 12]) });
      expect(x.data.buffer).not.toBe(y.data.buffer);
      expect(Array.from((await b.download(x)).data)).toEqual([5, 6, 7, 8]);
    } finally {
      await b.destroy();
    }
  });
});
