#!/usr/bin/env node
// `pnpm bench:gpujs` (after build; it runs under an X display via scripts/with-display.mjs): the
// measurement behind docs/ARCHITECTURE.md's "gpu.js or raw programs" decision. The projection
// x [L, d] · w [d, d] + b on one headless-gl context, three ways, interleaved in one process:
//   raw      the backend's packed RGBA program (4 outputs per fragment, vec4 reads; the default)
//   array4   a gpu.js kernel with returnType 'Array(4)' and pipeline: 4 outputs per thread, the
//            best gpu.js 2.24 offers (its inputs are still gpu.js textures, read per value)
//   flat     the gpu.js kernel the backend keeps as its fallback (1 output per thread)
// Each timing is one projection plus gl.finish(), median of QKV_BENCH_PAIRS rounds; the ratios
// are per round (raw time / other time = the other's share of raw's speed), then the median.
import { webglBackend } from '../dist/index.js';

const PAIRS = Number(process.env.QKV_BENCH_PAIRS ?? 15);
const shapes = (process.env.QKV_BENCH_SHAPES ?? '256x256,512x512').split(',').map((s) => s.split('x').map(Number));

const backend = await webglBackend.create();
const { gpu, gl } = backend.device;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const random = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);

for (const [L, d] of shapes) {
  const x = { shape: [L, d], data: random(L * d) };
  const w = { shape: [d, d], data: random(d * d) };
  const b = { shape: [d], data: random(d) };
  const attrs = { rows: L, inFeatures: d, outFeatures: d };
  const [xt, wt, bt] = [x, w, b].map((t) => backend.upload(t));
  const copies = [x, w, b].map((t) =>
    gpu.createKernel('function copy(a) { return a[this.thread.x]; }', {
      output: [t.data.length],
      pipeline: true,
      precision: 'single',
    }),
  );
  const [xf, wf, bf] = [x, w, b].map((t, i) => copies[i](t.data));
  const flat = gpu.createKernel(
    `function linear(x, w, bias) {
  const t = this.thread.x;
  const r = Math.floor((t + 0.5) / this.constants.nOut);
  const o = t - r * this.constants.nOut;
  let acc = 0.0;
  for (let i = 0; i < this.constants.nIn; i++) acc += x[r * this.constants.nIn + i] * w[i * this.constants.nOut + o];
  return acc + bias[o];
}`,
    { output: [L * d], constants: { nIn: d, nOut: d }, pipeline: true, immutable: true, precision: 'single' },
  );
  const array4 = gpu.createKernel(
    `function linear4(x, w, bias) {
  const o = this.thread.x * 4;
  const xRow = this.thread.y * this.constants.nIn;
  let a0 = bias[o]; let a1 = bias[o + 1]; let a2 = bias[o + 2]; let a3 = bias[o + 3];
  for (let i = 0; i < this.constants.nIn; i++) {
    const xv = x[xRow + i];
    const wRow = i * this.constants.nOut + o;
    a0 += xv * w[wRow]; a1 += xv * w[wRow + 1]; a2 += xv * w[wRow + 2]; a3 += xv * w[wRow + 3];
  }
  return [a0, a1, a2, a3];
}`,
    {
      output: [d / 4, L],
      constants: { nIn: d, nOut: d },
      returnType: 'Array(4)',
      pipeline: true,
      immutable: true,
      precision: 'single',
    },
  );
  const ways = {
    raw: () => {
      const out = backend.kernels.linear(xt, wt, bt, attrs);
      gl.finish();
      backend.dispose(out);
    },
    array4: () => {
      const out = array4(xf, wf, bf);
      gl.finish();
      out.delete();
    },
    flat: () => {
      const out = flat(xf, wf, bf);
      gl.finish();
      out.delete();
    },
  };
  // Same numbers first: the comparison is only fair between kernels that compute the same thing.
  const ref = (await backend.download(backend.kernels.linear(xt, wt, bt, attrs))).data;
  const a4 = array4(xf, wf, bf).toArray();
  let maxErr = 0;
  for (let r = 0; r < L; r++)
    for (let o = 0; o < d; o++) maxErr = Math.max(maxErr, Math.abs(a4[r][o >> 2][o & 3] - ref[r * d + o]));
  const names = Object.keys(ways);
  for (let i = 0; i < 2; i++) for (const n of names) ways[n]();
  const times = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < PAIRS; i++) {
    const order = i % 2 === 0 ? names : [...names].reverse();
    for (const n of order) {
      const t0 = performance.now();
      ways[n]();
      times[n].push(performance.now() - t0);
    }
  }
  const share = (n) => median(times.raw.map((t, i) => t / times[n][i]));
  console.log(
    `L=${L} d=${d}: raw ${median(times.raw).toFixed(2)} ms, gpu.js Array(4) ${median(times.array4).toFixed(2)} ms ` +
      `(${(100 * share('array4')).toFixed(0)}% of raw's speed), gpu.js flat ${median(times.flat).toFixed(2)} ms ` +
      `(${(100 * share('flat')).toFixed(0)}%); Array(4) max |Δ| vs raw ${maxErr.toExponential(1)}; ${PAIRS} rounds`,
  );
  for (const t of [xt, wt, bt]) backend.dispose(t);
  for (const t of [xf, wf, bf]) t.delete();
  // false: keep the shared context (gpu.js would otherwise destroy it with the kernel).
  for (const k of [array4, flat, ...copies]) k.destroy(false);
}
await backend.destroy();
