#!/usr/bin/env node
// `pnpm bench:decode` (after build; under an X display via scripts/with-display.mjs): the webgl
// decode step of issue #17 — batch-1 token-by-token decoding at d = 512, h = 8 and the Llama-like
// GQA shape (d = 2048, H = 16, KVH = 4, hd = 128), caches of 1k / 4k / 8k / 16k — beside the cpu
// backend's step in the same process (steps alternate webgl, cpu), and how
// the webgl step grows with the cache: the per-1k-keys cost of each backend from the smallest to
// the largest cache. The split-KV question ("split the key range across fragments and merge, if
// it pays") is answered by running this twice, LP_NUM_THREADS=1 and the default (one llvmpipe
// thread per core): if the webgl step does not get faster with a second thread, its key loops run
// on one thread and splitting them would pay; if it does, the fragments already spread the keys.
// QKV_BENCH_BASELINE=<path to another build's dist/index.js> adds that build's webgl step as
// `before`, interleaved with the others in the same process (a before/after ratio in one run).
//   QKV_BENCH_SHAPES=mha,gqa  QKV_BENCH_CACHES=1024,4096,8192,16384  QKV_BENCH_STEPS=7
// Writes bench/results/decode.json (rewritten after every row).
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention } from '@qkv/core';
import { webglBackend } from '../dist/index.js';

const CACHES = (process.env.QKV_BENCH_CACHES ?? '1024,4096,8192,16384').split(',').map(Number);
const STEPS = Number(process.env.QKV_BENCH_STEPS ?? 7);
const SHAPES = [
  { key: 'mha', label: 'd=512 h=8', d: 512, H: 8, KVH: 8 },
  { key: 'gqa', label: 'd=2048 H=16 KVH=4 hd=128', d: 2048, H: 16, KVH: 4 },
].filter((s) => (process.env.QKV_BENCH_SHAPES ?? 'mha,gqa').split(',').includes(s.key));
const seeded = (shape, seed) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32 - 0.5) * 0.2;
  }
  return { shape, data };
};
const registry = new BackendRegistry().register(webglBackend).register(cpuBackend);
// The packed fused programs hold a cache as one texture of B·capacity rows: a session whose
// capacity passes MAX_TEXTURE_SIZE runs the gpu.js kernels instead (README, "Limits"), ~30× slower
// per step. So the sessions stop at the limit, and a cache that would not leave room for the
// steps is measured at the largest length that does (the row prints the length it ran at).
const available = await webglBackend.isAvailable();
const maxRows = Number(/MAX_TEXTURE_SIZE (\d+)/.exec(available.detail ?? '')?.[1] ?? Number.POSITIVE_INFINITY);
const maxLength = Math.min(Math.max(...CACHES) + STEPS + 4, maxRows);
const lengthFor = (cache) => Math.min(cache, maxLength - STEPS - 1);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const rows = [];
const resultsDir = fileURLToPath(new URL('results/', import.meta.url));
mkdirSync(resultsDir, { recursive: true });
const save = () =>
  writeFileSync(
    `${resultsDir}decode.json`,
    `${JSON.stringify({ date: new Date().toISOString(), lpThreads: process.env.LP_NUM_THREADS ?? 'default', steps: STEPS, rows }, null, 2)}\n`,
  );
for (const { label, d, H, KVH } of SHAPES) {
  const hd = d / H;
  const weights = {
    wq: seeded([d, H * hd], 1),
    wk: seeded([d, KVH * hd], 2),
    wv: seeded([d, KVH * hd], 3),
    wo: seeded([H * hd, d], 4),
  };
  const config = { dModel: d, numHeads: H, numKVHeads: KVH, causal: true, bias: false };
  const make = async (backend, reg = registry) => {
    const attn = await createAttention(config, weights, { registry: reg, backend });
    return { attn, session: attn.createSession({ maxLength }) };
  };
  const impls = { webgl: await make('webgl'), cpu: await make('cpu') };
  if (process.env.QKV_BENCH_BASELINE) {
    const { resolve } = await import('node:path');
    const { pathToFileURL } = await import('node:url');
    const base = await import(pathToFileURL(resolve(process.env.QKV_BENCH_BASELINE)).href);
    impls.before = await make('webgl', new BackendRegistry().register(base.webglBackend));
  }
  const shapeRows = [];
  for (const asked of CACHES) {
    const cache = lengthFor(asked);
    for (const { session } of Object.values(impls)) {
      while (session.length < cache) await session.step(seeded([1, Math.min(512, cache - session.length), d], 9));
    }
    const ms = Object.fromEntries(Object.keys(impls).map((k) => [k, []]));
    for (let s = -1; s < STEPS; s++) {
      for (const [name, { session }] of Object.entries(impls)) {
        const t0 = performance.now();
        const r = await session.step(seeded([1, 1, d], 100 + s));
        if (!r.fused) throw new Error(`${name}: the decode step left the fused path`);
        if (s >= 0) ms[name].push(performance.now() - t0);
      }
    }
    const row = {
      shape: label,
      cache,
      asked,
      webgl: median(ms.webgl),
      cpu: median(ms.cpu),
      before: ms.before && median(ms.before),
    };
    rows.push(row);
    shapeRows.push(row);
    save();
    const before =
      row.before === undefined
        ? ''
        : `  before ${row.before.toFixed(1).padStart(7)} ms  webgl/before ${(row.webgl / row.before).toFixed(3)}`;
    console.log(
      `${label} cache ${String(cache).padStart(5)}: webgl ${row.webgl.toFixed(1).padStart(7)} ms  cpu ${row.cpu.toFixed(2).padStart(6)} ms  webgl/cpu ${(row.webgl / row.cpu).toFixed(1)}${before}`,
    );
  }
  const [a, b] = [shapeRows[0], shapeRows[shapeRows.length - 1]];
  const per1k = (k) => ((b[k] - a[k]) / (b.cache - a.cache)) * 1024;
  console.log(
    `${label}, LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? 'default'}: per 1k more keys, webgl +${per1k('webgl').toFixed(2)} ms, cpu +${per1k('cpu').toFixed(3)} ms (${STEPS} steps per cell, medians)`,
  );
  for (const { session, attn } of Object.values(impls)) {
    await session.dispose();
    await attn.dispose();
  }
}
process.exit(0);
