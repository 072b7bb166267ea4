/**
 * Runs in one headless Chromium page (see run.mjs): the same multi-head self-attention layer
 * (d = 512, h = 8, bias, no mask) on qkv's `webgpu` backend, on @tensorflow/tfjs-backend-webgpu
 * (tf ops) and on onnxruntime-web's WebGPU execution provider (com.microsoft MultiHeadAttention
 * between MatMul projections), same seeded weights and input as `pnpm bench` (bench/src/problem.mjs).
 * For each L: the first run (shader compilation + run) and steady runs, interleaved
 * qkv → tfjs → ort so the three see the same machine; every time includes reading ΔE back.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import { type AttentionWeights, BackendRegistry, createAttention } from '@qkv/core';
import * as ort from 'onnxruntime-web/webgpu';
// @ts-expect-error: plain .mjs modules of the root bench (no types)
import { float, model, node, tensor } from '../../../bench/src/onnx.mjs';
// @ts-expect-error: as above
import { makeProblem } from '../../../bench/src/problem.mjs';
import { webgpuBackend } from '../src/index.js';

interface Problem {
  L: number;
  dModel: number;
  H: number;
  x: Float32Array;
  weights: Record<string, Float32Array>;
  shapes: Record<string, number[]>;
}
interface Impl {
  run(): Promise<Float32Array>;
  dispose(): Promise<void> | void;
}

const params = new URLSearchParams(location.search);
const sizes = (params.get('sizes') ?? '128,512,1024').split(',').map(Number);
const runs = Number(params.get('runs') ?? 3);
const D = 512;
const H = 8;

const log = (s: string) => {
  (document.getElementById('log') as HTMLElement).textContent += `${s}\n`;
  console.log(s);
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function qkvImpl(p: Problem): Promise<Impl> {
  const registry = new BackendRegistry().register(webgpuBackend);
  const weights = Object.fromEntries(
    Object.entries(p.weights).map(([n, data]) => [n, { shape: p.shapes[n] as number[], data }]),
  ) as unknown as AttentionWeights;
  const attn = await createAttention({ dModel: D, numHeads: H }, weights, { backend: 'webgpu', registry });
  const query = { shape: [1, p.L, D], data: p.x };
  return { run: async () => (await attn.run({ query })).attention.data, dispose: () => attn.dispose() };
}

async function tfjsImpl(p: Problem): Promise<Impl> {
  const hd = D / H;
  const w = Object.fromEntries(
    Object.entries(p.weights).map(([n, a]) => [n, tf.tensor<tf.Rank>(a, p.shapes[n] as number[])]),
  ) as Record<string, tf.Tensor2D>;
  const x = tf.tensor2d(p.x, [p.L, D]);
  const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [p.L, H, hd]), [1, 0, 2]) as tf.Tensor3D;
  return {
    run: async () => {
      const out = tf.tidy(() => {
        const q = heads(tf.add(tf.matMul(x, w.wq as tf.Tensor2D), w.bq as tf.Tensor));
        const k = heads(tf.add(tf.matMul(x, w.wk as tf.Tensor2D), w.bk as tf.Tensor));
        const v = heads(tf.add(tf.matMul(x, w.wv as tf.Tensor2D), w.bv as tf.Tensor));
        const s = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd));
        const o = tf.reshape(tf.transpose(tf.matMul(tf.softmax(s), v), [1, 0, 2]), [p.L, D]) as tf.Tensor2D;
        return tf.add(tf.matMul(o, w.wo as tf.Tensor2D), w.bo as tf.Tensor);
      });
      const data = (await out.data()) as Float32Array;
      out.dispose();
      return data;
    },
    dispose: () => {
      for (const t of Object.values(w)) t.dispose();
      x.dispose();
    },
  };
}

async function ortImpl(p: Problem, executionProvider = 'webgpu'): Promise<Impl> {
  // As the Node bench's 'ort-mha': bias-free projections, bq|bk|bv packed into the op's bias input.
  const init = Object.entries(p.weights)
    .filter(([n]) => !['bq', 'bk', 'bv'].includes(n))
    .map(([n, a]) => tensor(n, p.shapes[n], a));
  const packed = new Float32Array(3 * D);
  ['bq', 'bk', 'bv'].forEach((n, i) => packed.set(p.weights[n] as Float32Array, i * D));
  init.push(tensor('bqkv', [3 * D], packed));
  const nodes = ['q', 'k', 'v'].map((n) => node('MatMul', ['X', `w${n}`], [n]));
  nodes.push(
    node(
      'MultiHeadAttention',
      ['q', 'k', 'v', 'bqkv'],
      ['o'],
      { num_heads: H, scale: float(1 / Math.sqrt(D / H)) },
      'com.microsoft',
    ),
    node('MatMul', ['o', 'wo'], ['o1']),
    node('Add', ['o1', 'bo'], ['Y']),
  );
  const bytes = model({ nodes, initializers: init, inputs: [['X', [1, p.L, D]]], outputs: [['Y', [1, p.L, D]]] });
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [executionProvider] });
  const X = new ort.Tensor('float32', p.x, [1, p.L, D]);
  return {
    run: async () => (await session.run({ X })).Y?.data as Float32Array,
    dispose: () => session.release(),
  };
}

const IMPLS = { qkv: qkvImpl, tfjs: tfjsImpl, ort: ortImpl } as const;
type Name = keyof typeof IMPLS;

async function main(): Promise<void> {
  await tf.setBackend('webgpu');
  await tf.ready();
  // onnxruntime-web's wasm files come from the package itself (the dev server serves node_modules).
  ort.env.wasm.wasmPaths = new URL('/node_modules/onnxruntime-web/dist/', location.href).href;
  ort.env.wasm.numThreads = 1;
  const adapter = await navigator.gpu?.requestAdapter();
  const gpu = adapter ? JSON.stringify(adapter.info) : 'no adapter';
  log(`adapter: ${gpu}; tfjs backend: ${tf.getBackend()}; steady runs per size: ${runs}`);
  const results = [];
  for (const L of sizes) {
    const p = makeProblem({ L, d: D, h: H, causal: false }) as Problem;
    const impls = {} as Record<Name, Impl>;
    const first = {} as Record<Name, number>;
    const outs = {} as Record<Name, Float32Array>;
    for (const name of Object.keys(IMPLS) as Name[]) {
      const t0 = performance.now();
      impls[name] = await IMPLS[name](p);
      outs[name] = await impls[name].run();
      first[name] = performance.now() - t0;
    }
    const steady = { qkv: [], tfjs: [], ort: [] } as Record<Name, number[]>;
    for (let i = 0; i < runs; i++) {
      for (const name of Object.keys(IMPLS) as Name[]) {
        const t0 = performance.now();
        await impls[name].run();
        steady[name].push(performance.now() - t0);
      }
    }
    for (const impl of Object.values(impls)) await impl.dispose();
    // The same onnx model on onnxruntime-web's CPU (wasm) EP, for correctness only: tells a
    // difference of the WebGPU EP from one of the model.
    const wasm = await ortImpl(p, 'wasm');
    const ortWasm = await wasm.run();
    await wasm.dispose();
    // A fast wrong answer is no answer: all three must agree.
    const diff = (a: Float32Array, b: Float32Array) =>
      a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
    const maxAbs = outs.qkv.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const r = {
      L,
      firstMs: first,
      steadyMs: { qkv: median(steady.qkv), tfjs: median(steady.tfjs), ort: median(steady.ort) },
      runs: steady,
      qkvOverTfjs: median(steady.qkv.map((q, i) => q / (steady.tfjs[i] as number))),
      qkvOverOrt: median(steady.qkv.map((q, i) => q / (steady.ort[i] as number))),
      maxAbsDiff: { tfjs: diff(outs.qkv, outs.tfjs), ort: diff(outs.qkv, outs.ort), ortWasm: diff(outs.qkv, ortWasm) },
      maxAbs,
    };
    results.push(r);
    log(
      `L=${L}: first qkv ${first.qkv.toFixed(0)} / tfjs ${first.tfjs.toFixed(0)} / ort ${first.ort.toFixed(0)} ms; steady qkv ${r.steadyMs.qkv.toFixed(0)} / tfjs ${r.steadyMs.tfjs.toFixed(0)} / ort ${r.steadyMs.ort.toFixed(0)} ms; qkv/tfjs ${r.qkvOverTfjs.toFixed(2)}, qkv/ort ${r.qkvOverOrt.toFixed(2)}; max|Δ| vs qkv: tfjs ${r.maxAbsDiff.tfjs.toExponential(1)}, ort-webgpu ${r.maxAbsDiff.ort.toExponential(1)}, ort-wasm ${r.maxAbsDiff.ortWasm.toExponential(1)}`,
    );
  }
  (window as unknown as { __bench: unknown }).__bench = { adapter: gpu, runs, dModel: D, numHeads: H, results };
}

main().catch((e: Error) => {
  log(`bench failed: ${e.stack ?? e.message}`);
  (window as unknown as { __bench: unknown }).__bench = { error: String(e.stack ?? e.message) };
});
