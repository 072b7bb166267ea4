#!/usr/bin/env node
// qkv's webgpu backend in Node (Dawn over the machine's Vulkan driver) at the Chromium bench's
// sizes (d=512, h=8, L=128/512/1024, same seeded problem), against qkv's cpu backend in the same
// process, interleaved. First run and the median of QKV_BENCH_RUNS (default 3) steady runs, each
// reading ΔE back. Writes bench/results/webgpu-node[-gpu].json (-gpu with QKV_BENCH_GPU=1).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention } from '@qkv/core';
import { makeProblem } from '../../../bench/src/problem.mjs';
import { webgpuBackend } from '../dist/index.js';

const runs = Number(process.env.QKV_BENCH_RUNS ?? 3);
const sizes = (process.env.QKV_BENCH_SIZES ?? '128,512,1024').split(',').map(Number);
const realGpu = process.env.QKV_BENCH_GPU === '1';
const D = 512;
const H = 8;
const registry = new BackendRegistry().register(webgpuBackend).register(cpuBackend);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const availability = await registry.availability('webgpu');
if (!availability.available) {
  console.error(`webgpu is not available here: ${availability.reason}`);
  process.exit(1);
}
console.log(`webgpu: ${availability.detail}`);
const results = [];
for (const L of sizes) {
  const p = makeProblem({ L, d: D, h: H, causal: false });
  const weights = Object.fromEntries(Object.entries(p.weights).map(([n, data]) => [n, { shape: p.shapes[n], data }]));
  const query = { shape: [1, L, D], data: p.x };
  const row = { L, firstMs: {}, steadyMs: {}, runs: { webgpu: [], cpu: [] } };
  const handles = {};
  for (const name of ['webgpu', 'cpu']) {
    const t0 = performance.now();
    handles[name] = await createAttention({ dModel: D, numHeads: H }, weights, { backend: name, registry });
    await handles[name].run({ query });
    row.firstMs[name] = performance.now() - t0;
  }
  for (let i = 0; i < runs; i++) {
    for (const name of ['webgpu', 'cpu']) {
      const t0 = performance.now();
      await handles[name].run({ query });
      row.runs[name].push(performance.now() - t0);
    }
  }
  for (const name of ['webgpu', 'cpu']) {
    row.steadyMs[name] = median(row.runs[name]);
    await handles[name].dispose();
  }
  row.webgpuOverCpu = median(row.runs.webgpu.map((w, i) => w / row.runs.cpu[i]));
  results.push(row);
  console.log(
    `L=${L}: webgpu first ${row.firstMs.webgpu.toFixed(0)} ms, steady ${row.steadyMs.webgpu.toFixed(0)} ms | cpu steady ${row.steadyMs.cpu.toFixed(0)} ms | webgpu/cpu ${row.webgpuOverCpu.toFixed(2)}`,
  );
}
mkdirSync(new URL('results', import.meta.url), { recursive: true });
const file = `results/webgpu-node${realGpu ? '-gpu' : ''}.json`;
const out = { date: new Date().toISOString(), adapter: availability.detail, runs, dModel: D, numHeads: H, results };
writeFileSync(new URL(file, import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
