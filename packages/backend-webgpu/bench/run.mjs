#!/usr/bin/env node
// `pnpm bench`: qkv's webgpu backend vs @tensorflow/tfjs-backend-webgpu vs onnxruntime-web's
// WebGPU EP on the same multi-head attention (d=512, h=8, L=128/512/1024) in one headless
// Chromium page. With no GPU (here, CI) Chromium's WebGPU runs on SwiftShader (software Vulkan on
// the CPU), so the bench is bounded: QKV_BENCH_RUNS (default 3) steady runs per size after the
// first. QKV_BENCH_GPU=1 launches Chromium for a real GPU (its Vulkan driver, no SwiftShader):
// bench/real-gpu.sh. Writes bench/results/webgpu-vs-tfjs-ort[-gpu].json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromiumArgs, chromiumPath, webgpuChromiumArgs } from '@qkv/chromium';
import { chromium } from 'playwright-core';
import { createServer } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));
const repo = fileURLToPath(new URL('../../..', import.meta.url));
const runs = Number(process.env.QKV_BENCH_RUNS ?? 3);
const sizes = process.env.QKV_BENCH_SIZES ?? '128,512,1024';
const timeoutMs = Number(process.env.QKV_BENCH_TIMEOUT_MS ?? 60 * 60_000);
const realGpu = process.env.QKV_BENCH_GPU === '1';

const server = await createServer({
  root,
  logLevel: 'warn',
  server: { port: 0, host: '127.0.0.1', fs: { allow: [repo] } },
  optimizeDeps: {
    include: ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-webgpu'],
    exclude: ['onnxruntime-web'],
    entries: ['bench/index.html'],
  },
});
await server.listen();
const address = server.httpServer.address();
const url = `http://127.0.0.1:${address.port}/bench/index.html?runs=${runs}&sizes=${sizes}`;
// A real GPU: Chromium's Vulkan backend on the machine's driver instead of SwiftShader.
const args = realGpu
  ? [
      ...chromiumArgs.filter((a) => a !== '--enable-unsafe-swiftshader'),
      ...webgpuChromiumArgs,
      '--enable-features=Vulkan',
      '--ignore-gpu-blocklist',
    ]
  : [...chromiumArgs, ...webgpuChromiumArgs];
const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
let status = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log(m.text()));
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.__bench !== undefined, null, { timeout: timeoutMs, polling: 1000 });
  const result = await page.evaluate(() => window.__bench);
  if (result.error) {
    status = 1;
  } else {
    mkdirSync(new URL('results', import.meta.url), { recursive: true });
    const out = { date: new Date().toISOString(), chromium: browser.version(), realGpu, ...result };
    const file = `results/webgpu-vs-tfjs-ort${realGpu ? '-gpu' : ''}.json`;
    writeFileSync(new URL(file, import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
    const f = (x) => `${x.toFixed(0)} ms`;
    console.log(`\nadapter: ${result.adapter}`);
    console.log(
      '| L | qkv first | tfjs first | ort first | qkv steady | tfjs steady | ort steady | qkv/tfjs (goal ≤ 0.5) | qkv/ort (goal ≤ 1.0) |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const r of result.results) {
      console.log(
        `| ${r.L} | ${f(r.firstMs.qkv)} | ${f(r.firstMs.tfjs)} | ${f(r.firstMs.ort)} | ${f(r.steadyMs.qkv)} | ${f(r.steadyMs.tfjs)} | ${f(r.steadyMs.ort)} | ${r.qkvOverTfjs.toFixed(2)} | ${r.qkvOverOrt.toFixed(2)} |`,
      );
    }
    // qkv must agree with tfjs and with onnxruntime's own CPU (wasm) EP before a time means
    // anything; where ort's WebGPU EP disagrees with its wasm EP, that is said next to its time.
    const tol = (r) => 1e-3 * Math.max(1, r.maxAbs);
    const bad = result.results.filter((r) => !(Math.max(r.maxAbsDiff.tfjs, r.maxAbsDiff.ortWasm) <= tol(r)));
    if (bad.length) {
      console.error(`qkv disagrees with tfjs or onnxruntime (wasm) at L=${bad.map((r) => r.L).join(', ')}`);
      status = 1;
    }
    for (const r of result.results.filter((x) => !(x.maxAbsDiff.ort <= tol(x)))) {
      console.log(
        `note: at L=${r.L} onnxruntime-web's WebGPU EP differs from its own wasm EP (and from qkv and tfjs) by up to ${r.maxAbsDiff.ort.toExponential(1)}: its time is for a wrong result`,
      );
    }
  }
} finally {
  await browser.close();
  await server.close();
}
process.exit(status);
