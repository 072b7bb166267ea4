// One thread of the parallel-ceiling probe in attention.mjs: warms the cpu backend's SIMD linear
// kernel up, waits at a barrier for its sibling threads, then counts 64-row blocks of a
// 512 × 512 × 512 projection (packing W once, as a worker's lease does) for `ms` milliseconds.
import { parentPort, workerData } from 'node:worker_threads';
import { cpuKernels } from '@qkv/backend-cpu';

const { barrier, threads, ms } = workerData;
await cpuKernels.preloadFastKernels();
const n = 512;
const x = new Float32Array(n * n).map((_, i) => Math.sin(i) * 0.1);
const w = x.slice();
const out = new Float32Array(n * n);
const attrs = { rows: n, inFeatures: n, outFeatures: n };
const block = (b) => cpuKernels.linearFast(x, w, null, out, attrs, (b % 8) * 64, (b % 8) * 64 + 64);
cpuKernels.beginPackScope();
for (let b = 0; b < 64; b++) block(b);
Atomics.add(barrier, 0, 1);
while (Atomics.load(barrier, 0) < threads) {}
let blocks = 0;
const end = performance.now() + ms;
while (performance.now() < end) block(blocks++);
cpuKernels.endPackScope();
parentPort.postMessage(blocks);
