// A/B of the two ways a workers projection reaches the gemm kernel, interleaved in one process,
// by wall time (the threads' CPU time is the process's too, but a step waits on both threads):
//
//   node scripts/ab-prepared.mjs [--pairs 9] [--steps 5]     (after `pnpm build`: it imports dist/)
//
//   A: every linear task carries no weight name (`weight: null`), so each thread copies W into its
//      WebAssembly memory and packs it on every call: what the backend did before prepared.ts;
//      done here by clearing `weightId` on every tensor A's backend uploads.
//   B: the backend as built: each thread packs a weight tensor once and keeps it.
// Shapes: a one-token session step at caches 1024 and 4096 for d = 512, h = 8 and for the GQA
// layer d = 2048, H = 16, KVH = 4, hd = 128 (the bench's decode shapes); a 256-row prefill run at
// d = 768. Two threads, the default inline threshold. Prints the median B/A ratio of the pairs and
// the largest |A − B| of the outputs.
import { parseArgs } from 'node:util';
import { BackendRegistry, createAttention } from '@qkv/core';
import { workersBackend } from '../dist/index.js';

const { values } = parseArgs({
  options: { pairs: { type: 'string', default: '9' }, steps: { type: 'string', default: '5' } },
});
const PAIRS = Number(values.pairs);
const STEPS = Number(values.steps);

let seed = 7;
const rand = (n, s = 1) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 16807) % 2147483647;
    return (seed / 2147483647 - 0.5) * s;
  });
const tensor = (shape, s) => ({
  shape,
  data: rand(
    shape.reduce((a, b) => a * b, 1),
    s,
  ),
});

/** The old path: a workers factory whose uploads carry no weight id (never packed per thread). */
const unpacked = {
  ...workersBackend,
  name: 'workers-unpacked',
  create: async (options) => {
    const b = await workersBackend.create(options);
    const upload = b.upload.bind(b);
    b.upload = (t) => {
      const out = upload(t);
      out.weightId = 0;
      return out;
    };
    return b;
  },
};
const registry = new BackendRegistry().register(workersBackend).register(unpacked);

async function pair(config) {
  const { dModel: d, numHeads: H, numKVHeads: KVH = H } = config;
  const kv = (d / H) * KVH;
  const s = 1 / Math.sqrt(d);
  const weights = { wq: tensor([d, d], s), wk: tensor([d, kv], s), wv: tensor([d, kv], s), wo: tensor([d, d], s) };
  const opts = (backend) => ({ registry, backend, backendOptions: { threads: 2 } });
  const a = await createAttention(config, weights, opts('workers-unpacked'));
  const b = await createAttention(config, weights, opts('workers'));
  return { a, b, d };
}

const median = (xs) => [...xs].sort((u, v) => u - v)[xs.length >> 1];
const maxDiff = (x, y) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);

function report(name, ta, tb, diff) {
  const ratios = ta.map((x, i) => tb[i] / x);
  const sorted = [...ratios].sort((u, v) => u - v);
  console.log(
    `${name}: A ${median(ta).toFixed(2)} ms, B ${median(tb).toFixed(2)} ms; B/A median ${median(ratios).toFixed(3)} ` +
      `(range ${sorted[0].toFixed(3)}–${sorted.at(-1).toFixed(3)}, ${PAIRS} pairs); max |A − B| ${diff.toExponential(1)}`,
  );
}

async function decode(name, config, cache) {
  const { a, b, d } = await pair(config);
  const total = cache + 2 * (PAIRS + 2) * STEPS;
  const prompt = tensor([1, cache, d]);
  const tokens = tensor([1, total - cache, d]);
  const sessions = [a, b].map((h) => h.createSession({ maxLength: total }));
  for (const sn of sessions) await sn.step(prompt);
  let t = 0;
  const token = (i) => ({ shape: [1, 1, d], data: tokens.data.subarray(i * d, (i + 1) * d) });
  // Same token into both: the outputs must agree.
  const both = async () => {
    const [ya, yb] = [await sessions[0].step(token(t)), await sessions[1].step(token(t))];
    t++;
    return maxDiff(ya.attention.data, yb.attention.data);
  };
  let diff = await both();
  const time = async (sn) => {
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) await sn.step(token(t + i));
    return (performance.now() - t0) / STEPS;
  };
  const ta = [];
  const tb = [];
  for (let p = 0; p < PAIRS; p++) {
    // Both sessions take the same tokens (the caches stay equal); alternate who goes first.
    const first = p % 2;
    const x = await time(sessions[first]);
    const y = await time(sessions[1 - first]);
    t += STEPS;
    (first === 0 ? ta : tb).push(x);
    (first === 0 ? tb : ta).push(y);
  }
  diff = Math.max(diff, await both());
  report(`${name}, cache ${cache}`, ta, tb, diff);
  for (const sn of sessions) await sn.dispose();
  await a.dispose();
  await b.dispose();
}

async function prefill() {
  const { a, b, d } = await pair({ dModel: 768, numHeads: 12, causal: true, bias: false });
  const x = { query: tensor([1, 256, d]) };
  const [ya, yb] = [await a.run(x), await b.run(x)];
  const diff = maxDiff(ya.attention.data, yb.attention.data);
  const time = async (h) => {
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) await h.run(x);
    return (performance.now() - t0) / STEPS;
  };
  const ta = [];
  const tb = [];
  for (let p = 0; p < PAIRS; p++) {
    if (p % 2) {
      tb.push(await time(b));
      ta.push(await time(a));
    } else {
      ta.push(await time(a));
      tb.push(await time(b));
    }
  }
  report('prefill chunk, d 768, 256 rows', ta, tb, diff);
  await a.dispose();
  await b.dispose();
}

console.log(`${process.version}`);
for (const cache of [1024, 4096])
  await decode('decode step, d 512, h 8', { dModel: 512, numHeads: 8, causal: true, bias: false }, cache);
for (const cache of [1024, 4096])
  await decode(
    'decode step, GQA d 2048, H 16, KVH 4',
    { dModel: 2048, numHeads: 16, numKVHeads: 4, causal: true, bias: false },
    cache,
  );
await prefill();
