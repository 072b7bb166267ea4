#!/usr/bin/env node
// Packed sequences on the webgpu flash kernel (issue #18), as bench/src/serving.mjs measures
// them on cpu: the same 8 sequences of mixed lengths three ways, interleaved in one process.
//
//   node bench/serving.mjs                       (after pnpm build; Dawn over the machine's Vulkan driver)
//   QKV_BENCH_PAIRS=7 QKV_BENCH_SCALE=2 node bench/serving.mjs
//
//   padded   a batch of 8 rows of the longest length with keyPaddingMask
//   packed   one row of all the tokens with sequenceIds: the flash kernel skips every key tile
//            whose id range misses its query tile's, before staging it
//   masked   one row with the same block-diagonal mask as an attnMask: every tile in the causal
//            range is staged and every score computed, then masked (packing without skipping)
//   causal   one row of all the tokens, no ids: the causal problem over every key, the work the
//            flash kernel would do without the ids (no mask to upload: the kernel alone)
// Then the flash kernel alone (backend.fused.fusedAttention on q, k, v already on the device, the
// output read back), packed vs causal vs masked: what the skipping saves without the
// projections, uploads and host checks around it.
// Runs alternate (padded, packed, masked, causal) per round; the ratios are medians of per-round ratios.
// The lengths are the cpu bench's divided by 4 (× QKV_BENCH_SCALE): SwiftShader, the software
// Vulkan driver of a machine without a GPU, runs every workgroup on the CPU.
import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention } from '@qkv/core';
import { packedInputs } from '../../../bench/src/packing.mjs';
import { makeProblem } from '../../../bench/src/problem.mjs';
import { WebGPUBackend, webgpuBackend } from '../dist/index.js';

const pairs = Number(process.env.QKV_BENCH_PAIRS ?? 5);
const scale = Number(process.env.QKV_BENCH_SCALE ?? 1);
const registry = new BackendRegistry().register(webgpuBackend).register(cpuBackend);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const time = async (f) => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};

const availability = await registry.availability('webgpu');
if (!availability.available) {
  console.error(`webgpu is not available here: ${availability.reason}`);
  process.exit(1);
}
const D = 64;
const H = 2;
const lengths = [1500, 100, 700, 50, 900, 300, 200, 346].map((n) => Math.max(1, Math.round((n * scale) / 4)));
const L = lengths.reduce((a, b) => a + b, 0);
const B = lengths.length;
const p = makeProblem({ L, d: D, h: H, causal: true });
const weights = Object.fromEntries(Object.entries(p.weights).map(([k, data]) => [k, { shape: p.shapes[k], data }]));
const config = { dModel: D, numHeads: H, causal: true };
const attn = await createAttention(config, weights, { registry, backend: 'webgpu' });
const inputs = packedInputs(p.x, lengths, D);
const { ids, maxLen } = inputs;
const am = inputs.masked.attnMask.data;
const runs = {
  padded: () => attn.run(inputs.padded),
  packed: () => attn.run(inputs.packed),
  masked: () => attn.run(inputs.masked),
  causal: () => attn.run({ query: inputs.packed.query }),
};
// First runs compile the pipelines; they also check that the three agree (every sequence).
const [rp, rq, rm] = [await runs.padded(), await runs.packed(), await runs.masked()];
let err = 0;
let at = 0;
lengths.forEach((n, b) => {
  for (let e = 0; e < n * D; e++) {
    const want = rp.attention.data[b * maxLen * D + e];
    err = Math.max(err, Math.abs(want - rq.attention.data[at * D + e]), Math.abs(want - rm.attention.data[at * D + e]));
  }
  at += n;
});
await runs.causal();
const ms = { padded: [], packed: [], masked: [], causal: [] };
for (let r = 0; r < pairs; r++) for (const k of Object.keys(runs)) ms[k].push(await time(runs[k]));
const ratio = (a, b) => median(ms[a].map((x, i) => x / ms[b][i]));
console.log(`webgpu: ${availability.detail}`);
console.log(
  `packed sequences: ${B} sequences, lengths ${lengths.join(', ')} (sum ${L}), d = ${D}, H = ${H}, causal, webgpu fused, ${pairs} rounds`,
);
for (const k of Object.keys(ms)) console.log(`  ${k.padEnd(7)} median ${median(ms[k]).toFixed(1)} ms`);
console.log(
  `  packed / padded = ${ratio('packed', 'padded').toFixed(3)}   packed / masked = ${ratio('packed', 'masked').toFixed(3)}   packed / causal = ${ratio('packed', 'causal').toFixed(3)}   (max |difference| of the three = ${err.toExponential(1)})`,
);
await attn.dispose();

// The flash kernel alone.
const backend = await WebGPUBackend.create();
const hd = D / H;
const qkv = [0, 1, 2].map((s) =>
  backend.upload({ shape: [1, L, D], data: Float32Array.from({ length: L * D }, (_, e) => Math.sin(e * 0.37 + s)) }),
);
const attrs = {
  batch: 1,
  numHeads: H,
  numKVHeads: H,
  queryLength: L,
  keyLength: L,
  headDim: hd,
  scale: 1 / Math.sqrt(hd),
  causal: true,
};
const idsT = backend.upload({ shape: [1, L], data: ids });
const amT = backend.upload({ shape: [L, L], data: am });
const kernel = (ids, am) => async () => {
  const out = backend.fused.fusedAttention(qkv[0], qkv[1], qkv[2], null, am, attrs, ids);
  await backend.download(out);
  backend.dispose(out);
};
const kernels = { packed: kernel(idsT, null), causal: kernel(null, null), masked: kernel(null, amT) };
for (const f of Object.values(kernels)) await f();
const kms = { packed: [], causal: [], masked: [] };
for (let r = 0; r < pairs; r++) for (const k of Object.keys(kernels)) kms[k].push(await time(kernels[k]));
const kratio = (a, b) => median(kms[a].map((x, i) => x / kms[b][i]));
console.log(`flash kernel alone (q, k, v on the device, [1, ${L}, ${D}], hd ${hd}):`);
for (const k of Object.keys(kms)) console.log(`  ${k.padEnd(7)} median ${median(kms[k]).toFixed(1)} ms`);
console.log(
  `  packed / causal = ${kratio('packed', 'causal').toFixed(3)}   packed / masked = ${kratio('packed', 'masked').toFixed(3)}   (work Σ n² / L² = ${(lengths.reduce((a, n) => a + n * n, 0) / (L * L)).toFixed(3)})`,
);
for (const t of [...qkv, idsT, amT]) backend.dispose(t);
await backend.destroy();
