// A/B of two versions of the decode kernel (assembly/decode.ts), cold, against the read floor:
//
//   node scripts/ab-decode.mjs A.ts B.ts [--features simd] [--features-b simd,relaxed-simd]
//        [--pairs 11] [--caches 4096,8192,16384] [--shapes mha,gqa] [--warm] [--chunk 1024] [--chunk-b …]
//
// A and B are copies of assembly/decode.ts, compiled with the decode build's own flags
// (compile.mjs, an imported shared memory) and `features` (B's may differ: the same source as
// simd128 vs relaxed SIMD). Both are instantiated over ONE shared memory holding the K/V caches
// [1, capacity, KVH·hd] (the arena's layout), and called the way src/fast/decode.ts calls the
// kernel: one call per KEY_CHUNK keys, every KV head per call. Shapes: d = 512, h = 8 (nq = 1,
// hd = 64) and GQA d = 2048, H = 16, KVH = 4, hd = 128 (nq = 4), one step token.
//
// Each pair times the floor (streamSum over the same K and V bytes: the bench's floor), A and B,
// in rotating order; before every timed call a separate 64 MiB buffer is read, so the caches
// come from DRAM as in a real step (L3 is 32 MiB here; a 4k d = 512 cache alone fits in it).
// Times are this process's CPU time (`process.cpuUsage()`), so the scheduler's share on a
// shared machine moves them less than wall time. --warm skips the flush (at caches that fit in
// L3, the kernel's compute alone). --chunk / --chunk-b: keys per call for A / B (default 1024,
// KEY_CHUNK of src/fast/decode.ts); with different chunks the outputs are compared only where
// a chunk of each covers the same keys. Prints per cell the medians of A, B, floor,
// A/floor, B/floor and B/A (with its range), and max |A − B| over every chunk's o, m, l.
import { parseArgs } from 'node:util';
import { compileKernels } from './compile.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    features: { type: 'string', default: 'simd' },
    'features-b': { type: 'string' },
    pairs: { type: 'string', default: '11' },
    caches: { type: 'string', default: '4096,8192,16384' },
    shapes: { type: 'string', default: 'mha,gqa' },
    warm: { type: 'boolean', default: false },
    chunk: { type: 'string', default: '1024' },
    'chunk-b': { type: 'string' },
  },
});
if (positionals.length !== 2) throw new Error('usage: ab-decode.mjs A.ts B.ts [--features …] [--features-b …]');
const PAIRS = Number(values.pairs);
const CACHES = values.caches.split(',').map(Number);
/** Keys per kernel call, src/fast/decode.ts's KEY_CHUNK unless --chunk / --chunk-b say otherwise. */
const CHUNKS = [Number(values.chunk), Number(values['chunk-b'] ?? values.chunk)];
const KEY_CHUNK = Math.max(...CHUNKS);
const FLUSH_BYTES = 64 << 20;
const SHAPES = [
  { key: 'mha', label: 'd=512 h=8 (nq 1, hd 64)', KVH: 8, hd: 64, nq: 1 },
  { key: 'gqa', label: 'd=2048 H=16 KVH=4 hd=128 (nq 4)', KVH: 4, hd: 128, nq: 4 },
].filter((s) => values.shapes.split(',').includes(s.key));
const featuresA = values.features;
const featuresB = values['features-b'] ?? featuresA;

/** Deterministic uniform [−0.5, 0.5). */
function rng(seed) {
  return () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647 - 0.5;
  };
}

const flags = ['--importMemory', '--sharedMemory', '--maximumMemory', '65536'];
const modules = [
  new WebAssembly.Module(await compileKernels(positionals[0], `${featuresA},threads`, flags)),
  new WebAssembly.Module(await compileKernels(positionals[1], `${featuresB},threads`, flags)),
];
const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
const kernels = modules.map((m) => new WebAssembly.Instance(m, { env: { memory, abort() {} } }).exports);

let top = Math.max(...kernels.map((e) => e.heapBase())) + 64;
const alloc = (bytes) => {
  const p = Math.ceil(top / 64) * 64;
  top = p + bytes;
  if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
  return p;
};
const capacity = Math.max(...CACHES);
const flush = alloc(FLUSH_BYTES);
const caches = new Map();
for (const s of SHAPES) {
  const bytes = capacity * s.KVH * s.hd * 4;
  caches.set(s.key, { k: alloc(bytes), v: alloc(bytes), bytes });
}
const f32 = () => new Float32Array(memory.buffer);
const i32 = () => new Int32Array(memory.buffer);
{
  const r = rng(7);
  const f = f32();
  f.fill(1, flush / 4, (flush + FLUSH_BYTES) / 4);
  for (const { k, v, bytes } of caches.values()) {
    for (let i = 0; i < bytes / 4; i++) {
      f[k / 4 + i] = r();
      f[v / 4 + i] = r();
    }
  }
}

/** One version's scratch for one shape: q, count, s, o, m, l as src/fast/decode.ts lays them out. */
function scratch(s) {
  const nqp = s.nq === 1 ? 1 : (s.nq + 3) & ~3;
  const rows = s.KVH * nqp;
  const q = alloc(rows * s.hd * 4);
  const count = alloc(nqp * 4);
  const sc = alloc(rows * KEY_CHUNK * 4);
  const o = alloc(rows * s.hd * 4);
  const m = alloc(rows * 4);
  const l = alloc(rows * 4);
  return { q, count, s: sc, o, m, l, rows, nqp };
}

const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
const cpuMs = (fn) => {
  const t = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1e3;
};
const readFlush = () => kernels[0].streamSum(flush, FLUSH_BYTES);

console.log(
  `ab-decode: A ${positionals[0]} (${featuresA}), B ${positionals[1]} (${featuresB}), ${PAIRS} pairs, ` +
    `Node ${process.versions.node}, CPU time, ${values.warm ? 'caches warm (no flush: compute alone where they fit in L3)' : 'caches cold (64 MiB read before each call)'}`,
);
for (const shape of SHAPES) {
  const cache = caches.get(shape.key);
  const scr = kernels.map(() => scratch(shape));
  const r = rng(3);
  const qIn = Float32Array.from({ length: scr[0].rows * shape.hd }, () => r() * 0.25);
  for (const x of scr) f32().set(qIn, x.q / 4);
  const stride = shape.KVH * shape.hd * 4;
  for (const Lk of CACHES) {
    /** The kernel over every chunk of Lk keys; `each(c0)` sees each chunk's output. */
    const run = (i, each) => {
      const e = kernels[i];
      const x = scr[i];
      for (let c0 = 0; c0 < Lk; c0 += CHUNKS[i]) {
        const n = Math.min(CHUNKS[i], Lk - c0);
        const cnt = i32();
        // The last step token sees every key (causal, Lq = 1); padding rows none.
        for (let row = 0; row < x.nqp; row++) cnt[x.count / 4 + row] = row < shape.nq ? n : 0;
        const off = c0 * stride;
        e.decode(
          x.q,
          shape.nq,
          shape.KVH,
          shape.hd,
          cache.k + off,
          cache.v + off,
          stride,
          n,
          x.count,
          x.s,
          x.o,
          x.m,
          x.l,
        );
        each?.(c0);
      }
    };
    // Same results (every chunk's o, m, l), and warm-up: V8 tiers hot functions up after some calls.
    let diff = 0;
    const outs = new Map();
    const pick = (x) => {
      const f = f32();
      return [
        ...f.subarray(x.o / 4, x.o / 4 + x.rows * shape.hd),
        ...f.subarray(x.m / 4, x.m / 4 + x.rows),
        ...f.subarray(x.l / 4, x.l / 4 + x.rows),
      ];
    };
    run(0, (c0) => outs.set(c0, pick(scr[0])));
    run(1, (c0) => {
      const a = outs.get(c0);
      // Chunks that differ: compared where both start a chunk at c0 with the same length.
      const n = (i) => Math.min(CHUNKS[i], Lk - c0);
      if (a === undefined || n(0) !== n(1)) return;
      const b = pick(scr[1]);
      for (let t = 0; t < a.length; t++) if (Number.isFinite(a[t])) diff = Math.max(diff, Math.abs(a[t] - b[t]));
    });
    for (let w = 0; w < 10; w++) {
      run(0);
      run(1);
      kernels[0].streamSum(cache.k, Lk * stride);
    }
    const floor = () => {
      kernels[0].streamSum(cache.k, Lk * stride);
      kernels[0].streamSum(cache.v, Lk * stride);
    };
    const fns = [floor, () => run(0), () => run(1)];
    const ms = [[], [], []];
    for (let p = 0; p < PAIRS; p++) {
      for (let t = 0; t < 3; t++) {
        const which = (p + t) % 3;
        if (!values.warm) readFlush();
        ms[which].push(cpuMs(fns[which]));
      }
    }
    const ratio = (a, b) => median(ms[a].map((x, i) => x / ms[b][i]));
    const ba = ms[2].map((x, i) => x / ms[1][i]).sort((x, y) => x - y);
    console.log(
      `${shape.label} cache ${Lk}: floor ${median(ms[0]).toFixed(3)} ms, A ${median(ms[1]).toFixed(3)}, ` +
        `B ${median(ms[2]).toFixed(3)}; A/floor ${ratio(1, 0).toFixed(2)}, B/floor ${ratio(2, 0).toFixed(2)}; ` +
        `B/A ${median(ba).toFixed(3)} (range ${ba[0].toFixed(3)}–${ba.at(-1).toFixed(3)}); max |A − B| ${diff.toExponential(1)}`,
    );
  }
}
