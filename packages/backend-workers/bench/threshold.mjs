// Measures the inline threshold: for each kernel, at growing sizes, the median time of one op
// run on the calling thread vs. handed to a 2-thread pool as a job of its own, and the smallest
// work (≈ multiply-adds, see dispatchWork in src/ops.ts) from which the pool wins. The backend
// compares the threshold with a whole queue's work (a run's ops are one job), so a job's dispatch
// cost is what is measured here. INLINE_WORK_THRESHOLD in src/options.ts
// is set from this output; the README keeps the table. Run: pnpm bench:threshold (after build).
import { dispatchWork, WorkersBackend } from '../dist/index.js';

const THREADS = 2;
const inline = await WorkersBackend.create({ threads: THREADS, inlineThreshold: Number.POSITIVE_INFINITY });
const pooled = await WorkersBackend.create({ threads: THREADS, inlineThreshold: 0 });

const fill = (backend, shape) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return backend.upload({ shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5) });
};

/** Median of `reps` timings of `op()` after warm-up, in ms. */
async function median(op, reps) {
  for (let i = 0; i < 3; i++) await op();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    await op();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(reps / 2)];
}

// Each case builds an op of a given size on a backend and returns [run, work].
const cases = {
  // x [L, 64] · w [64, 64]: the projections' shape at small L.
  linear: (b, L) => {
    const attrs = { rows: L, inFeatures: 64, outFeatures: 64 };
    const x = fill(b, [L, 64]);
    const w = fill(b, [64, 64]);
    return [() => b.kernels.linear(x, w, null, attrs), { op: 'linear', attrs }];
  },
  // One head, hd = 16, Lq = Lk = L: the fused path at short sequences.
  fusedAttention: (b, L) => {
    const attrs = {
      batch: 1,
      numHeads: 1,
      numKVHeads: 1,
      queryLength: L,
      keyLength: L,
      headDim: 16,
      scale: 0.25,
      causal: false,
    };
    const q = fill(b, [1, L, 16]);
    return [() => b.fused.fusedAttention(q, q, q, null, null, attrs), { op: 'fusedAttention', attrs }];
  },
  // Rows of 64 scores.
  softmax: (b, L) => {
    const attrs = { rows: L, cols: 64 };
    const s = fill(b, [L, 64]);
    return [() => b.kernels.softmax(s, attrs), { op: 'softmax', attrs }];
  },
  // Elementwise add of L values.
  add: (b, L) => {
    const a = fill(b, [L]);
    return [() => b.kernels.add(a, a), { op: 'add', a: { length: L } }];
  },
};

const sizes = {
  linear: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
  fusedAttention: [2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
  softmax: [16, 64, 256, 1024, 4096, 16384],
  add: [4096, 16384, 65536, 262144, 1048576, 4194304],
};

console.log(`inline vs ${THREADS}-thread pool, median ms per op\n`);
console.log(['op', 'size', 'work', 'inline ms', 'pool ms', 'pool/inline'].join('\t'));
const crossovers = [];
for (const [name, make] of Object.entries(cases)) {
  let crossover = null;
  for (const L of sizes[name]) {
    const [runInline, task] = make(inline, L);
    const [runPooled] = make(pooled, L);
    // In the units INLINE_WORK_THRESHOLD is compared with (fast-kernel multiply-adds / FAST_WORK_DIVISOR).
    const work = dispatchWork(task);
    const reps = work < 2 ** 16 ? 201 : work < 2 ** 20 ? 41 : 9;
    // Ops are queued: ready() submits the op's queue and waits until it is computed.
    const once = (b, run) => async () => {
      const t = await run();
      await b.ready(t);
      b.dispose(t);
    };
    const ti = await median(once(inline, runInline), reps);
    const tp = await median(once(pooled, runPooled), reps);
    console.log([name, L, work, ti.toFixed(4), tp.toFixed(4), (tp / ti).toFixed(2)].join('\t'));
    if (crossover === null && tp < ti) crossover = work;
    if (crossover !== null && tp >= ti) crossover = null; // not yet stable: keep looking
  }
  crossovers.push([name, crossover]);
}
console.log('\nsmallest work from which the pool stays faster:');
for (const [name, w] of crossovers)
  console.log(`  ${name}: ${w === null ? 'never in this range' : `${w} (≈2^${Math.log2(w).toFixed(1)})`}`);
await inline.destroy();
await pooled.destroy();
