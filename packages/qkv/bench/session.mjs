// Per-token latency of a KV-cache session at cache lengths 1k / 4k / 16k (docs/FEATURES.md).
//
//   pnpm --filter qkv bench                       (after pnpm build)
//   QKV_BENCH_LENGTHS=1024,4096 QKV_BENCH_BACKEND=cpu QKV_BENCH_TOKENS=32 node bench/session.mjs
//
// For each length L: prefill the cache to L − tokens in chunks (untimed), then time `tokens`
// single-token steps, each attending to ~L cached keys. A re-run of the whole sequence per token
// would be O(L²); a step is O(L), so the latency should grow about linearly with L. The same
// numbers are reported with `cache: 'host'` (core keeps K/V and uploads them every step) for
// comparison with the backend-held cache.
import { createAttention } from '../dist/index.js';

const lengths = (process.env.QKV_BENCH_LENGTHS ?? '1024,4096,16384').split(',').map(Number);
const backend = process.env.QKV_BENCH_BACKEND ?? 'cpu';
const tokens = Number(process.env.QKV_BENCH_TOKENS ?? 32);
const modes = (process.env.QKV_BENCH_CACHE ?? 'auto,host').split(',');
// A small head layout keeps the untimed prefill (O(L²)) to seconds at 16k.
const config = { dModel: 64, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary' };

let seed = 1;
const rand = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
};
const T = (shape, scale = 1) => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * scale),
});
const D = config.dModel;
const hd = D / config.numHeads;
const weights = {
  wq: T([D, config.numHeads * hd], 0.2),
  wk: T([D, config.numKVHeads * hd], 0.2),
  wv: T([D, config.numKVHeads * hd], 0.2),
  wo: T([config.numHeads * hd, D], 0.2),
  bq: T([config.numHeads * hd], 0.1),
  bk: T([config.numKVHeads * hd], 0.1),
  bv: T([config.numKVHeads * hd], 0.1),
  bo: T([D], 0.1),
};

const attn = await createAttention(config, weights, { backend });
console.log(
  `KV-cache session per-token latency — backend ${attn.backend}, dModel ${D}, H ${config.numHeads}, KVH ${config.numKVHeads}, hd ${hd}, RoPE`,
);
console.log('cache length | cache  | median ms/token | p90 ms/token | prefill s');
for (const L of lengths) {
  for (const mode of modes) {
    const session = attn.createSession({ maxLength: L, cache: mode });
    const t0 = performance.now();
    const chunk = 512;
    const warm = 4;
    while (session.length < L - tokens - warm) {
      const t = Math.min(chunk, L - tokens - warm - session.length);
      await session.step(T([1, t, D]));
    }
    const prefill = (performance.now() - t0) / 1000;
    // A few untimed single-token steps warm the JIT on the shape being timed.
    for (let i = 0; i < warm; i++) await session.step(T([1, 1, D]));
    const times = [];
    for (let i = 0; i < tokens; i++) {
      const x = T([1, 1, D]);
      const s = performance.now();
      await session.step(x);
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
    const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
    console.log(
      `${String(L).padStart(12)} | ${session.info.cache.padEnd(6)} | ${q(0.5).toFixed(3).padStart(15)} | ${q(0.9).toFixed(3).padStart(12)} | ${prefill.toFixed(1).padStart(9)}`,
    );
    await session.dispose();
  }
}
await attn.dispose();
