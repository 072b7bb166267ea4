// The attention core alone — the fused kernel, scores → softmax → P·V, which is all that causal
// masking can shrink — timed causal and non-causal in one process, one after the other, so the
// ratio compares numbers taken under the same load. The whole layer cannot reach half: its four
// projections (8·L·d² FLOPs) cost the same either way (see `wholeLayerBound` in run.mjs).
//
//   node src/core.mjs <qkv-cpu|qkv-workers> '{"L":1024,"d":768,"h":12,"runs":5}'
// prints one JSON line: { impl, L, d, h, causalS, nonCausalS, ratio }.
import { cpuBackend } from '@qkv/backend-cpu';
import { workersBackend } from '@qkv/backend-workers';
import { THREADS } from './impls.mjs';
import { makeProblem } from './problem.mjs';

const [implName, configJson] = process.argv.slice(2);
const { L, d, h, runs = 5 } = JSON.parse(configJson);
const factory = {
  'qkv-cpu': () => cpuBackend.create(),
  'qkv-workers': () => workersBackend.create({ threads: THREADS }),
}[implName];
if (!factory) throw new Error(`core.mjs: no attention-core timing for ${implName}`);

const backend = await factory();
const hd = d / h;
// Q, K, V [1, L, d] with the spread of a trained layer's projections (the values do not change
// the work; they only keep the softmax away from degenerate one-hot rows).
const p = makeProblem({ L, d, h, causal: false }, 3);
const [q, k, v] = await Promise.all(
  ['wq', 'wk', 'wv'].map((n, i) =>
    backend.upload({ shape: [1, L, d], data: p.x.map((x, e) => x * p.weights[n][(e * (i + 7)) % (d * d)] * 8) }),
  ),
);
const attrs = (causal) => ({
  batch: 1,
  numHeads: h,
  numKVHeads: h,
  queryLength: L,
  keyLength: L,
  headDim: hd,
  scale: 1 / Math.sqrt(hd),
  causal,
});

async function median(causal) {
  const once = async () => {
    const t = performance.now();
    const out = await backend.fused.fusedAttention(q, k, v, null, null, attrs(causal));
    // The workers backend queues the op and returns its handle at once: wait until it is computed.
    await backend.ready?.(out);
    const s = (performance.now() - t) / 1e3;
    backend.dispose(out);
    return s;
  };
  await once(); // warm-up
  const times = [];
  for (let r = 0; r < runs; r++) times.push(await once());
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

// Alternate the two so that a change of load mid-way hits both alike; keep each one's faster median.
const n1 = await median(false);
const c1 = await median(true);
const n2 = await median(false);
const c2 = await median(true);
const nonCausalS = Math.min(n1, n2);
const causalS = Math.min(c1, c2);
for (const t of [q, k, v]) backend.dispose(t);
await backend.destroy();
process.stdout.write(
  `${JSON.stringify({ impl: implName, L, d, h, causalS, nonCausalS, ratio: causalS / nonCausalS })}\n`,
);
