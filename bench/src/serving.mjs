// Serving features (issue #18): what packing and fork cost, as ratios measured in one process.
//
//   node bench/src/serving.mjs            (after pnpm build)
//   QKV_BENCH_PAIRS=7 node bench/src/serving.mjs
//
// 1. Packed sequences. The same 8 sequences of mixed lengths (sum 4096) three ways on the cpu
//    backend's fused path:
//      padded   a batch of 8 rows of the longest length (1500) with keyPaddingMask
//      packed   one row of 4096 with sequenceIds: each sequence runs as its own problem, the
//               keys of the others are never visited
//      masked   one row of 4096 with the same block-diagonal mask as an attnMask: every score is
//               computed and then masked (what packing without block skipping would cost)
//    Runs alternate (padded, packed, masked) per pair; the ratios are medians of per-pair ratios.
// 2. session.fork() on a session of 4096 tokens: fork() itself, the first step after it (which
//    copies the shared cache once), and a plain step, alternated.

import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention } from '@qkv/core';
import { packedInputs } from './packing.mjs';
import { makeProblem } from './problem.mjs';

const pairs = Number(process.env.QKV_BENCH_PAIRS ?? 5);
const registry = new BackendRegistry().register(cpuBackend);

/** The bench's seeded layer (problem.mjs) as qkv tensors: x [1, L, d] and the weights. */
function layer(L, d) {
  const p = makeProblem({ L, d, h: 4, causal: true });
  const weights = Object.fromEntries(Object.entries(p.weights).map(([k, data]) => [k, { shape: p.shapes[k], data }]));
  return { x: { shape: [1, L, d], data: p.x }, weights };
}
const rows = (x, at, n) => {
  const D = x.shape[2];
  return { shape: [1, n, D], data: x.data.subarray(at * D, (at + n) * D) };
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const time = async (f) => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};

async function packing() {
  const D = 256;
  const lengths = [1500, 100, 700, 50, 900, 300, 200, 346];
  const L = lengths.reduce((a, b) => a + b, 0);
  const B = lengths.length;
  const { x: packedX, weights } = layer(L, D);
  const attn = await createAttention({ dModel: D, numHeads: 4, causal: true }, weights, { registry, backend: 'cpu' });
  const inputs = packedInputs(packedX.data, lengths, D);
  const { maxLen } = inputs;
  const runs = {
    padded: () => attn.run(inputs.padded),
    packed: () => attn.run(inputs.packed),
    masked: () => attn.run(inputs.masked),
  };
  // Same numbers on every row of every sequence (checked on sequence 1).
  const [p, q] = [await runs.padded(), await runs.packed()];
  let err = 0;
  for (let e = 0; e < lengths[1] * D; e++) {
    err = Math.max(err, Math.abs(p.attention.data[maxLen * D + e] - q.attention.data[1500 * D + e]));
  }
  const ms = { padded: [], packed: [], masked: [] };
  for (let r = 0; r < pairs; r++) for (const k of Object.keys(runs)) ms[k].push(await time(runs[k]));
  const ratio = (a, b) => median(ms[a].map((x, i) => x / ms[b][i]));
  console.log(
    `packed sequences: ${B} sequences, lengths ${lengths.join(', ')} (sum ${L}), d = ${D}, H = 4, causal, cpu fused`,
  );
  for (const k of Object.keys(ms)) console.log(`  ${k.padEnd(7)} median ${median(ms[k]).toFixed(1)} ms`);
  console.log(
    `  packed / padded = ${ratio('packed', 'padded').toFixed(3)}   packed / masked = ${ratio('packed', 'masked').toFixed(3)}   (max |packed − padded| = ${err.toExponential(1)})`,
  );
  await attn.dispose();
}

async function fork() {
  const D = 64;
  const N = 4096;
  const { x, weights } = layer(N + 1, D);
  const config = { dModel: D, numHeads: 4, causal: true, positionalEncoding: 'rotary' };
  const attn = await createAttention(config, weights, { registry, backend: 'cpu' });
  const parent = attn.createSession({ maxLength: N + 2 * pairs + 2 });
  for (let at = 0; at < N; at += 512) await parent.step(rows(x, at, 512));
  const token = rows(x, N, 1);
  const ms = { fork: [], firstStep: [], step: [] };
  for (let r = 0; r < pairs; r++) {
    let child;
    ms.fork.push(await time(async () => (child = parent.fork())));
    ms.firstStep.push(await time(() => child.step(token)));
    ms.step.push(await time(() => child.step(token)));
    await child.dispose();
  }
  const ratio = median(ms.firstStep.map((x, i) => x / ms.step[i]));
  console.log(`session.fork() at ${N} tokens (d = ${D}, KVH·hd = 64, cpu device cache):`);
  console.log(
    `  fork() ${median(ms.fork).toFixed(3)} ms, first step after it ${median(ms.firstStep).toFixed(2)} ms (copies the cache), later step ${median(ms.step).toFixed(2)} ms; first / later = ${ratio.toFixed(2)}`,
  );
  await attn.dispose();
}

await packing();
await fork();
