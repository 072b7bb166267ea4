// One (implementation, config) in its own process: check against qkv's reference path on a
// small problem, build the real one, warm up, time ≥ MIN_RUNS runs, report median and peak RSS
// as one JSON line on stdout.
import { performance } from 'node:perf_hooks';
import { IMPLEMENTATIONS } from './impls.mjs';
import { flopsOf, makeProblem } from './problem.mjs';

const [implName, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
const impl = IMPLEMENTATIONS[implName];
const MIN_RUNS = config.runs ?? 5;
/** The conformance suite's rule: |a − e| ≤ atol + rtol·|e|. */
const ATOL = 1e-4;
const RTOL = 1e-3;
/** Longest sequence whose timed runs get a fresh input each (see below). */
const FRESH_INPUT_MAX_L = 4096;

function report(obj) {
  process.stdout.write(
    `${JSON.stringify({ impl: implName, ...config, ...obj, peakRssMB: process.resourceUsage().maxRSS / 1024 })}\n`,
  );
}

try {
  // 1. Numerical agreement with qkv (reference kernels) on a small problem with the same mask.
  const small = makeProblem({ L: 48, d: 64, h: 4, causal: config.causal }, 2);
  const ref = await IMPLEMENTATIONS['qkv-cpu-reference'].create(small);
  const expected = await ref.run();
  await ref.dispose();
  const probe = await impl.create(small);
  const got = await probe.run();
  await probe.dispose();
  let maxAbsErr = 0;
  let bad = 0;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(got[i] - expected[i]);
    if (!(err <= ATOL + RTOL * Math.abs(expected[i]))) bad++;
    if (!(err <= maxAbsErr)) maxAbsErr = err;
  }
  if (bad > 0) {
    report({
      status: 'disagrees',
      maxAbsErr,
      detail: `${bad} of ${expected.length} outputs outside atol ${ATOL} + rtol ${RTOL}`,
    });
    process.exit(0);
  }

  // 2. The timed problem.
  const problem = makeProblem(config, 1);
  const run = await impl.create(problem);
  // Every run gets a fresh input, made before the clock starts, as every forward pass of a model
  // does. Re-running one unchanged input object is a harness artifact: a JS implementation then
  // allocates nothing but its outputs, V8 collects so rarely that each output lands on fresh
  // pages, and a fresh page costs ~14 µs on this VM (measured: ~7 ms per run at L = 512, d = 512).
  // Not for the memory configs (L ≥ 8192): there each run's own outputs (≥ 32 MB) keep the
  // collector busy anyway, and a second input copy would charge the harness's memory to the
  // implementation's peak RSS (measured: +30 MB at L = 16384).
  if (config.L > FRESH_INPUT_MAX_L) run.next = undefined;
  run.next?.();
  const t0 = performance.now();
  await run.run(); // warm-up: JIT, thread start, wasm compile, allocator growth
  const warmupS = (performance.now() - t0) / 1e3;
  const times = [];
  // CPU seconds of the whole process per run (every thread): for a one-thread implementation the
  // work itself, whatever share of the cores the scheduler gave it on a loaded machine.
  const cpuTimes = [];
  for (let r = 0; r < MIN_RUNS; r++) {
    run.next?.();
    const c = process.cpuUsage();
    const t = performance.now();
    await run.run();
    times.push((performance.now() - t) / 1e3);
    const dc = process.cpuUsage(c);
    cpuTimes.push((dc.user + dc.system) / 1e6);
  }
  await run.dispose();
  times.sort((a, b) => a - b);
  const medianS = times[times.length >> 1];
  cpuTimes.sort((a, b) => a - b);
  const medianCpuS = cpuTimes[cpuTimes.length >> 1];
  const kernelBuild = run.kernelBuild;
  report({
    status: 'ok',
    maxAbsErr,
    warmupS,
    times,
    medianS,
    gflops: flopsOf(config) / medianS / 1e9,
    medianCpuS,
    gflopsPerCpuS: flopsOf(config) / medianCpuS / 1e9,
    kernelBuild,
  });
  process.exit(0);
} catch (e) {
  report({ status: 'error', detail: String(e?.message ?? e).slice(0, 300) });
  process.exit(0);
}
