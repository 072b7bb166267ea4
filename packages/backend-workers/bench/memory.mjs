// Peak memory of repeated fused attention runs on the workers backend at long sequences: the
// process's RSS and V8's arrayBuffers (SharedArrayBuffers included) after each run, so growth
// with the number of runs shows. Run: node bench/memory.mjs [L] [runs] (after build).
import { readFileSync } from 'node:fs';
import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention } from '@qkv/core';
import { workersBackend } from '../dist/index.js';
import { tensor } from './tensor.mjs';

const L = Number(process.argv[2] ?? 8192);
const RUNS = Number(process.argv[3] ?? 6);
const backend = process.env.QKV_BENCH_BACKEND ?? 'workers';
const d = 512;
const h = 8;

/** Peak RSS of the process so far (Linux VmHWM), in MB; null elsewhere. */
function peakRss() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}
const mb = (b) => (b / 2 ** 20).toFixed(0);

const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
const w = (s) => tensor([d, d], s);
const b = (s) => tensor([d], s);
const weights = { wq: w(1), wk: w(2), wv: w(3), wo: w(4), bq: b(5), bk: b(6), bv: b(7), bo: b(8) };
const attn = await createAttention({ dModel: d, numHeads: h, causal: true }, weights, {
  registry,
  backend,
  ...(backend === 'workers' ? { backendOptions: { threads: 2 } } : {}),
});
const inputs = { query: tensor([1, L, d], 9) };
console.log(`${backend}, L=${L} d=${d} h=${h} causal, input ${mb(L * d * 4)} MB`);
for (let i = 0; i < RUNS; i++) {
  const s = performance.now();
  const out = await attn.run(inputs);
  const ms = performance.now() - s;
  void out;
  if (process.env.QKV_GC && globalThis.gc) globalThis.gc();
  const m = process.memoryUsage();
  console.log(
    `run ${i + 1}: ${ms.toFixed(0)} ms, rss ${mb(m.rss)} MB, arrayBuffers ${mb(m.arrayBuffers)} MB, peak rss ${peakRss()?.toFixed(0)} MB`,
  );
}
await attn.dispose();
