// Every qkv figure of a run as a fraction of the machine's own limits measured in that run
// (ceiling.mjs), and the kernel goals stated against them and against onnxruntime (issue #19).

const fmt = (x, digits = 2) => (x === null || x === undefined ? 'n/a' : x.toFixed(digits));
const ok = (results, impl, c) =>
  results.find((r) => r.impl === impl && r.L === c.L && r.causal === c.causal && r.status === 'ok') ?? null;

const div = (a, b) => (a && b ? a / b : null);

/** A padded markdown table. */
function markdownTable(head, rows) {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((x, i) => x.padEnd(w[i])).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The ceiling figures as text lines (wall time; per CPU second in brackets). */
export function ceilingLines(ceiling) {
  if (ceiling?.status !== 'ok') return [`  not measured: ${ceiling?.detail ?? ceiling?.status ?? 'no result'}`];
  return [
    `  WASM SIMD128 mul+add peak, 1 thread (register-only loop): ${fmt(ceiling.wasmSimd128, 1)} GFLOP/s [${fmt(ceiling.wasmSimd128Cpu, 1)} per CPU s]`,
    `  WASM relaxed-SIMD FMA peak, 1 thread: ${ceiling.wasmRelaxedFma === null ? `n/a (${ceiling.node} has no relaxed SIMD)` : `${fmt(ceiling.wasmRelaxedFma, 1)} GFLOP/s [${fmt(ceiling.wasmRelaxedFmaCpu, 1)} per CPU s]`}`,
    `  onnxruntime MatMul 2048³: ${fmt(ceiling.ortMatMul1, 1)} GFLOP/s on 1 thread [${fmt(ceiling.ortMatMul1Cpu, 1)} per CPU s], ${fmt(ceiling.ortMatMul2, 1)} on 2 threads`,
  ];
}

/**
 * One row per config: qkv-cpu as fractions of the one-thread ceilings and of onnxruntime MHA on one
 * thread; qkv-workers as fractions of the two-thread MatMul and of onnxruntime MHA on two threads.
 */
export function fractionsTable(results, ceiling, configs, label) {
  const c1 = ceiling?.status === 'ok' ? ceiling : {};
  const head = [
    'config',
    'cpu GFLOP/s (build)',
    '÷ SIMD128 peak',
    '÷ FMA peak',
    '÷ ort MatMul 1t',
    '÷ ort-mha 1t',
    'workers GFLOP/s',
    '÷ ort MatMul 2t',
    '÷ ort-mha 2t',
  ];
  const rows = configs.map((c) => {
    const cpu = ok(results, 'qkv-cpu', c);
    const workers = ok(results, 'qkv-workers', c);
    const mha1 = ok(results, 'ort-mha-1t', c);
    const mha2 = ok(results, 'ort-mha', c);
    return [
      label(c),
      cpu ? `${fmt(cpu.gflops, 1)} (${cpu.kernelBuild ?? '?'})` : '',
      fmt(div(cpu?.gflops, c1.wasmSimd128)),
      fmt(div(cpu?.gflops, c1.wasmRelaxedFma)),
      fmt(div(cpu?.gflops, c1.ortMatMul1)),
      fmt(div(cpu?.gflops, mha1?.gflops)),
      workers ? fmt(workers.gflops, 1) : '',
      fmt(div(workers?.gflops, c1.ortMatMul2)),
      fmt(div(workers?.gflops, mha2?.gflops)),
    ];
  });
  return markdownTable(head, rows);
}

/**
 * The one-thread figures per CPU second of their process (`gflopsPerCpuS`): on a machine shared
 * with other work the scheduler's share changes from child to child, the CPU time of the work
 * much less, so these ratios hold where the wall-time ones above do not.
 */
export function cpuTimeTable(results, ceiling, configs, label) {
  const c1 = ceiling?.status === 'ok' ? ceiling : {};
  const head = [
    'config',
    'cpu GFLOP/CPU-s (build)',
    '÷ SIMD128 peak',
    '÷ FMA peak',
    '÷ ort MatMul 1t',
    '÷ ort-mha 1t',
    'simd128 build ÷ SIMD128 peak',
  ];
  const rows = configs.map((c) => {
    const run = ok(results, 'qkv-cpu', c);
    const cpu = run?.gflopsPerCpuS;
    const simd = run?.kernelBuild === 'simd128' ? cpu : ok(results, 'qkv-cpu-simd128', c)?.gflopsPerCpuS;
    return [
      label(c),
      cpu ? `${fmt(cpu, 1)} (${run.kernelBuild ?? '?'})` : '',
      fmt(div(cpu, c1.wasmSimd128Cpu)),
      fmt(div(cpu, c1.wasmRelaxedFmaCpu)),
      fmt(div(cpu, c1.ortMatMul1Cpu)),
      fmt(div(cpu, ok(results, 'ort-mha-1t', c)?.gflopsPerCpuS)),
      fmt(div(simd, c1.wasmSimd128Cpu)),
    ];
  });
  return markdownTable(head, rows);
}

/**
 * Issue #19's goals (L ≥ 1024, non-causal, ratios within this run): cpu ≥ 0.5× onnxruntime MHA on
 * one thread and workers ≥ 0.45× it on two (stated for Node 22); with the SIMD128 build (Node 20)
 * cpu ≥ 0.8× the measured SIMD128 peak. Each is labelled with the Node it was measured on.
 */
export function ceilingGoals(results, ceiling, configs, label, node) {
  const base = configs.filter((c) => c.L >= 1024 && !c.causal);
  const goal = (target, perConfig) => {
    const values = perConfig.filter((x) => x.value !== null);
    const worst = values.length ? Math.min(...values.map((x) => x.value)) : null;
    return { target: `≥ ${target}`, worst, met: worst === null ? null : worst >= target, perConfig: values };
  };
  const per = (f) => base.map((c) => ({ config: label(c), value: f(c) }));
  const ratio =
    (a, b, key = 'gflops') =>
    (c) => {
      const x = ok(results, a, c)?.[key];
      const y = ok(results, b, c)?.[key];
      return x && y ? x / y : null;
    };
  const out = {
    [`[${node}] cpu / onnxruntime MHA, 1 thread (L ≥ 1024, non-causal)`]: goal(
      0.5,
      per(ratio('qkv-cpu', 'ort-mha-1t')),
    ),
    [`[${node}] cpu / onnxruntime MHA, 1 thread, per CPU second (L ≥ 1024, non-causal)`]: goal(
      0.5,
      per(ratio('qkv-cpu', 'ort-mha-1t', 'gflopsPerCpuS')),
    ),
    [`[${node}] workers / onnxruntime MHA, 2 threads (L ≥ 1024, non-causal)`]: goal(
      0.45,
      per(ratio('qkv-workers', 'ort-mha')),
    ),
  };
  const simd128Run = (c) =>
    ok(results, 'qkv-cpu', c)?.kernelBuild === 'simd128'
      ? ok(results, 'qkv-cpu', c)
      : ok(results, 'qkv-cpu-simd128', c);
  for (const [key, peakKey, how] of [
    ['gflops', 'wasmSimd128', ''],
    ['gflopsPerCpuS', 'wasmSimd128Cpu', ', per CPU second'],
  ]) {
    const peak = ceiling?.status === 'ok' ? ceiling[peakKey] : null;
    out[`[${node}] cpu (SIMD128 build) / WASM SIMD128 peak${how} (L ≥ 1024, non-causal)`] = goal(
      0.8,
      per((c) => {
        const r = simd128Run(c)?.[key];
        return r && peak ? r / peak : null;
      }),
    );
  }
  return out;
}
