// Every implementation the bench times, behind one interface:
//   create(problem) → { next(), run(): Promise<Float32Array> /* ΔE [L, dModel] */, dispose() }
// next() swaps in a fresh copy of the input (same values) before each timed run.
// `problem` is { L, dModel, H, causal, x [L·dModel], weights {wq,bq,wk,bk,wv,bv,wo,bo} }, the same
// seeded inputs for everyone. All compute ΔE = softmax(mask(Q·Kᵀ/√hd))·V·Wo + bo with
// Q = X·Wq + bq etc. (row-vector weights), batch 1.

import { cpuBackend } from '@qkv/backend-cpu';
import { workersBackend } from '@qkv/backend-workers';
import { BackendRegistry, createAttention } from '@qkv/core';
import { float, model, node, tensor } from './onnx.mjs';

/** The one place thread counts are chosen: the machine the goals are stated for has 2 cores. */
export const THREADS = 2;

function qkv(backend, backendOptions) {
  return async (p) => {
    const registry = new BackendRegistry().register(cpuBackend).register(workersBackend);
    const hd = p.dModel / p.H;
    const toTensor = (name) => ({ shape: p.shapes[name], data: p.weights[name] });
    const weights = Object.fromEntries(['wq', 'bq', 'wk', 'bk', 'wv', 'bv', 'wo', 'bo'].map((n) => [n, toTensor(n)]));
    const attn = await createAttention({ dModel: p.dModel, numHeads: p.H, headDim: hd, causal: p.causal }, weights, {
      registry,
      backend,
      backendOptions,
    });
    let query = { shape: [1, p.L, p.dModel], data: p.x };
    return {
      /** Which cpu kernel build ran (the report says it next to the figure). */
      kernelBuild: attn.selection.kernelBuild,
      next: () => {
        query = { shape: [1, p.L, p.dModel], data: p.x.slice() };
      },
      run: async () => (await attn.run({ query })).attention.data,
      dispose: () => attn.dispose(),
    };
  };
}

function tfjs(backendName) {
  return async (p) => {
    const tf = await import('@tensorflow/tfjs-core');
    if (backendName === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    else await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend(backendName);
    await tf.ready();
    const { L, dModel: D, H } = p;
    const hd = D / H;
    const w = Object.fromEntries(Object.entries(p.weights).map(([n, a]) => [n, tf.tensor(a, p.shapes[n])]));
    let x = tf.tensor(p.x, [L, D]);
    // Causal as an additive [L, L] mask (0 / −∞), the usual way to write it with standard ops.
    const mask = p.causal
      ? tf.tensor(
          Float32Array.from({ length: L * L }, (_, e) => (e % L > Math.floor(e / L) ? -Infinity : 0)),
          [L, L],
        )
      : null;
    const heads = (t) => tf.transpose(tf.reshape(t, [L, H, hd]), [1, 0, 2]); // [H, L, hd]
    return {
      next: () => {
        x.dispose();
        x = tf.tensor(p.x.slice(), [L, D]);
      },
      run: async () => {
        const out = tf.tidy(() => {
          const q = heads(tf.add(tf.matMul(x, w.wq), w.bq));
          const k = heads(tf.add(tf.matMul(x, w.wk), w.bk));
          const v = heads(tf.add(tf.matMul(x, w.wv), w.bv));
          let s = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)); // [H, L, L]
          if (mask) s = tf.add(s, mask);
          const o = tf.matMul(tf.softmax(s), v); // [H, L, hd]
          const concat = tf.reshape(tf.transpose(o, [1, 0, 2]), [L, D]);
          return tf.add(tf.matMul(concat, w.wo), w.bo);
        });
        const data = await out.data();
        out.dispose();
        return data;
      },
      dispose: () => {
        for (const t of Object.values(w)) t.dispose();
        x.dispose();
        mask?.dispose();
      },
    };
  };
}

/** The projections shared by both onnx graphs: X [1, L, D] → Q, K, V [1, L, D] (+ biases unless folded). */
function projections(withBias) {
  const nodes = [];
  for (const n of ['q', 'k', 'v']) {
    nodes.push(node('MatMul', ['X', `w${n}`], [withBias ? `${n}0` : n]));
    if (withBias) nodes.push(node('Add', [`${n}0`, `b${n}`], [n]));
  }
  return nodes;
}

function onnx(graph, threads = THREADS) {
  return async (p) => {
    const ort = (await import('onnxruntime-node')).default;
    const { L, dModel: D, H } = p;
    const hd = D / H;
    // The mha graph folds bq, bk, bv into the op's packed bias input.
    const init = Object.entries(p.weights)
      .filter(([n]) => graph === 'standard' || !['bq', 'bk', 'bv'].includes(n))
      .map(([n, a]) => tensor(n, p.shapes[n], a));
    let nodes;
    if (graph === 'mha') {
      // com.microsoft MultiHeadAttention takes projected Q, K, V and the packed [3D] bias.
      const qkvBias = new Float32Array(3 * D);
      qkvBias.set(p.weights.bq, 0);
      qkvBias.set(p.weights.bk, D);
      qkvBias.set(p.weights.bv, 2 * D);
      init.push(tensor('bqkv', [3 * D], qkvBias));
      nodes = [
        ...projections(false),
        node(
          'MultiHeadAttention',
          ['q', 'k', 'v', 'bqkv'],
          ['o'],
          { num_heads: H, unidirectional: p.causal ? 1 : 0, scale: float(1 / Math.sqrt(hd)) },
          'com.microsoft',
        ),
      ];
    } else {
      init.push(tensor('headsShape', [4], BigInt64Array.from([1n, BigInt(L), BigInt(H), BigInt(hd)])));
      init.push(tensor('concatShape', [3], BigInt64Array.from([1n, BigInt(L), BigInt(D)])));
      init.push(tensor('scale', [], Float32Array.of(1 / Math.sqrt(hd))));
      nodes = [
        ...projections(true),
        node('Reshape', ['q', 'headsShape'], ['q4']),
        node('Transpose', ['q4'], ['qh'], { perm: [0, 2, 1, 3] }), // [1, H, L, hd]
        node('Reshape', ['k', 'headsShape'], ['k4']),
        node('Transpose', ['k4'], ['khT'], { perm: [0, 2, 3, 1] }), // [1, H, hd, L]
        node('Reshape', ['v', 'headsShape'], ['v4']),
        node('Transpose', ['v4'], ['vh'], { perm: [0, 2, 1, 3] }),
        node('MatMul', ['qh', 'khT'], ['s']),
        node('Mul', ['s', 'scale'], [p.causal ? 'scaled' : 'masked']),
      ];
      if (p.causal) {
        init.push(
          tensor(
            'causalMask',
            [L, L],
            Float32Array.from({ length: L * L }, (_, e) => (e % L > Math.floor(e / L) ? -Infinity : 0)),
          ),
        );
        nodes.push(node('Add', ['scaled', 'causalMask'], ['masked']));
      }
      nodes.push(
        node('Softmax', ['masked'], ['pr'], { axis: -1 }),
        node('MatMul', ['pr', 'vh'], ['oh']),
        node('Transpose', ['oh'], ['o4'], { perm: [0, 2, 1, 3] }),
        node('Reshape', ['o4', 'concatShape'], ['o']),
      );
    }
    nodes.push(node('MatMul', ['o', 'wo'], ['o1']), node('Add', ['o1', 'bo'], ['Y']));
    const bytes = model({ nodes, initializers: init, inputs: [['X', [1, L, D]]], outputs: [['Y', [1, L, D]]] });
    const session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
    let X = new ort.Tensor('float32', p.x, [1, L, D]);
    return {
      next: () => {
        X = new ort.Tensor('float32', p.x.slice(), [1, L, D]);
      },
      run: async () => (await session.run({ X })).Y.data,
      dispose: () => session.release(),
    };
  };
}

/**
 * name → { create, threads, note }. `materialises`: holds the [H, L, L] score tensor (so its
 * memory grows with L²).
 */
export const IMPLEMENTATIONS = {
  'qkv-cpu': {
    create: qkv('cpu'),
    threads: 1,
    note: 'qkv cpu backend, the best WebAssembly build this Node has (relaxed-SIMD FMA on Node 22+, else SIMD128)',
  },
  'qkv-cpu-simd128': {
    create: qkv('cpu', { kernels: 'simd128' }),
    threads: 1,
    note: 'qkv cpu backend forced to the SIMD128 build (the FMA build’s A/B partner in one run)',
  },
  'qkv-workers': {
    create: qkv('workers', { threads: THREADS }),
    threads: THREADS,
    note: 'qkv workers backend, SIMD kernels per thread',
  },
  'qkv-cpu-reference': {
    create: qkv('cpu', { kernels: 'reference' }),
    threads: 1,
    note: 'qkv cpu backend, plain TypeScript reference kernels',
  },
  'ort-mha': { create: onnx('mha'), threads: THREADS, note: 'onnxruntime-node, com.microsoft MultiHeadAttention' },
  'ort-mha-1t': {
    create: onnx('mha', 1),
    threads: 1,
    note: 'onnxruntime-node, com.microsoft MultiHeadAttention on one thread (what qkv-cpu is measured against)',
  },
  'ort-standard': {
    create: onnx('standard'),
    threads: THREADS,
    note: 'onnxruntime-node, standard ONNX ops',
    materialises: true,
  },
  'tfjs-wasm': { create: tfjs('wasm'), threads: 1, note: '@tensorflow/tfjs-backend-wasm', materialises: true },
  'tfjs-cpu': { create: tfjs('cpu'), threads: 1, note: '@tensorflow/tfjs-backend-cpu', materialises: true },
};
