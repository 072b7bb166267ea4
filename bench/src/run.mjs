// `pnpm bench`: every qkv backend and the peers a user would pick instead, same inputs, same run.
// Each (implementation, config) runs in its own process (child.mjs) so peak RSS is its own and
// one crash or OOM cannot take the others down. Configs run one after another with every
// implementation back to back, so the ratios compare numbers taken under the same machine load.
//
//   node src/run.mjs [--only qkv-cpu,ort-mha] [--configs 128,1024] [--runs 5] [--out NAME]
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ceilingGoals, ceilingLines, cpuTimeTable, fractionsTable } from './ceiling-report.mjs';
import { renderChart } from './chart.mjs';
import { IMPLEMENTATIONS } from './impls.mjs';
import { flopsOf } from './problem.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const resultsDir = join(here, '..', 'results');
const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};

/** The issue's configs (both masks), then the long ones for the memory goal. */
const BASE = [
  [128, 256, 4],
  [512, 512, 8],
  [1024, 768, 12],
  [2048, 768, 12],
  [4096, 512, 8],
];
const CONFIGS = [
  ...BASE.flatMap(([L, d, h]) => [false, true].map((causal) => ({ L, d, h, causal }))),
  { L: 8192, d: 512, h: 8, causal: false },
  { L: 8192, d: 512, h: 8, causal: true },
  { L: 16384, d: 512, h: 8, causal: true },
].filter((c) => !arg('configs') || arg('configs').split(',').map(Number).includes(c.L));
const IMPLS = Object.keys(IMPLEMENTATIONS).filter((n) => !arg('only') || arg('only').split(',').includes(n));
const RUNS = Number(arg('runs') ?? 5);
/** Output name under results/: NAME.json and NAME.svg (default: latest.json, chart.svg). */
const OUT = arg('out');

/** A child over this RSS is killed (the machine is shared; a score tensor at L = 16384 is 8 GiB). */
const RSS_CAP_MB = 6144;
/** Wall-clock cap per child. */
const TIMEOUT_S = 300;
/** Skip a child whose expected time (1 + RUNS runs at its last measured speed) is over this. */
const BUDGET_S = 150;

const label = (c) => `L=${c.L} d=${c.d} h=${c.h}${c.causal ? ' causal' : ''}`;

/** Why an implementation is not run on a config, or null. */
function skipReason(impl, c, done) {
  const spec = IMPLEMENTATIONS[impl];
  if (impl === 'qkv-cpu-reference' && c.L > 1024) return 'reference path: only run up to L = 1024 (≈1 GFLOP/s)';
  const scoreGiB = (c.h * c.L * c.L * 4) / 2 ** 30;
  if (spec.materialises && scoreGiB * 2 * 1024 > RSS_CAP_MB) {
    return `not run: materialises [h, L, L] score tensors (${scoreGiB.toFixed(0)} GiB each), over the ${RSS_CAP_MB / 1024} GiB cap`;
  }
  const prev = done.filter((r) => r.impl === impl && r.causal === c.causal && r.status === 'ok').at(-1);
  if (prev) {
    const estS = ((1 + RUNS) * flopsOf(c)) / (prev.gflops * 1e9);
    if (estS > BUDGET_S)
      return `skipped: ≈${estS.toFixed(0)} s expected at its ${prev.gflops.toFixed(2)} GFLOP/s (L=${prev.L}), budget ${BUDGET_S} s`;
  }
  const failed = done.find(
    (r) => r.impl === impl && r.causal === c.causal && r.L < c.L && /timeout|killed/.test(r.status),
  );
  if (failed) return `skipped: ${failed.status} at L=${failed.L}`;
  return null;
}

function rssMB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function runChild(impl, c, script = 'child.mjs') {
  // ceiling.mjs prints a line starting {"status" and takes no arguments.
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, script), impl, JSON.stringify({ ...c, runs: RUNS })], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let killed = null;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const poll = setInterval(() => {
      const rss = rssMB(child.pid);
      if (rss > RSS_CAP_MB && !killed) {
        killed = `killed: RSS over ${RSS_CAP_MB} MB`;
        child.kill('SIGKILL');
      }
    }, 200);
    const timer = setTimeout(() => {
      killed = `timeout: over ${TIMEOUT_S} s`;
      child.kill('SIGKILL');
    }, TIMEOUT_S * 1e3);
    child.on('exit', (code, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      const line = out
        .trim()
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{"impl"') || l.startsWith('{"status"'));
      if (killed) return resolve({ impl, ...c, status: killed });
      if (line) return resolve(JSON.parse(line));
      resolve({
        impl,
        ...c,
        status: 'crashed',
        detail: `exit ${code ?? signal}: ${err.trim().split('\n').at(-1) ?? ''}`.slice(0, 300),
      });
    });
  });
}

function progress(i, n, what, t0) {
  if (!process.stderr.isTTY) {
    if (i >= n) return;
    process.stderr.write(`[${i + 1}/${n}] ${what}\n`);
    return;
  }
  const width = 30;
  const filled = Math.round((width * i) / n);
  const elapsed = ((Date.now() - t0) / 1e3).toFixed(0);
  process.stderr.write(`\r\x1b[K[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${i}/${n} ${elapsed}s  ${what}`);
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadAverageAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

const cell = (r) => (r?.status === 'ok' ? r.gflops.toFixed(r.gflops < 10 ? 2 : 1) : r ? '—' : '');
function table(results) {
  const impls = IMPLS;
  const head = ['config', ...impls];
  const rows = CONFIGS.map((c) => [
    label(c),
    ...impls.map((n) => {
      const r = results.find((x) => x.impl === n && x.L === c.L && x.causal === c.causal);
      return r?.status === 'ok' ? `${cell(r)} (${r.peakRssMB.toFixed(0)} MB)` : r ? r.status.split(':')[0] : '';
    }),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((x, i) => x.padEnd(w[i])).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/**
 * The best causal/non-causal time ratio a whole layer can have if the attention core does exactly
 * half its work: the four projections (8·L·d²) do not shrink, Q·Kᵀ and P·V (4·L²·d) halve.
 * 0.80 at L = 1024, d = 768; 0.60 at L = 4096, d = 512.
 */
function wholeLayerBound({ L, d }) {
  return (8 * L * d * d + 2 * L * L * d) / (8 * L * d * d + 4 * L * L * d);
}

/** The issue's goals as ratios within this run (L ≥ 1024, per config; min over configs). */
function goals(results, core) {
  const get = (impl, c) =>
    results.find((r) => r.impl === impl && r.L === c.L && r.causal === c.causal && r.status === 'ok');
  const base = CONFIGS.filter((c) => c.L >= 1024 && c.L <= 4096);
  const ratio = (a, b, c) => {
    const x = get(a, c);
    const y = get(b, c);
    return x && y ? x.gflops / y.gflops : null;
  };
  const ortBest = (c) => {
    const r = [get('ort-mha', c), get('ort-standard', c)].filter(Boolean);
    return r.length ? Math.max(...r.map((x) => x.gflops)) : null;
  };
  const per = (f) => base.map((c) => ({ config: label(c), value: f(c) })).filter((x) => x.value !== null);
  const min = (xs) => (xs.length ? Math.min(...xs.map((x) => x.value)) : null);
  const out = {};
  const g = (name, target, values, cmp = '≥') => {
    const m = cmp === '≥' ? min(values) : values.length ? Math.max(...values.map((x) => x.value)) : null;
    out[name] = {
      target: `${cmp} ${target}`,
      worst: m,
      met: m === null ? null : cmp === '≥' ? m >= target : m <= target,
      perConfig: values,
    };
  };
  g(
    'workers / onnxruntime (best graph)',
    0.2,
    per((c) => (get('qkv-workers', c) && ortBest(c) ? get('qkv-workers', c).gflops / ortBest(c) : null)),
  );
  g(
    'workers / tfjs-wasm',
    8,
    per((c) => ratio('qkv-workers', 'tfjs-wasm', c)),
  );
  g(
    'cpu / tfjs-wasm',
    3,
    per((c) => ratio('qkv-cpu', 'tfjs-wasm', c)),
  );
  for (const impl of ['qkv-cpu', 'qkv-workers']) {
    const vals = CONFIGS.filter((c) => c.L >= 1024 && c.causal)
      .map((c) => {
        const a = get(impl, c);
        const b = get(impl, { ...c, causal: false });
        return { config: label(c), value: a && b ? a.medianS / b.medianS : null, bound: wholeLayerBound(c) };
      })
      .filter((x) => x.value !== null);
    g(
      `${impl}: attention core causal time / non-causal time`,
      0.6,
      core.filter((r) => r.impl === impl && r.status === 'ok').map((r) => ({ config: label(r), value: r.ratio })),
      '≤',
    );
    g(
      `${impl}: whole layer causal time / non-causal time (projections included; bound per config in latest.json)`,
      0.6,
      vals,
      '≤',
    );
  }
  for (const impl of ['qkv-cpu', 'qkv-workers']) {
    const r = get(impl, { L: 16384, causal: true });
    out[`${impl}: peak RSS at L=16384 d=512 h=8 causal`] = {
      target: '< 512 MB',
      worst: r ? r.peakRssMB : null,
      met: r ? r.peakRssMB < 512 : null,
    };
  }
  return out;
}

const started = Date.now();
// The machine's own limits first, in this run and this Node (ceiling.mjs), so every figure below
// is also printed as a fraction of them.
process.stderr.write('ceiling: WASM SIMD128 / relaxed-FMA peaks, onnxruntime MatMul 2048³ on 1 and 2 threads\n');
const ceilingOut = await runChild('ceiling', {}, 'ceiling.mjs');
const ceiling = ceilingOut.status === 'ok' ? ceilingOut : { status: ceilingOut.status, detail: ceilingOut.detail };
const results = [];
const jobs = CONFIGS.flatMap((c) => IMPLS.map((impl) => ({ impl, c })));
process.stderr.write(
  `qkv bench: ${IMPLS.length} implementations × ${CONFIGS.length} configs, median of ${RUNS} runs after a warm-up\n`,
);
for (const [i, { impl, c }] of jobs.entries()) {
  progress(i, jobs.length, `${impl} ${label(c)}`, started);
  const skip = skipReason(impl, c, results);
  results.push(skip ? { impl, ...c, status: skip } : await runChild(impl, c));
  // Partial results survive an interrupted run (git-ignored).
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'latest.json.tmp'), JSON.stringify(results));
}
progress(jobs.length, jobs.length, 'done', started);
process.stderr.write('\n');

// The attention core alone, causal against non-causal (core.mjs), where the causal goal lives.
const core = [];
for (const impl of IMPLS.filter((n) => n === 'qkv-cpu' || n === 'qkv-workers')) {
  for (const c of CONFIGS.filter((x) => x.L >= 1024 && x.L <= 4096 && !x.causal)) {
    process.stderr.write(`attention core ${impl} ${label(c)}\n`);
    const r = await runChild(impl, { L: c.L, d: c.d, h: c.h }, 'core.mjs');
    core.push(r.status ? r : { ...r, status: 'ok' });
  }
}

const report = {
  date: new Date().toISOString(),
  machine: machine(),
  flops: '8·L·d² + 4·L²·d per forward pass (B = 1), causal or not',
  runs: RUNS,
  implementations: Object.fromEntries(
    IMPLS.map((n) => [n, { threads: IMPLEMENTATIONS[n].threads, note: IMPLEMENTATIONS[n].note }]),
  ),
  ceiling,
  results,
  core,
  goals: { ...goals(results, core), ...ceilingGoals(results, ceiling, CONFIGS, label, process.version) },
  durationS: (Date.now() - started) / 1e3,
};
mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, `${OUT ?? 'latest'}.json`), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(resultsDir, `${OUT ?? 'chart'}.svg`), renderChart(report, CONFIGS, IMPLS, label));

console.log(
  `\nGFLOP/s (peak RSS) — ${report.machine.cpu}, ${report.machine.cores} cores, ${report.date.slice(0, 10)}\n`,
);
console.log(table(results));
if (core.length > 0) {
  console.log('\nAttention core (fused kernel alone), causal vs non-causal, median seconds:');
  for (const r of core) {
    console.log(
      r.status === 'ok'
        ? `  ${r.impl.padEnd(12)} L=${r.L} d=${r.d} h=${r.h}: ${r.causalS.toFixed(4)} / ${r.nonCausalS.toFixed(4)} = ${r.ratio.toFixed(2)}`
        : `  ${r.impl.padEnd(12)} L=${r.L}: ${r.status}`,
    );
  }
}
console.log(`\nCeiling (${process.version}, measured in this run before the table):`);
for (const l of ceilingLines(ceiling)) console.log(l);
console.log(`\nqkv as fractions of the ceilings and of onnxruntime MHA (${process.version}, this run):`);
console.log(fractionsTable(results, ceiling, CONFIGS, label));
console.log(`\nThe one-thread figures per CPU second (${process.version}, this run; robust to machine load):`);
console.log(cpuTimeTable(results, ceiling, CONFIGS, label));
console.log('\nGoals (ratios within this run):');
for (const [name, g] of Object.entries(report.goals)) {
  const v = g.worst === null ? 'n/a' : g.worst.toFixed(2);
  const bounds = (g.perConfig ?? []).filter((x) => x.bound !== undefined);
  const bound = bounds.length
    ? `; best possible if the core halves: ${bounds.map((x) => `${x.bound.toFixed(2)} (${x.config})`).join(', ')}`
    : '';
  console.log(`  ${g.met === null ? '?' : g.met ? '✓' : '✗'} ${name}: ${v} (target ${g.target}${bound})`);
}
for (const r of results.filter((x) => x.status !== 'ok' && x.detail))
  console.log(`  note: ${r.impl} ${label(r)}: ${r.status} — ${r.detail}`);
console.log(
  `\nbench/results/${OUT ?? 'latest'}.json, bench/results/${OUT ?? 'chart'}.svg (${report.durationS.toFixed(0)} s)`,
);
