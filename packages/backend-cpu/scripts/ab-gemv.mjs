// A/B of the few-row kernels (gemm with M = 1, 2, 3: a decode step's projections) against the
// read floor, the way gemv.ts was chosen:
//
//   node scripts/ab-gemv.mjs A_DIR B_DIR [--features simd,relaxed-simd] [--samples 25]
//
// A_DIR and B_DIR hold versions of assembly/ (e.g. B = packages/backend-cpu/assembly, A = a
// `git archive <ref> packages/backend-cpu/assembly` unpacked). Each is copied to a temporary
// directory with an entry that exports its `gemm` and `packPanels` plus `streamSum` (the decode
// module's floor loop: one streaming read, four accumulators) and compiled with the build's
// flags (compile.mjs) against one imported memory both sides share. For K × N = 512 × 512, 2048 × 2048 and 2048 × 512 and M = 1, 2, 3, it
// times A, B and streamSum over the same packed W interleaved in one process, warm (W in cache
// from the last call) and cold (a separate 64 MiB buffer read before every call, so W comes
// from DRAM), by CPU time (process.cpuUsage around each call: the scheduler's share on a shared
// machine moves wall time far more). Prints each median in µs, its GB/s of W, its ratio to the
// floor, the median B/A ratio of the pairs, and checks A and B agree (max |A − B|).
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compileKernels } from './compile.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    features: { type: 'string', default: 'simd,relaxed-simd' },
    samples: { type: 'string', default: '25' },
  },
});
if (positionals.length !== 2) throw new Error('usage: ab-gemv.mjs A_DIR B_DIR [--features …] [--samples n]');
const SAMPLES = Number(values.samples);
const SHAPES = [
  [512, 512],
  [2048, 2048],
  [2048, 512],
];
const MAX_KN = 2048 * 2048;
const FLUSH_BYTES = 64 << 20;

const ENTRY = `export { gemm, packPanels } from './gemm';
export function heapBase(): usize { return __heap_base; }
export function streamSum(p: usize, bytes: usize): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let e: usize = p; e < p + bytes; e += 64) {
    a0 = f32x4.add(a0, v128.load(e));
    a1 = f32x4.add(a1, v128.load(e + 16));
    a2 = f32x4.add(a2, v128.load(e + 32));
    a3 = f32x4.add(a3, v128.load(e + 48));
  }
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}
`;

/** Deterministic uniform [−0.5, 0.5). */
function rng(seed) {
  return () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647 - 0.5;
  };
}

/** The module of one side, compiled against an imported memory (the one both sides share). */
async function compile(dir) {
  const tmp = mkdtempSync(join(tmpdir(), 'ab-gemv-'));
  try {
    cpSync(dir, tmp, { recursive: true });
    writeFileSync(join(tmp, 'ab-entry.ts'), ENTRY);
    return new WebAssembly.Module(
      await compileKernels(join(tmp, 'ab-entry.ts'), values.features, ['--importMemory', '--maximumMemory', '4096']),
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// Both sides read the same W, x and flush buffer at the same addresses of one memory: two
// memories put the same data on different pages (huge or not), which alone moved an A/A
// comparison by up to 25% here.
const memory = new WebAssembly.Memory({ initial: 1, maximum: 4096 });
const imports = {
  env: {
    memory,
    abort() {
      throw new Error('abort');
    },
  },
};
const modules = [await compile(positionals[0]), await compile(positionals[1])];
const instances = modules.map((m) => new WebAssembly.Instance(m, imports).exports);
let top = (Math.max(...instances.map((e) => e.heapBase())) + 4095) & ~4095;
const alloc = (n) => {
  const p = top;
  top += (n * 4 + 4095) & ~4095;
  return p;
};
const [w, wp, bias, a, c, flush] = [MAX_KN, MAX_KN, 2048, 3 * 2048, 3 * 2048, FLUSH_BYTES / 4].map(alloc);
memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536) + 1);
const f = new Float32Array(memory.buffer);
const r = rng(1);
for (const [p, n] of [
  [w, MAX_KN],
  [bias, 2048],
  [a, 3 * 2048],
])
  for (let i = 0; i < n; i++) f[p / 4 + i] = r();
const side = (e) => ({
  pack: (K, N) => e.packPanels(w, K, N, N, wp),
  gemm: (M, K, N) => e.gemm(a, M, K, wp, N, bias, c),
  floor: (K, N) => e.streamSum(wp, K * N * 4),
  flush: () => e.streamSum(flush, FLUSH_BYTES),
  out: (M, N) => f.slice(c / 4, c / 4 + M * N),
});
const ab = instances.map(side);
const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
/** CPU µs of one call of fn, after `before` (the flush, untimed). */
const cpuUs = (fn, before) => {
  before?.();
  const t = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t);
  return d.user + d.system;
};
console.log(`features ${values.features}, Node ${process.version}; µs (GB/s of W, ÷ floor)`);
for (const [K, N] of SHAPES) {
  ab[0].pack(K, N);
  const wBytes = K * N * 4;
  // Calls per sample: enough that one sample is ≥ ~1 ms of CPU time warm.
  const reps = Math.max(1, Math.round(250_000 / (K * N)));
  for (const M of [1, 2, 3]) {
    for (const v of ab) for (let i = 0; i < 40; i++) v.gemm(M, K, N);
    const [x, y] = ab.map((v) => {
      v.gemm(M, K, N);
      return v.out(M, N);
    });
    let diff = 0;
    for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i] - y[i]));
    for (const cold of [false, true]) {
      const t = { A: [], B: [], floor: [] };
      const ratios = [];
      for (let s = 0; s < SAMPLES; s++) {
        const order = s % 2 ? ['B', 'A', 'floor'] : ['A', 'B', 'floor'];
        const one = {};
        for (const k of order) {
          const fn = k === 'floor' ? () => ab[1].floor(K, N) : () => ab[k === 'A' ? 0 : 1].gemm(M, K, N);
          let tot = 0;
          for (let i = 0; i < reps; i++) tot += cpuUs(fn, cold ? ab[1].flush : undefined);
          one[k] = tot / reps;
          t[k].push(one[k]);
        }
        ratios.push(one.B / one.A);
      }
      const fl = median(t.floor);
      const fmt = (k) => {
        const m = median(t[k]);
        return `${k} ${m.toFixed(1)} (${(wBytes / m / 1e3).toFixed(1)}, ${(m / fl).toFixed(2)})`;
      };
      const sorted = [...ratios].sort((u, v) => u - v);
      console.log(
        `${K}×${N} M=${M} ${cold ? 'cold' : 'warm'}: ${fmt('A')} | ${fmt('B')} | ${fmt('floor')}; ` +
          `B/A median ${median(ratios).toFixed(3)} (range ${sorted[0].toFixed(3)}–${sorted.at(-1).toFixed(3)}); max |A − B| ${diff.toExponential(1)}`,
      );
    }
  }
}
