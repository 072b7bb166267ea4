/**
 * A complete backend in a few dozen lines of deliberately naive code: the executor tests run on
 * it, so @qkv/core is tested without depending on any real backend. It is also the shortest
 * answer to "how do I add a backend" (see docs/ARCHITECTURE.md).
 */
import type { Backend, BackendFactory, BackendTensor, Kernels, Tensor } from '../src/index.js';
import { sinusoidalPositionalEncoding } from '../src/index.js';

export class NaiveTensor implements BackendTensor {
  constructor(
    readonly shape: readonly number[],
    readonly data: Float32Array,
  ) {}
}

export class NaiveBackend implements Backend<NaiveTensor> {
  readonly name = 'naive';
  readonly live = new Set<NaiveTensor>();
  calls: string[] = [];
  failOn: string | null = null;

  #t(shape: readonly number[], data: Float32Array) {
    const t = new NaiveTensor(shape, data);
    this.live.add(t);
    return t;
  }
  #call(op: string) {
    this.calls.push(op);
    if (this.failOn === op) throw new Error(`injected failure in ${op}`);
  }
  upload = (t: Tensor) => this.#t(t.shape, Float32Array.from(t.data));
  download = async (t: NaiveTensor) => ({ shape: [...t.shape], data: Float32Array.from(t.data) });
  dispose = (t: NaiveTensor) => void this.live.delete(t);
  liveTensors = () => this.live.size;
  destroy = () => this.live.clear();

  kernels: Kernels<NaiveTensor> = {
    positionalEncoding: (a) => (
      this.#call('positionalEncoding'),
      this.#t([a.length, a.dModel], sinusoidalPositionalEncoding(a.length, a.dModel, a.offset).data)
    ),
    add: (a, b) => (
      this.#call('add'),
      this.#t(
        a.shape,
        a.data.map((v, i) => v + (b.data[i % b.data.length] as number)),
      )
    ),
    linear: (x, w, b, { rows, inFeatures: n, outFeatures: m }) => {
      this.#call('linear');
      const out = new Float32Array(rows * m);
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < m; o++) {
          let s = b ? (b.data[o] as number) : 0;
          for (let i = 0; i < n; i++) s += (x.data[r * n + i] as number) * (w.data[i * m + o] as number);
          out[r * m + o] = s;
        }
      return this.#t([...x.shape.slice(0, -1), m], out);
    },
    scores: (q, k, { batch: B, numHeads: H, numKVHeads: G, queryLength: Lq, keyLength: Lk, headDim: d }) => {
      this.#call('scores');
      const out = new Float32Array(B * H * Lq * Lk);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let i = 0; i < Lq; i++)
            for (let j = 0; j < Lk; j++) {
              let s = 0;
              for (let c = 0; c < d; c++)
                s +=
                  (q.data[(b * Lq + i) * H * d + h * d + c] as number) *
                  (k.data[(b * Lk + j) * G * d + Math.floor(h / (H / G)) * d + c] as number);
              out[((b * H + h) * Lq + i) * Lk + j] = s;
            }
      return this.#t([B, H, Lq, Lk], out);
    },
    scale: (s, { scale }) => (
      this.#call('scale'),
      this.#t(
        s.shape,
        s.data.map((v) => v * scale),
      )
    ),
    mask: (s, pad, am, { numHeads: H, queryLength: Lq, keyLength: Lk, causal }) => {
      this.#call('mask');
      return this.#t(
        s.shape,
        s.data.map((v, idx) => {
          const j = idx % Lk;
          const i = Math.floor(idx / Lk) % Lq;
          const b = Math.floor(idx / (Lk * Lq * H));
          const hidden = (causal && j > i + Lk - Lq) || (pad !== null && pad.data[b * Lk + j] !== 0);
          return hidden ? Number.NEGATIVE_INFINITY : v + (am ? (am.data[i * Lk + j] as number) : 0);
        }),
      );
    },
    softmax: (s, { rows, cols }) => {
      this.#call('softmax');
      const out = new Float32Array(s.data.length);
      for (let r = 0; r < rows; r++) {
        const row = s.data.subarray(r * cols, (r + 1) * cols);
        const max = Math.max(...row);
        if (max === Number.NEGATIVE_INFINITY) continue;
        const e = row.map((v) => Math.exp(v - max));
        const sum = e.reduce((x, y) => x + y, 0);
        out.set(
          e.map((v) => v / sum),
          r * cols,
        );
      }
      return this.#t(s.shape, out);
    },
    weightedSum: (w, v, { batch: B, numHeads: H, numKVHeads: G, queryLength: Lq, keyLength: Lk, headDim: d }) => {
      this.#call('weightedSum');
      const out = new Float32Array(B * Lq * H * d);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let i = 0; i < Lq; i++)
            for (let c = 0; c < d; c++) {
              let s = 0;
              for (let j = 0; j < Lk; j++)
                s +=
                  (w.data[((b * H + h) * Lq + i) * Lk + j] as number) *
                  (v.data[(b * Lk + j) * G * d + Math.floor(h / (H / G)) * d + c] as number);
              out[(b * Lq + i) * H * d + h * d + c] = s;
            }
      return this.#t([B, Lq, H * d], out);
    },
  };
}

export function naiveFactory(
  overrides: Partial<BackendFactory> = {},
  onCreate?: (b: NaiveBackend) => void,
): BackendFactory {
  return {
    name: 'naive',
    priority: 1,
    isAvailable: async () => ({ available: true }),
    create: async () => {
      const b = new NaiveBackend();
      onCreate?.(b);
      return b;
    },
    ...overrides,
  };
}
