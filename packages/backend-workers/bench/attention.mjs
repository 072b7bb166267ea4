// Throughput of the workers backend (2 threads) against cpu, in the same process, on the issue's
// shapes: L = 512 and 1024 with d = 512, h = 8 and d = 768, h = 12. The fused path (no returnWeights) is
// the headline; the unfused path (returnWeights: true, materialising [B, H, L, L]) is reported
// too. Goal: ≥ 1.8× on 2 threads. Run: pnpm bench (turbo builds first).

import { Worker } from 'node:worker_threads';
import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention } from '@qkv/core';
import { workersBackend } from '../dist/index.js';
import { tensor } from './tensor.mjs';

const THREADS = Number(process.env.QKV_BENCH_THREADS ?? 2);
/** Interleaved (cpu, workers) pairs timed per shape and path, after two warm-up runs of each. */
const PAIRS = Number(process.env.QKV_BENCH_PAIRS ?? 11);
/** Sequence lengths (the goal says L ≥ 512); the unfused path is timed at the first only. */
const LENGTHS = (process.env.QKV_BENCH_LENGTH ?? '512,1024').split(',').map(Number);
const shapes = [
  { dModel: 512, numHeads: 8 },
  { dModel: 768, numHeads: 12 },
];

const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);

/**
 * Times `PAIRS` pairs of runs, one on each handle, back to back (the order alternates from pair
 * to pair), and returns the median time of each and the median of the per-pair ratios cpu/workers.
 * This machine's speed drifts by tens of percent within seconds (other tenants, page faults; see
 * the README), so a ratio is only meaningful between runs made close together: each pair is
 * one such comparison, and the median over pairs discards the ones a hiccup hit.
 *
 * Every run gets a fresh input tensor, as every forward pass of a real model does (new tokens,
 * new embeddings). Re-running one unchanged input object is a microbenchmark artifact that
 * matters on this VM: the runs then allocate almost nothing but their outputs, V8 collects so
 * rarely that each output lands on fresh pages, and a fresh page costs ~14 µs here (≈ 7 ms per
 * run at d = 512, measured) — a cost of the harness, not of either backend. The input is made
 * before the clock starts.
 */
async function timePairs(cpu, workers, makeInputs, options) {
  for (let i = 0; i < 2; i++) {
    await cpu.run(makeInputs(), options);
    await workers.run(makeInputs(), options);
  }
  const once = async (attn) => {
    const inputs = makeInputs();
    const s = performance.now();
    await attn.run(inputs, options);
    return performance.now() - s;
  };
  const tc = [];
  const tw = [];
  const ratios = [];
  for (let i = 0; i < PAIRS; i++) {
    let c;
    let w;
    if (i % 2 === 0) {
      c = await once(cpu);
      w = await once(workers);
    } else {
      w = await once(workers);
      c = await once(cpu);
    }
    tc.push(c);
    tw.push(w);
    ratios.push(c / w);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return { cpu: median(tc), workers: median(tw), ratio: median(ratios) };
}

/**
 * This machine's own ceiling for the ratio: the cpu backend's SIMD linear kernel on one thread
 * alone, then on THREADS threads at once (independent copies, nothing shared, no scheduling),
 * each for `ms`; returns the throughput of all of them over that of one. No split of the work can
 * beat it. On this VM it drifts from run to run (measured 1.5–2.0 for 2 threads: a vCPU can run
 * ~30% slower while the other is busy), so the bench prints it before and after the table.
 */
async function parallelCeiling(ms = 1500) {
  const run = async (threads) => {
    const barrier = new Int32Array(new SharedArrayBuffer(4));
    const counts = await Promise.all(
      Array.from({ length: threads }, () => {
        const w = new Worker(new URL('./ceiling-worker.mjs', import.meta.url), {
          workerData: { barrier, threads, ms },
        });
        return new Promise((resolve, reject) => {
          w.once('message', (blocks) => {
            resolve(blocks);
            void w.terminate();
          });
          w.once('error', reject);
        });
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  };
  const one = await run(1);
  return (await run(THREADS)) / one;
}

const ceilingBefore = await parallelCeiling();
const rows = [];
for (const L of LENGTHS) {
  for (const { dModel: d, numHeads: h } of shapes) {
    const weights = {
      wq: tensor([d, d], 1),
      wk: tensor([d, d], 2),
      wv: tensor([d, d], 3),
      wo: tensor([d, d], 4),
      bq: tensor([d], 5),
      bk: tensor([d], 6),
      bv: tensor([d], 7),
      bo: tensor([d], 8),
    };
    const config = { dModel: d, numHeads: h };
    let seed = 9;
    const inputs = () => ({ query: tensor([1, L, d], seed++) });
    const cpu = await createAttention(config, weights, { registry, backend: 'cpu' });
    const workers = await createAttention(config, weights, {
      registry,
      backend: 'workers',
      backendOptions: { threads: THREADS },
    });
    const paths =
      L === LENGTHS[0]
        ? [
            ['fused', {}],
            ['unfused', { returnWeights: true }],
          ]
        : [['fused', {}]];
    for (const [path, options] of paths) {
      const t = await timePairs(cpu, workers, inputs, options);
      rows.push({ shape: `B=1 L=${L} d=${d} h=${h}`, path, ...t });
    }
    await cpu.dispose();
    await workers.dispose();
  }
}

console.log(
  `\nqkv attention: workers (${THREADS} threads) vs cpu, ${PAIRS} interleaved pairs of runs: median times (ms) and median of the per-pair ratios\n`,
);
const header = ['shape', 'path', 'cpu ms', 'workers ms', 'cpu/workers'];
const table = rows.map((r) => [r.shape, r.path, r.cpu.toFixed(1), r.workers.toFixed(1), `${r.ratio.toFixed(2)}×`]);
const widths = header.map((hd, i) => Math.max(hd.length, ...table.map((r) => r[i].length)));
const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
console.log(line(header));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of table) console.log(line(r));
const ceilingAfter = await parallelCeiling();
console.log(
  `\nmachine ceiling (${THREADS} independent threads of the linear kernel vs one): ${ceilingBefore.toFixed(2)}× before, ${ceilingAfter.toFixed(2)}× after`,
);
const fused = rows.filter((r) => r.path === 'fused');
const worst = Math.min(...fused.map((r) => r.ratio));
console.log(`\nfused path, worst ratio ${worst.toFixed(2)}× (goal ≥ 1.8× with 2 threads)`);
