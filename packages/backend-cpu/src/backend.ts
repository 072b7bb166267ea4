import {
  type Backend,
  type BackendFactory,
  type BackendTensor,
  type FusedKernels,
  type Kernels,
  QkvError,
  sizeOf,
  type Tensor,
} from '@qkv/core';
import * as k from './kernels/index.js';

/** A cpu tensor is just its data; `disposed` catches use-after-free in tests. */
export class CpuTensor implements BackendTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  disposed = false;
  constructor(shape: readonly number[], data: Float32Array = new Float32Array(sizeOf(shape))) {
    this.shape = shape;
    this.data = data;
  }
}

function data(t: CpuTensor | null): Float32Array | null {
  if (t === null) return null;
  if (t.disposed) throw new QkvError('DISPOSED', 'cpu backend: a tensor was used after it was disposed');
  return t.data;
}
const d = (t: CpuTensor) => data(t) as Float32Array;

export class CpuBackend implements Backend<CpuTensor> {
  readonly name = 'cpu';
  readonly #live = new Set<CpuTensor>();

  #make(shape: readonly number[], arr?: Float32Array): CpuTensor {
    const t = new CpuTensor(shape, arr);
    this.#live.add(t);
    return t;
  }

  upload(t: Tensor): CpuTensor {
    // A private copy: the caller may reuse its array while a run is in flight.
    return this.#make([...t.shape], Float32Array.from(t.data));
  }

  async download(t: CpuTensor): Promise<Tensor> {
    return { shape: [...t.shape], data: Float32Array.from(d(t)) };
  }

  dispose(t: CpuTensor): void {
    t.disposed = true;
    this.#live.delete(t);
  }

  liveTensors(): number {
    return this.#live.size;
  }

  readonly kernels: Kernels<CpuTensor> = {
    positionalEncoding: (attrs) => this.#make([attrs.length, attrs.dModel], k.positionalEncoding(attrs)),
    add: (a, b) => {
      const out = this.#make(a.shape);
      k.add(d(a), d(b), out.data);
      return out;
    },
    linear: (x, w, bias, attrs) => {
      const out = this.#make([...x.shape.slice(0, -1), attrs.outFeatures]);
      k.linear(d(x), d(w), data(bias), out.data, attrs);
      return out;
    },
    scores: (q, key, attrs) => {
      const out = this.#make([attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength]);
      k.scores(d(q), d(key), out.data, attrs);
      return out;
    },
    scale: (s, attrs) => {
      const out = this.#make(s.shape);
      k.scale(d(s), out.data, attrs);
      return out;
    },
    mask: (s, pad, am, attrs) => {
      const out = this.#make(s.shape);
      k.mask(d(s), data(pad), data(am), out.data, attrs);
      return out;
    },
    softmax: (s, attrs) => {
      const out = this.#make(s.shape);
      k.softmax(d(s), out.data, attrs);
      return out;
    },
    weightedSum: (w, v, attrs) => {
      const out = this.#make([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim]);
      k.weightedSum(d(w), d(v), out.data, attrs);
      return out;
    },
    rotary: (x, attrs) => {
      const out = this.#make(x.shape);
      k.rotary(d(x), out.data, attrs);
      return out;
    },
    // Appends in place and hands back the cache itself (a session's persistent tensor).
    writeRows: (cache, rows, attrs) => {
      k.writeRows(d(cache), d(rows), attrs);
      return cache;
    },
  };

  readonly fused: FusedKernels<CpuTensor> = {
    fusedAttention: (q, key, v, pad, am, attrs) => {
      const out = this.#make([attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim]);
      k.fusedAttention(d(q), d(key), d(v), data(pad), data(am), out.data, attrs);
      return out;
    },
  };

  destroy(): void {
    for (const t of this.#live) t.disposed = true;
    this.#live.clear();
  }
}

/** The cpu backend's factory: register it with `registry.register(cpuBackend)`. */
export const cpuBackend: BackendFactory = {
  name: 'cpu',
  priority: 10,
  description: 'plain TypeScript kernels on Float32Array, on the calling thread; the reference',
  isAvailable: async () => ({ available: true }),
  // The reference kernels implement every optional feature (rotary, alibi, window, maskMod, scoreMod).
  supports: () => true,
  create: async () => new CpuBackend(),
};
