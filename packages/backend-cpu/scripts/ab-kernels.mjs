// A/B of two versions of the kernels source, the way the tuning constants were chosen:
//
//   node scripts/ab-kernels.mjs A.ts B.ts [--features simd,relaxed-simd] [--pairs 25] [--causal]
//
// A and B are copies of assembly/kernels.ts (one constant or loop changed). Both are compiled
// with the build's own flags (compile.mjs) and `features`, then timed interleaved in one
// process on the shapes that carry the FLOPs of L = 1024, d = 768, h = 12: `gemm` of 256 rows of
// x by a packed W [768, 768] (one chunk of a projection) and `attention` of 256 queries of one
// head over 1024 keys (hd = 64; with --causal the chunk at query 512, so it crosses the
// diagonal). Each sample is 3 calls timed by this process's CPU time, not wall time: on a
// shared machine the scheduler's share changes from sample to sample, the CPU time of the work
// much less. Prints the median B/A time ratio of the pairs and its range, checks that A and B
// compute the same (max |A − B| on the outputs), and gives each figure as a fraction of the
// build's peak measured in the same process (bench/src/ceiling.mjs: the register-only loop with
// 12 accumulator chains, and with 8, the chains the 4 × 8 micro-kernel holds).
import { parseArgs } from 'node:util';
import { wasmPeak } from '../../../bench/src/ceiling.mjs';
import { compileKernels } from './compile.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    features: { type: 'string', default: 'simd,relaxed-simd' },
    pairs: { type: 'string', default: '25' },
    causal: { type: 'boolean', default: false },
  },
});
if (positionals.length !== 2) throw new Error('usage: ab-kernels.mjs A.ts B.ts [--features …] [--pairs n] [--causal]');
const PAIRS = Number(values.pairs);
const L = 1024;
const D = 768;
const hd = 64;
const CHUNK = 256;

/** Deterministic uniform [−0.5, 0.5). */
function rng(seed) {
  return () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647 - 0.5;
  };
}

async function setup(source) {
  const bytes = await compileKernels(source, values.features);
  const { exports: e } = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
    env: {
      abort() {
        throw new Error('abort');
      },
    },
  });
  let top = (e.heapBase() + 15) & ~15;
  const alloc = (n) => {
    const p = top;
    top += (n * 4 + 15) & ~15;
    return p;
  };
  const [w, wp, bias, a, c] = [D * D, D * D, D, CHUNK * D, CHUNK * D].map(alloc);
  const [kRaw, kp, vp, keyBias, q, o, m, l, s] = [
    L * hd,
    L * hd,
    L * hd,
    L,
    CHUNK * hd,
    CHUNK * hd,
    CHUNK,
    CHUNK,
    256 * 256,
  ].map(alloc);
  e.memory.grow(Math.ceil((top - e.memory.buffer.byteLength) / 65536) + 1);
  const f = new Float32Array(e.memory.buffer);
  const r = rng(1);
  for (const [p, n] of [
    [w, D * D],
    [bias, D],
    [a, CHUNK * D],
    [kRaw, L * hd],
  ])
    for (let i = 0; i < n; i++) f[p / 4 + i] = r();
  e.packPanels(w, D, D, D, wp);
  e.packTransposed(kRaw, L, hd, hd, L, hd, kp);
  e.packPanels(kRaw, L, hd, hd, vp);
  const qIn = Float32Array.from({ length: CHUNK * hd }, r);
  const iStart = values.causal ? 512 : 0;
  return {
    gemm: () => e.gemm(a, CHUNK, D, wp, D, bias, c),
    attention: () => {
      f.set(qIn, q / 4); // the kernel scales Q in place
      e.attention(q, CHUNK, hd, kp, vp, L, keyBias, 0, 0, o, m, l, s, 0.125, values.causal ? 1 : 0, iStart, 0, 0);
    },
    out: { gemm: () => f.slice(c / 4, c / 4 + CHUNK * D), attention: () => f.slice(o / 4, o / 4 + CHUNK * hd) },
  };
}

const ab = [await setup(positionals[0]), await setup(positionals[1])];
const cpuMs = (fn) => {
  const t = process.cpuUsage();
  fn();
  fn();
  fn();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 3e3;
};
const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
// The build's multiply-add: relaxed_madd where the features have relaxed SIMD, else mul + add.
// With FMA the micro-kernel's 8 accumulators are 8 chains of the peak loop's kind; with mul + add
// only the adds are on its chains (the peak loop's run through both), so no 8-chain figure there.
const fused = values.features.split(',').includes('relaxed-simd');
const peak = wasmPeak(fused).cpu;
const tilePeak = fused ? wasmPeak(fused, 7, 8).cpu : null;
console.log(
  `peak (${fused ? 'FMA' : 'mul + add'}, per CPU second): ${peak.toFixed(1)} GFLOP/s with 12 chains` +
    (fused ? `, ${tilePeak.toFixed(1)} with 8 (the 4 × 8 tile's accumulators)` : ''),
);
for (const kernel of ['gemm', 'attention']) {
  // Warm-up: V8 tiers hot functions up from its baseline compiler after some calls.
  for (const v of ab) for (let i = 0; i < 40; i++) v[kernel]();
  const [x, y] = ab.map((v) => v.out[kernel]());
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i] - y[i]));
  const ratios = [];
  const ms = [[], []];
  for (let p = 0; p < PAIRS; p++) {
    const t = [0, 0];
    for (const i of p % 2 ? [1, 0] : [0, 1]) t[i] = cpuMs(ab[i][kernel]);
    ms[0].push(t[0]);
    ms[1].push(t[1]);
    ratios.push(t[1] / t[0]);
  }
  const flops = kernel === 'gemm' ? 2 * CHUNK * D * D : 4 * CHUNK * L * hd;
  const gf = (t) => {
    const g = flops / median(t) / 1e6;
    return `${g.toFixed(1)} (${(g / peak).toFixed(2)}${tilePeak ? ` / ${(g / tilePeak).toFixed(2)}` : ''})`;
  };
  const sorted = [...ratios].sort((u, v) => u - v);
  console.log(
    `${kernel}: A ${gf(ms[0])}, B ${gf(ms[1])} GFLOP/s (CPU time; ÷ peak${tilePeak ? ' / ÷ 8-chain peak' : ''}); B/A time median ${median(ratios).toFixed(3)} ` +
      `(range ${sorted[0].toFixed(3)}–${sorted.at(-1).toFixed(3)}, ${PAIRS} pairs); max |A − B| ${diff.toExponential(1)}`,
  );
}
