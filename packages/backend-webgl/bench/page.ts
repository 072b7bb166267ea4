/**
 * Runs in headless Chromium (see run.mjs): the same multi-head self-attention block on qkv's
 * `webgl` backend and on tfjs's WebGL backend (tf ops), same weights and input, same page.
 * For each size: first run (shader compile + run) and the median steady-state time, both
 * including the read-back of `attention` and `residual` to the host.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgl';
import { type AttentionWeights, BackendRegistry, createAttention, type Tensor } from '@qkv/core';
import { webglBackend } from '../src/index.js';

interface SizeResult {
  L: number;
  qkv: { firstMs: number; steadyMs: number; runs: number[] };
  tfjs: { firstMs: number; steadyMs: number; runs: number[] };
  ratio: number;
  maxAbsDiff: number;
  maxAbs: number;
}

const params = new URLSearchParams(location.search);
const sizes = (params.get('sizes') ?? '128,512,1024').split(',').map(Number);
const runs = Number(params.get('runs') ?? 3);
const dModel = 512;
const H = 8;
const hd = dModel / H;

const log = (s: string) => {
  (document.getElementById('log') as HTMLElement).textContent += `${s}\n`;
  console.log(s);
};

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = (shape: number[], r: () => number, scale: number): Tensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale) };
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function timeIt(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** The same block from tf ops: X·W + b projections, per-head softmax(QKᵀ·scale)·V, output projection, residual. */
function tfjsAttention(x: tf.Tensor2D, w: Record<string, tf.Tensor>, L: number): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const proj = (wn: string, bn: string) => tf.add(tf.matMul(x, w[wn] as tf.Tensor2D), w[bn] as tf.Tensor1D);
    // [L, H·hd] → [H, L, hd]
    const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [L, H, hd]), [1, 0, 2]) as tf.Tensor3D;
    const q = heads(proj('wq', 'bq'));
    const k = heads(proj('wk', 'bk'));
    const v = heads(proj('wv', 'bv'));
    const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd));
    const weights = tf.softmax(scores);
    const ctx = tf.reshape(tf.transpose(tf.matMul(weights, v), [1, 0, 2]), [L, dModel]) as tf.Tensor2D;
    const attention = tf.add(tf.matMul(ctx, w.wo as tf.Tensor2D), w.bo as tf.Tensor1D);
    return [attention, tf.add(x, attention)];
  });
}

async function main(): Promise<void> {
  await tf.setBackend('webgl');
  await tf.ready();
  const registry = new BackendRegistry().register(webglBackend);
  const r = rng(7);
  const s = 1 / Math.sqrt(dModel);
  const weights: AttentionWeights = {
    wq: rand([dModel, dModel], r, s),
    bq: rand([dModel], r, 0.1),
    wk: rand([dModel, dModel], r, s),
    bk: rand([dModel], r, 0.1),
    wv: rand([dModel, dModel], r, s),
    bv: rand([dModel], r, 0.1),
    wo: rand([dModel, dModel], r, s),
    bo: rand([dModel], r, 0.1),
  };
  const tw: Record<string, tf.Tensor> = {};
  for (const [name, t] of Object.entries(weights) as [string, Tensor][]) tw[name] = tf.tensor(t.data, [...t.shape]);
  const glInfo = (() => {
    const gl = document.createElement('canvas').getContext('webgl2');
    const ext = gl?.getExtension('WEBGL_debug_renderer_info');
    return gl && ext ? String(gl.getParameter(ext.UNMASKED_RENDERER_WEBGL)) : 'unknown';
  })();
  log(`renderer: ${glInfo}; tfjs backend: ${tf.getBackend()}; runs per size: ${runs}`);

  const attn = await createAttention({ dModel, numHeads: H }, weights, { backend: 'webgl', registry });
  const results: SizeResult[] = [];
  try {
    for (const L of sizes) {
      const query = rand([1, L, dModel], r, 1);
      const x = tf.tensor2d(query.data, [L, dModel]);
      // qkv: first run compiles this shape's kernels.
      let qkvOut: Tensor | null = null;
      const qFirst = await timeIt(async () => {
        qkvOut = (await attn.run({ query })).attention;
      });
      const qRuns: number[] = [];
      for (let i = 0; i < runs; i++) qRuns.push(await timeIt(() => attn.run({ query })));
      // tfjs: same, reading both outputs back.
      let tfOut: Float32Array | null = null;
      const tFirst = await timeIt(async () => {
        const [a, res] = tfjsAttention(x, tw, L);
        tfOut = (await a.data()) as Float32Array;
        await res.data();
        tf.dispose([a, res]);
      });
      const tRuns: number[] = [];
      for (let i = 0; i < runs; i++)
        tRuns.push(
          await timeIt(async () => {
            const [a, res] = tfjsAttention(x, tw, L);
            await a.data();
            await res.data();
            tf.dispose([a, res]);
          }),
        );
      x.dispose();
      // Numerical agreement first: a fast wrong answer is no answer.
      const qa = (qkvOut as unknown as Tensor).data;
      const ta = tfOut as unknown as Float32Array;
      let maxAbsDiff = 0;
      let maxAbs = 0;
      for (let i = 0; i < qa.length; i++) {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs((qa[i] as number) - (ta[i] as number)));
        maxAbs = Math.max(maxAbs, Math.abs(ta[i] as number));
      }
      const res: SizeResult = {
        L,
        qkv: { firstMs: qFirst, steadyMs: median(qRuns), runs: qRuns },
        tfjs: { firstMs: tFirst, steadyMs: median(tRuns), runs: tRuns },
        ratio: median(qRuns) / median(tRuns),
        maxAbsDiff,
        maxAbs,
      };
      results.push(res);
      log(
        `L=${L}: qkv webgl first ${qFirst.toFixed(0)} ms, steady ${res.qkv.steadyMs.toFixed(0)} ms | tfjs-webgl first ${tFirst.toFixed(0)} ms, steady ${res.tfjs.steadyMs.toFixed(0)} ms | qkv/tfjs ${res.ratio.toFixed(2)} | max|Δ| ${maxAbsDiff.toExponential(2)} (max|y| ${maxAbs.toFixed(2)})`,
      );
    }
  } finally {
    await attn.dispose();
    for (const t of Object.values(tw)) t.dispose();
  }
  (window as unknown as { __bench: unknown }).__bench = { renderer: glInfo, runs, dModel, numHeads: H, results };
}

main().catch((e: Error) => {
  log(`bench failed: ${e.stack ?? e.message}`);
  (window as unknown as { __bench: unknown }).__bench = { error: String(e.stack ?? e.message) };
});
