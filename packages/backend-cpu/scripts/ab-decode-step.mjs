// The whole cpu decode step, this checkout against a baseline checkout, cold, beside the read
// floor (ab-decode.mjs times the kernel alone):
//
//   node scripts/ab-decode-step.mjs --baseline DIR [--shape 512,8,8] [--caches 4096,8192,16384]
//        [--steps 25]
//
// DIR is a built checkout (`pnpm turbo run build --filter=@qkv/backend-cpu --filter=@qkv/core`
// there); each side's cpu backend runs under its own checkout's @qkv/core (the session, graph
// and executor are part of the step), one session each (d, H, KVH; causal, bias bo;
// filled in 512-token steps), stepping one token in turn with the floor (one read of the
// cache's bytes, 2·Lk·KVH·hd floats, by `readArena`), the order flipped every round. Before
// every timed call a separate 64 MiB buffer is read, so weights and caches come from DRAM as
// in a real step; times are CPU time (`process.cpuUsage()`), the first 5 rounds dropped. Prints
// per cache the medians and the median per-round ratios current/baseline and each/floor, and
// max |current − baseline| of the last step's output.
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BackendRegistry, createAttention } from '@qkv/core';
import { cpuBackend, cpuKernels } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    shape: { type: 'string', default: '512,8,8' },
    caches: { type: 'string', default: '4096,8192,16384' },
    steps: { type: 'string', default: '25' },
  },
});
if (!values.baseline) throw new Error('ab-decode-step: --baseline DIR (a built checkout) is required');
const baseDir = resolve(values.baseline);
const baseline = (await import(join(baseDir, 'packages/backend-cpu/dist/index.js'))).cpuBackend;
const baseCore = await import(join(baseDir, 'packages/core/dist/index.js'));
const [d, H, KVH] = values.shape.split(',').map(Number);
const hd = d / H;
const ROUNDS = Number(values.steps) + 5;
const FLUSH_BYTES = 64 << 20;

/** Seeded ±0.1 values (an LCG): contents do not change the cost. */
function seeded(shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 4294967296 - 0.5) * 0.2;
  }
  return { shape, data };
}

const weights = {
  wq: seeded([d, H * hd], 1),
  wk: seeded([d, KVH * hd], 2),
  wv: seeded([d, KVH * hd], 3),
  wo: seeded([H * hd, d], 4),
  bo: seeded([d], 5),
};
const config = { dModel: d, numHeads: H, numKVHeads: KVH, causal: true, bias: ['bo'] };
const handle = (core, factory) =>
  core.createAttention(config, weights, { registry: new core.BackendRegistry().register(factory), backend: 'cpu' });
const sides = [await handle(baseCore, baseline), await handle({ createAttention, BackendRegistry }, cpuBackend)];
const arena = cpuKernels.createArena();
if (typeof arena === 'string') throw new Error(`ab-decode-step: ${arena}`);
const at = (ptr) => ({ memory: arena.memory, id: arena.id, ptr });
const flushPtr = arena.alloc(FLUSH_BYTES);
arena.f32(flushPtr, FLUSH_BYTES / 4).fill(1); // written: untouched pages would read as the zero page
const flush = () => cpuKernels.readArena(at(flushPtr), FLUSH_BYTES);
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

console.log(
  `ab-decode-step: d=${d} H=${H} KVH=${KVH}, baseline ${values.baseline}, Node ${process.versions.node}, ` +
    `${values.steps} steps per cell, CPU time, cold (64 MiB read before each call)`,
);
for (const L of values.caches.split(',').map(Number)) {
  const sessions = sides.map((a) => a.createSession({ maxLength: L + ROUNDS }));
  for (const s of sessions) while (s.length < L) await s.step(seeded([1, Math.min(512, L - s.length), d], s.length));
  const bytes = 2 * L * KVH * hd * 4;
  const floorPtr = arena.alloc(bytes);
  arena.f32(floorPtr, bytes / 4).fill(1);
  const x = seeded([1, 1, d], 7);
  const ms = [[], [], []];
  const outs = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const k of round % 2 ? [2, 1, 0] : [0, 1, 2]) {
      flush();
      const t0 = cpuMs();
      if (k === 2) cpuKernels.readArena(at(floorPtr), bytes);
      else outs[k] = (await sessions[k].step(x)).attention.data;
      if (round >= 5) ms[k].push(cpuMs() - t0);
    }
  }
  let diff = 0;
  for (let c = 0; c < outs[0].length; c++) diff = Math.max(diff, Math.abs(outs[0][c] - outs[1][c]));
  const ratio = (a, b) => median(ms[a].map((v, i) => v / ms[b][i])).toFixed(3);
  console.log(
    `cache ${L}: step baseline ${median(ms[0]).toFixed(3)} ms, current ${median(ms[1]).toFixed(3)}, ` +
      `floor ${median(ms[2]).toFixed(3)}; current/baseline ${ratio(1, 0)}, baseline/floor ${ratio(0, 2)}, ` +
      `current/floor ${ratio(1, 2)}; max |current − baseline| ${diff.toExponential(1)}`,
  );
  arena.free(floorPtr);
  for (const s of sessions) await s.dispose();
}
for (const a of sides) await a.dispose();
