// Precision at length: each backend's largest error against a float64 reference, fused path,
// at L = 1k, 4k, 16k (the README's backend table).
//
//   node bench/precision.mjs                                   (after pnpm build)
//   QKV_PRECISION_BACKENDS=cpu,workers QKV_PRECISION_LENGTHS=1024,4096 node bench/precision.mjs
//
// One causal self-attention layer, dModel 64, 4 heads, inputs and weights uniform (weights
// scaled 1/√fan-in, as an initialised model's). The reference computes every step in float64 from
// the same float32 inputs and weights, one query row at a time (no [L, L] buffer), so 16k fits.
// Reported: max |qkv − float64| over ΔE and that over max |ΔE| (relative to the output's scale).
import { createAttention } from '../dist/index.js';

const lengths = (process.env.QKV_PRECISION_LENGTHS ?? '1024,4096,16384').split(',').map(Number);
const backends = (process.env.QKV_PRECISION_BACKENDS ?? 'cpu,workers,webgl,webgpu').split(',');
const D = 64;
const H = 4;
const hd = D / H;
const config = { dModel: D, numHeads: H, causal: true };

let seed = 7;
const rand = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return (seed / 2 ** 32) * 2 - 1;
};
const T = (shape, scale = 1) => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * scale),
});
const a = 1 / Math.sqrt(D);
const weights = {
  wq: T([D, D], a),
  wk: T([D, D], a),
  wv: T([D, D], a),
  wo: T([D, D], a),
  bq: T([D], 0.1),
  bk: T([D], 0.1),
  bv: T([D], 0.1),
  bo: T([D], 0.1),
};

/** x [L, D] · w [D, D] + b in float64. */
function project(x, w, b, L) {
  const out = new Float64Array(L * D);
  for (let r = 0; r < L; r++)
    for (let o = 0; o < D; o++) {
      let s = b.data[o];
      for (let i = 0; i < D; i++) s += x[r * D + i] * w.data[i * D + o];
      out[r * D + o] = s;
    }
  return out;
}

/** Causal attention ΔE [L, D] in float64, row by row. */
function reference(query, L) {
  const x = Float64Array.from(query.data);
  const q = project(x, weights.wq, weights.bq, L);
  const k = project(x, weights.wk, weights.bk, L);
  const v = project(x, weights.wv, weights.bv, L);
  const heads = new Float64Array(L * D);
  const s = new Float64Array(L);
  const scale = 1 / Math.sqrt(hd);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < L; i++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let c = 0; c < hd; c++) dot += q[i * D + h * hd + c] * k[j * D + h * hd + c];
        s[j] = dot * scale;
        if (s[j] > max) max = s[j];
      }
      let sum = 0;
      for (let j = 0; j <= i; j++) sum += s[j] = Math.exp(s[j] - max);
      for (let c = 0; c < hd; c++) {
        let acc = 0;
        for (let j = 0; j <= i; j++) acc += s[j] * v[j * D + h * hd + c];
        heads[i * D + h * hd + c] = acc / sum;
      }
    }
  }
  return project(heads, weights.wo, weights.bo, L);
}

console.log(`causal self-attention, dModel ${D}, ${H} heads, fused path; error = max |qkv − float64| over ΔE`);
console.log('backend   L       max abs error   relative to max |ΔE|');
for (const L of lengths) {
  const query = T([1, L, D]);
  const t0 = performance.now();
  const ref = reference(query, L);
  const refMs = performance.now() - t0;
  let scale = 0;
  for (const r of ref) scale = Math.max(scale, Math.abs(r));
  for (const name of backends) {
    let attn;
    try {
      attn = await createAttention(config, weights, { backend: name });
    } catch (e) {
      console.log(`${name.padEnd(9)} ${String(L).padEnd(7)} not run: ${e.message.split('\n')[0]}`);
      continue;
    }
    try {
      const out = await attn.run({ query });
      if (!out.fused) throw new Error('the fused path did not run');
      let err = 0;
      for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(out.attention.data[i] - ref[i]));
      console.log(
        `${name.padEnd(9)} ${String(L).padEnd(7)} ${err.toExponential(2).padEnd(15)} ${(err / scale).toExponential(2)}`,
      );
    } catch (e) {
      console.log(`${name.padEnd(9)} ${String(L).padEnd(7)} failed: ${e.message.split('\n')[0]}`);
    } finally {
      await attn.dispose();
    }
  }
  console.log(`          (float64 reference at L = ${L}: ${(refMs / 1000).toFixed(1)} s)`);
}
