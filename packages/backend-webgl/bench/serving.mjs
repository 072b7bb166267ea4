#!/usr/bin/env node
// `pnpm bench:serving` (after build; it runs under an X display via scripts/with-display.mjs):
// what the fused programs' block skipping saves on packed sequences, as ratios measured in one
// process. The same 8 sequences of mixed lengths (the cpu bench's, bench/src/serving.mjs, at a
// quarter of the length: software GL runs every fragment on the CPU) three ways, fused path:
//   padded   a batch of 8 rows of the longest length (375) with keyPaddingMask
//   packed   one row of 1024 with sequenceIds: passes 2–4 skip every 32-key block of the other
//            sequences, pass 1 writes −∞ there without a dot product
//   masked   one row of 1024 with the same block-diagonal mask as an attnMask: every score up to
//            the diagonal is computed and then masked (what packing without skipping would cost)
// Each timing is one run() with its download; runs alternate (padded, packed, masked) per round
// and the ratios are medians of per-round ratios. QKV_BENCH_PAIRS rounds (default 5).
import { randomWeights, rng } from '@qkv/conformance';
import { BackendRegistry, createAttention } from '@qkv/core';
import { packedInputs } from '../../../bench/src/packing.mjs';
import { webglBackend } from '../dist/index.js';

const PAIRS = Number(process.env.QKV_BENCH_PAIRS ?? 5);
const D = Number(process.env.QKV_BENCH_D ?? 64);
const H = 4;
const lengths = [375, 25, 175, 13, 225, 75, 50, 86];
const L = lengths.reduce((a, b) => a + b, 0);
const B = lengths.length;

const registry = new BackendRegistry().register(webglBackend);
const config = { dModel: D, numHeads: H, causal: true };
const random = rng(18);
const weights = randomWeights(config, random);
const packedX = { shape: [1, L, D], data: Float32Array.from({ length: L * D }, () => random() * 2 - 1) };
const { maxLen, ...inputs } = packedInputs(packedX.data, lengths, D);

const attn = await createAttention(config, weights, { registry, backend: 'webgl' });
const runs = {
  padded: () => attn.run(inputs.padded),
  packed: () => attn.run(inputs.packed),
  masked: () => attn.run(inputs.masked),
};
// The same numbers for every token, every way (and the programs compiled before timing).
const out = {};
for (const k of Object.keys(runs)) {
  const r = await runs[k]();
  if (!r.fused) throw new Error(`${k}: expected the fused path`);
  out[k] = r.attention.data;
}
let err = 0;
let at = 0;
lengths.forEach((n, b) => {
  for (let e = 0; e < n * D; e++) {
    const p = out.padded[b * maxLen * D + e];
    err = Math.max(err, Math.abs(p - out.packed[at * D + e]), Math.abs(p - out.masked[at * D + e]));
  }
  at += n;
});

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ms = { padded: [], packed: [], masked: [] };
for (let r = 0; r < PAIRS; r++) {
  for (const k of Object.keys(runs)) {
    const t0 = performance.now();
    await runs[k]();
    ms[k].push(performance.now() - t0);
  }
}
const ratio = (a, b) => median(ms[a].map((x, i) => x / ms[b][i]));
console.log(
  `packed sequences on ${attn.backend} (headless-gl): ${B} sequences, lengths ${lengths.join(', ')} (sum ${L}), d = ${D}, H = ${H}, causal, fused, ${PAIRS} rounds`,
);
for (const k of Object.keys(ms)) console.log(`  ${k.padEnd(7)} median ${median(ms[k]).toFixed(1)} ms`);
console.log(
  `  packed / padded = ${ratio('packed', 'padded').toFixed(3)}   packed / masked = ${ratio('packed', 'masked').toFixed(3)}   (max |difference| between the three = ${err.toExponential(1)})`,
);
await attn.dispose();
