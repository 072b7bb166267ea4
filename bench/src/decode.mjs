// `pnpm bench`, decode section: per-token step latency of batch-1 token-by-token decoding at
// caches of 1k / 4k / 8k / 16k, for qkv cpu and workers sessions (the decode kernel on arena
// caches; workers split the keys across threads) against onnxruntime-node's GroupQueryAttention
// with past_key / past_value fed back every step (the same projections before and after), and the
// machine's floor in the same run: the time to read the K/V cache once, on one thread and on two.
// Steps of every implementation are interleaved, so the ratios compare numbers taken under the
// same load; each cell is the median of STEPS steps. The two-thread floor is given twice: wall
// time from this thread (a message there and back, what a dispatch pays) and the threads' own
// time (the slower thread's read, what the hardware allows); the gap is the dispatch cost.
//
//   node src/decode.mjs [--shapes mha,gqa] [--caches 1024,4096] [--steps 15] [--out NAME]
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { cpuBackend, cpuKernels } from '@qkv/backend-cpu';
import { workersBackend } from '@qkv/backend-workers';
import { BackendRegistry, createAttention } from '@qkv/core';
// The benches' one seeded-tensor helper (±0.1 values): contents do not change a step's cost.
import { tensor as seededTensor } from '../../packages/backend-workers/bench/tensor.mjs';
import { THREADS } from './impls.mjs';
import { float, INT32, model, node, tensor } from './onnx.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const SHAPES = [
  { key: 'mha', label: 'd=512 h=8', d: 512, H: 8, KVH: 8 },
  { key: 'gqa', label: 'd=2048 H=16 KVH=4 hd=128', d: 2048, H: 16, KVH: 4 },
].filter((s) => !arg('shapes') || arg('shapes').split(',').includes(s.key));
const CACHES = (arg('caches') ?? '1024,4096,8192,16384').split(',').map(Number);
const STEPS = Number(arg('steps') ?? 15);
/** Prefill chunk: the flash kernel fills the cache up to each measured length. */
const CHUNK = 512;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function weightsFor({ d, H, KVH }, seed) {
  const hd = d / H;
  const w = {
    wq: seededTensor([d, H * hd], seed),
    wk: seededTensor([d, KVH * hd], seed + 1),
    wv: seededTensor([d, KVH * hd], seed + 2),
    wo: seededTensor([H * hd, d], seed + 3),
    bo: seededTensor([d], seed + 4),
  };
  return w;
}

/** A qkv session on `backend`, its cache filled to `length` tokens by `grow`. */
async function qkvDecoder(registry, backend, shape, weights, maxLength) {
  const attn = await createAttention(
    { dModel: shape.d, numHeads: shape.H, numKVHeads: shape.KVH, causal: true, bias: ['bo'] },
    weights,
    { registry, backend, ...(backend === 'workers' ? { backendOptions: { threads: THREADS } } : {}) },
  );
  const session = attn.createSession({ maxLength });
  return {
    grow: async (length) => {
      while (session.length < length) {
        const t = Math.min(CHUNK, length - session.length);
        await session.step(seededTensor([1, t, shape.d], session.length));
      }
    },
    step: async (x) => {
      await session.step(x);
    },
    length: () => session.length,
    dispose: async () => {
      await session.dispose();
      await attn.dispose();
    },
  };
}

/**
 * onnxruntime: X → Q, K, V projections → com.microsoft GroupQueryAttention(past_key, past_value)
 * → ·Wo + bo. present_key / present_value come back and are fed as the next step's past.
 */
async function ortDecoder(shape, weights) {
  const ort = (await import('onnxruntime-node')).default;
  const { d, H, KVH } = shape;
  const hd = d / H;
  const nodes = [
    node('MatMul', ['X', 'wq'], ['q']),
    node('MatMul', ['X', 'wk'], ['k']),
    node('MatMul', ['X', 'wv'], ['v']),
    node(
      'GroupQueryAttention',
      ['q', 'k', 'v', 'past_key', 'past_value', 'seqlens_k', 'total_sequence_length'],
      ['o', 'present_key', 'present_value'],
      { num_heads: H, kv_num_heads: KVH, scale: float(1 / Math.sqrt(hd)) },
      'com.microsoft',
    ),
    node('MatMul', ['o', 'wo'], ['o1']),
    node('Add', ['o1', 'bo'], ['Y']),
  ];
  const shapes = { wq: [d, d], wk: [d, KVH * hd], wv: [d, KVH * hd], wo: [d, d], bo: [d] };
  const bytes = model({
    nodes,
    initializers: Object.entries(weights).map(([n, t]) => tensor(n, shapes[n], t.data)),
    inputs: [
      ['X', [1, 1, d]],
      ['past_key', [1, KVH, 'past', hd]],
      ['past_value', [1, KVH, 'past', hd]],
      ['seqlens_k', [1], INT32],
      ['total_sequence_length', [], INT32],
    ],
    outputs: [
      ['Y', [1, 1, d]],
      ['present_key', [1, KVH, 'total', hd]],
      ['present_value', [1, KVH, 'total', hd]],
    ],
  });
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    // Its intra-op threads otherwise spin after each step and take the cores from whatever this
    // interleaved loop times next (measured: the workers step 1.1-1.3x slower after it); the
    // step's own time is the same either way.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  let past = null;
  let length = 0;
  return {
    // The cache's contents do not change a step's cost: seeded values stand in for a prefill.
    grow: async (len) => {
      const n = KVH * len * hd;
      past = [
        new ort.Tensor('float32', seededTensor([n], len).data, [1, KVH, len, hd]),
        new ort.Tensor('float32', seededTensor([n], len + 1).data, [1, KVH, len, hd]),
      ];
      length = len;
    },
    step: async (x) => {
      const out = await session.run({
        X: new ort.Tensor('float32', x.data, [1, 1, d]),
        past_key: past[0],
        past_value: past[1],
        seqlens_k: new ort.Tensor('int32', Int32Array.of(length), [1]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(length + 1), []),
      });
      past = [out.present_key, out.present_value];
      length++;
    },
    length: () => length,
    dispose: () => session.release(),
  };
}

/**
 * The floor: the K/V cache (2 · Lk · KVH·hd floats) read once, on one thread and on two at once;
 * and, on one thread, the cache plus `weightBytes` (the four projections' weights, which every
 * step also reads: at d = 2048 they outweigh a cache of 10k keys).
 */
async function floorReader(bytes, weightBytes) {
  const arena = cpuKernels.createArena();
  if (typeof arena === 'string') throw new Error(`decode bench: ${arena}`);
  const size = Math.ceil(bytes / 128) * 128;
  const ptr = arena.alloc(size);
  arena.f32(ptr, size / 4).fill(1);
  const ref = { memory: arena.memory, id: arena.id, ptr };
  const wSize = Math.ceil(weightBytes / 128) * 128;
  const wRef = { memory: arena.memory, id: arena.id, ptr: arena.alloc(wSize) };
  arena.f32(wRef.ptr, wSize / 4).fill(1);
  const workers = [0, 1].map(
    (i) =>
      new Worker(join(here, 'floor-worker.mjs'), {
        workerData: { memory: arena.memory, id: arena.id, ptr: ptr + (i * size) / 2, bytes: size / 2 },
      }),
  );
  const ask = (w) => new Promise((resolve) => w.once('message', (m) => resolve(m.ms)));
  for (const w of workers) {
    const p = ask(w);
    w.postMessage('go'); // warm: instantiate and fault the pages in
    await p;
  }
  return {
    one: () => {
      const t0 = performance.now();
      cpuKernels.readArena(ref, size);
      return performance.now() - t0;
    },
    oneWithWeights: () => {
      const t0 = performance.now();
      cpuKernels.readArena(wRef, wSize);
      cpuKernels.readArena(ref, size);
      return performance.now() - t0;
    },
    /** Wall time from here, and the slower thread's own time for its half. */
    two: async () => {
      const t0 = performance.now();
      const own = await Promise.all(
        workers.map((w) => {
          const p = ask(w);
          w.postMessage('go');
          return p;
        }),
      );
      return { wall: performance.now() - t0, self: Math.max(...own) };
    },
    dispose: () => Promise.all(workers.map((w) => w.terminate())),
  };
}

const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
const rows = [];
const outFile = join(here, '..', 'results', `${arg('out') ?? 'decode'}.json`);
const machine = `${os.cpus()[0]?.model} × ${os.cpus().length}`;
/** Rewritten after every row: a crash or a kill keeps every row measured so far. */
const save = () =>
  writeFileSync(
    outFile,
    `${JSON.stringify({ date: new Date().toISOString(), machine, node: process.version, steps: STEPS, rows }, null, 2)}\n`,
  );
console.log(`decode bench: ${machine}, load ${os.loadavg()[0].toFixed(1)}, ${STEPS} steps per cell`);
for (const shape of SHAPES) {
  const weights = weightsFor(shape, 7);
  const maxLength = Math.max(...CACHES) + STEPS + 2;
  const impls = {
    'qkv-cpu': await qkvDecoder(registry, 'cpu', shape, weights, maxLength),
    'qkv-workers': await qkvDecoder(registry, 'workers', shape, weights, maxLength),
    'ort-gqa': await ortDecoder(shape, weights),
  };
  for (const cache of CACHES) {
    for (const impl of Object.values(impls)) await impl.grow(cache);
    const hd = shape.d / shape.H;
    const kvBytes = 2 * cache * shape.KVH * hd * 4;
    const weightBytes = 4 * (2 * shape.d * shape.H * hd + 2 * shape.d * shape.KVH * hd);
    const floor = await floorReader(kvBytes, weightBytes);
    const times = {
      ...Object.fromEntries(Object.keys(impls).map((k) => [k, []])),
      'floor-1': [],
      'floor-2': [],
      'floor-2-self': [],
      'floor-1-weights': [],
    };
    const x = seededTensor([1, 1, shape.d], cache);
    for (let s = -2; s < STEPS; s++) {
      for (const [name, impl] of Object.entries(impls)) {
        const t0 = performance.now();
        await impl.step(x);
        if (s >= 0) times[name].push(performance.now() - t0);
      }
      const one = floor.one();
      const two = await floor.two();
      const withWeights = floor.oneWithWeights();
      if (s >= 0) {
        times['floor-1'].push(one);
        times['floor-1-weights'].push(withWeights);
        times['floor-2'].push(two.wall);
        times['floor-2-self'].push(two.self);
      }
    }
    await floor.dispose();
    const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
    const row = {
      shape: shape.label,
      cache,
      kvMB: kvBytes / 2 ** 20,
      weightsMB: weightBytes / 2 ** 20,
      ms: m,
      ratios: {
        cpuOverFloor1: m['qkv-cpu'] / m['floor-1'],
        cpuOverFloor1Weights: m['qkv-cpu'] / m['floor-1-weights'],
        workersOverCpu: m['qkv-workers'] / m['qkv-cpu'],
        workersOverOrt: m['qkv-workers'] / m['ort-gqa'],
        workersOverFloor2: m['qkv-workers'] / m['floor-2'],
        workersOverFloor2Self: m['qkv-workers'] / m['floor-2-self'],
      },
    };
    rows.push(row);
    save();
    const f = (v) => v.toFixed(2).padStart(7);
    console.log(
      `${shape.label.padEnd(26)} cache ${String(cache).padStart(5)} (K+V ${row.kvMB.toFixed(0).padStart(3)} MB)` +
        `  cpu ${f(m['qkv-cpu'])}  workers ${f(m['qkv-workers'])}` +
        `  ort ${f(m['ort-gqa'])}` +
        `  floor 1T ${f(m['floor-1'])} 2T wall ${f(m['floor-2'])} 2T self ${f(m['floor-2-self'])}` +
        ` 1T+weights ${f(m['floor-1-weights'])} ms` +
        `  | cpu/floor1 ${row.ratios.cpuOverFloor1.toFixed(2)} (with weights ${row.ratios.cpuOverFloor1Weights.toFixed(2)})  workers/cpu ${row.ratios.workersOverCpu.toFixed(2)}` +
        `  workers/ort ${row.ratios.workersOverOrt.toFixed(2)}`,
    );
  }
  for (const impl of Object.values(impls)) await impl.dispose();
}
save();
process.exit(0);
