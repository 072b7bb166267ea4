#!/usr/bin/env node
// `pnpm bench`: qkv's webgl backend vs tfjs-webgl on the same multi-head attention
// (d=512, h=8, L=128/512/1024) in one headless Chromium page. Chromium here renders WebGL with
// SwiftShader (software, on the CPU), so the bench is bounded: QKV_BENCH_RUNS (default 3) steady
// runs per size after the first (compile) run. Writes bench/results/webgl-vs-tfjs.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createServer } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));
const runs = Number(process.env.QKV_BENCH_RUNS ?? 3);
const sizes = process.env.QKV_BENCH_SIZES ?? '128,512,1024';
const timeoutMs = Number(process.env.QKV_BENCH_TIMEOUT_MS ?? 30 * 60_000);

const server = await createServer({
  root,
  logLevel: 'warn',
  server: { port: 0, host: '127.0.0.1' },
  optimizeDeps: {
    include: ['gpu.js', '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-webgl'],
    entries: ['bench/index.html'],
  },
});
await server.listen();
const address = server.httpServer.address();
const url = `http://127.0.0.1:${address.port}/bench/index.html?runs=${runs}&sizes=${sizes}`;
const browser = await chromium.launch({
  executablePath: process.env.QKV_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-swiftshader', '--disable-background-networking', '--disable-quic'],
});
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
    const out = { date: new Date().toISOString(), chromium: browser.version(), ...result };
    writeFileSync(new URL('results/webgl-vs-tfjs.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
    console.log('\n| L | qkv first | qkv steady | tfjs first | tfjs steady | qkv/tfjs (steady) | max abs diff |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of result.results) {
      console.log(
        `| ${r.L} | ${r.qkv.firstMs.toFixed(0)} ms | ${r.qkv.steadyMs.toFixed(0)} ms | ${r.tfjs.firstMs.toFixed(0)} ms | ${r.tfjs.steadyMs.toFixed(0)} ms | ${r.ratio.toFixed(2)} | ${r.maxAbsDiff.toExponential(1)} |`,
      );
    }
    // tfjs must agree with qkv before a time means anything.
    const bad = result.results.filter((r) => !(r.maxAbsDiff <= 1e-3 * Math.max(1, r.maxAbs)));
    if (bad.length) {
      console.error(`tfjs and qkv disagree at L=${bad.map((r) => r.L).join(', ')}`);
      status = 1;
    }
  }
} finally {
  await browser.close();
  await server.close();
}
process.exit(status);
