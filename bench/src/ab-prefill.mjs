// Issue #17's "prefill and full-sequence speed unchanged (±5%)": this checkout's cpu and workers
// backends against a baseline checkout's (built: `pnpm turbo run build --filter=@qkv/backend-workers`
// there), loaded into one process and timed in interleaved rounds (the order flips every round),
// so both sides see the same load. Each cell is the median of per-round ratios this / baseline.
//
//   node src/ab-prefill.mjs --baseline /path/to/old/checkout [--L 2048] [--rounds 7] [--backends cpu,workers]
//
// Cases (d = 512, h = 8): `run()` causal and non-causal over L tokens, and a session prefilled in
// 512-token steps. Outputs of both sides are compared (max |Δ|) before timing.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { THREADS } from './impls.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const baselineDir = arg('baseline');
if (!baselineDir) {
  console.error('ab-prefill: --baseline DIR (a built checkout to compare against) is required');
  process.exit(2);
}
const L = Number(arg('L', 2048));
const ROUNDS = Number(arg('rounds', 7));
const BACKENDS = arg('backends', 'cpu,workers').split(',');
const CHUNK = 512;
const d = 512;
const H = 8;

const load = async (root) => ({
  core: await import(join(root, 'packages/core/dist/index.js')),
  cpu: await import(join(root, 'packages/backend-cpu/dist/index.js')),
  workers: await import(join(root, 'packages/backend-workers/dist/index.js')),
});
const sides = { baseline: await load(resolve(baselineDir)), current: await load(resolve(here, '../..')) };

/** Seeded ±0.1 values (an LCG): contents do not change the cost. */
const seeded = (shape, seed) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32 - 0.5) * 0.2;
  }
  return { shape, data };
};
const weights = { wq: seeded([d, d], 1), wk: seeded([d, d], 2), wv: seeded([d, d], 3), wo: seeded([d, d], 4) };
const E = seeded([1, L, d], 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

for (const backend of BACKENDS) {
  const attn = {};
  for (const causal of [true, false]) {
    for (const [side, m] of Object.entries(sides)) {
      const registry = new m.core.BackendRegistry().register(m.cpu.cpuBackend).register(m.workers.workersBackend);
      attn[`${side}:${causal}`] = await m.core.createAttention(
        { dModel: d, numHeads: H, causal, bias: false },
        weights,
        {
          registry,
          backend,
          ...(backend === 'workers' ? { backendOptions: { threads: THREADS } } : {}),
        },
      );
    }
  }
  const cases = {
    'run() causal': (side) => attn[`${side}:true`].run({ query: E }),
    'run() non-causal': (side) => attn[`${side}:false`].run({ query: E }),
    'session prefill (512-token steps)': async (side) => {
      const s = attn[`${side}:true`].createSession({ maxLength: L });
      for (let at = 0; at < L; at += CHUNK)
        await s.step({ shape: [1, CHUNK, d], data: E.data.subarray(at * d, (at + CHUNK) * d) });
      await s.dispose();
    },
  };
  let diff = 0;
  for (const causal of [true, false]) {
    const a = (await attn[`baseline:${causal}`].run({ query: E })).attention.data;
    const b = (await attn[`current:${causal}`].run({ query: E })).attention.data;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  const ratios = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, f] of Object.entries(cases)) {
      const t = {};
      for (const side of r % 2 ? ['current', 'baseline'] : ['baseline', 'current']) {
        const t0 = performance.now();
        await f(side);
        t[side] = performance.now() - t0;
      }
      ratios[name].push(t.current / t.baseline);
    }
  }
  console.log(`${backend}, d=${d} h=${H}, L=${L}, ${ROUNDS} rounds, max |Δ attention| ${diff.toExponential(1)}:`);
  for (const [name, xs] of Object.entries(ratios))
    console.log(
      `  ${name}: current / baseline ${median(xs).toFixed(3)} (range ${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`,
    );
  for (const a of Object.values(attn)) await a.dispose();
}
