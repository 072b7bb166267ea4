// A/B of the two ways a projection reaches the gemm kernel, interleaved in one process, by CPU
// time (the way the numbers in the cpu README were taken):
//
//   node scripts/ab-prepared.mjs [--pairs 15]        (after `pnpm build`: it imports dist/)
//
//   A: `fastKernels(build).linear(x, w, bias, out, attrs)`: W copied into the module and packed
//      on every call (the kernel contract, what the workers' threads call per lease);
//   B: `prepareWeight(w, bias, attrs)` once, then `prepared.linear(x, out, rows)`: what the cpu
//      backend runs for a handle's projections.
// Shapes: a decode step of a d = 2048, 32/8-head GQA layer (1 row through Wq, Wk, Wv, Wo) and a
// prefill chunk of d = 768 (256 rows through one 768 × 768 W). Prints the median B/A time ratio
// of the pairs and checks that A and B agree.
import { parseArgs } from 'node:util';
import { cpuKernels as k } from '../dist/index.js';

const { values } = parseArgs({ options: { pairs: { type: 'string', default: '15' } } });
const PAIRS = Number(values.pairs);
const build = k.bestWasmBuild();
if (build === null) throw new Error('no WebAssembly SIMD here');
const fk = k.fastKernels(build);
let seed = 7;
const rand = (n) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647 - 0.5;
  });
const layer = (rows, shapes) =>
  shapes.map(([K, N]) => {
    const w = rand(K * N);
    const bias = rand(N);
    const attrs = { rows, inFeatures: K, outFeatures: N };
    return {
      w,
      bias,
      attrs,
      x: rand(rows * K),
      out: new Float32Array(rows * N),
      prepared: fk.prepareWeight(w, bias, attrs),
    };
  });
const cases = {
  'decode step, d 2048, 32/8 heads (1 row × Wq, Wk, Wv, Wo)': layer(1, [
    [2048, 2048],
    [2048, 512],
    [2048, 512],
    [2048, 2048],
  ]),
  'prefill chunk, d 768 (256 rows × one W)': layer(256, [[768, 768]]),
};
const cpuMs = (fn, reps) => {
  const t = process.cpuUsage();
  for (let i = 0; i < reps; i++) fn();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / 1e3 / reps;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`build ${build}, ${process.version}`);
for (const [name, ops] of Object.entries(cases)) {
  const a = () => {
    for (const o of ops) fk.linear(o.x, o.w, o.bias, o.out, o.attrs);
  };
  const b = () => {
    for (const o of ops) o.prepared.linear(o.x, o.out, o.attrs.rows);
  };
  a();
  const fromA = ops.map((o) => o.out.slice());
  b();
  let diff = 0;
  ops.forEach((o, i) => {
    for (let e = 0; e < o.out.length; e++) diff = Math.max(diff, Math.abs(o.out[e] - fromA[i][e]));
  });
  for (let i = 0; i < 10; i++) {
    a();
    b();
  }
  const ta = [];
  const tb = [];
  const ratios = [];
  for (let p = 0; p < PAIRS; p++) {
    const [x, y] = p % 2 ? [cpuMs(b, 5), cpuMs(a, 5)].reverse() : [cpuMs(a, 5), cpuMs(b, 5)];
    ta.push(x);
    tb.push(y);
    ratios.push(y / x);
  }
  const sorted = [...ratios].sort((u, v) => u - v);
  console.log(
    `${name}: A ${median(ta).toFixed(3)} ms, B ${median(tb).toFixed(3)} ms; B/A median ${median(ratios).toFixed(3)} ` +
      `(range ${sorted[0].toFixed(3)}–${sorted.at(-1).toFixed(3)}, ${PAIRS} pairs); max |A − B| ${diff.toExponential(1)}`,
  );
  for (const o of ops) o.prepared.release();
}
