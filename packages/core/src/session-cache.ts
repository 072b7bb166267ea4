import type { Backend, BackendTensor } from './backend.js';
import type { Tensor } from './tensor.js';

/**
 * A session's K/V cache: two [B, capacity, width] stores (width = KVH·hd), on the backend
 * ('device', appended in place by `writeRows`) or in host memory ('host'), shared by the sessions
 * forked from one another until one of them writes (copy on write: `session.fork()` is O(1), the
 * first step of a session that shares its cache copies it once).
 */
export class KvCache {
  /** Sessions holding this cache; a write needs it to be 1. */
  refs = 1;
  readonly batch: number;
  readonly capacity: number;
  readonly width: number;
  /** 'device': backend tensors; 'host': Float32Arrays. Exactly one pair is set. */
  readonly k: BackendTensor | null;
  readonly v: BackendTensor | null;
  readonly kHost: Float32Array | null;
  readonly vHost: Float32Array | null;

  private constructor(
    batch: number,
    capacity: number,
    width: number,
    device: [BackendTensor, BackendTensor] | null,
    host: [Float32Array, Float32Array] | null,
  ) {
    this.batch = batch;
    this.capacity = capacity;
    this.width = width;
    this.k = device?.[0] ?? null;
    this.v = device?.[1] ?? null;
    this.kHost = host?.[0] ?? null;
    this.vHost = host?.[1] ?? null;
  }

  get device(): boolean {
    return this.k !== null;
  }

  /** A zeroed cache; `data` (K then V, [B, capacity, width] each) fills it instead. */
  static async allocate(
    backend: Backend,
    device: boolean,
    batch: number,
    capacity: number,
    width: number,
    data?: [Float32Array, Float32Array],
  ): Promise<KvCache> {
    const n = batch * capacity * width;
    const [kData, vData] = data ?? [new Float32Array(n), new Float32Array(n)];
    if (!device) return new KvCache(batch, capacity, width, null, [kData, vData]);
    const shape = [batch, capacity, width];
    const k = await backend.upload({ shape, data: kData });
    let v: BackendTensor;
    try {
      v = await backend.upload({ shape, data: vData });
    } catch (e) {
      backend.dispose(k);
      throw e;
    }
    return new KvCache(batch, capacity, width, [k, v], null);
  }

  /** Both stores as host arrays (a download for a device cache). */
  async read(backend: Backend): Promise<[Float32Array, Float32Array]> {
    if (this.kHost && this.vHost) return [this.kHost, this.vHost];
    const k = await backend.download(this.k as BackendTensor);
    const v = await backend.download(this.v as BackendTensor);
    return [k.data, v.data];
  }

  /**
   * A private copy (refs 1), with per batch `count` rows moved from row `from` to row `to` when
   * `move` is given (compaction of a window cache); this cache is released once.
   */
  async copy(backend: Backend, move?: { from: number; to: number; count: number }): Promise<KvCache> {
    const [k, v] = await this.read(backend);
    const data: [Float32Array, Float32Array] = [k.slice(), v.slice()];
    if (move) {
      const { capacity, width } = this;
      for (const arr of data) {
        for (let b = 0; b < this.batch; b++) {
          const base = b * capacity * width;
          arr.copyWithin(base + move.to * width, base + move.from * width, base + (move.from + move.count) * width);
        }
      }
    }
    const out = await KvCache.allocate(backend, this.device, this.batch, this.capacity, this.width, data);
    this.release(backend);
    return out;
  }

  /** One holder less; the last frees the backend tensors. */
  release(backend: Backend): void {
    this.refs--;
    if (this.refs > 0) return;
    if (this.k) backend.dispose(this.k);
    if (this.v) backend.dispose(this.v);
  }

  /** Host cache: writes rows [B, t, width] of K or V at row `at` of every batch. */
  writeHost(which: 'k' | 'v', rows: Float32Array, t: number, at: number): void {
    const cache = (which === 'k' ? this.kHost : this.vHost) as Float32Array;
    const { capacity, width } = this;
    for (let b = 0; b < this.batch; b++) {
      cache.set(rows.subarray(b * t * width, (b + 1) * t * width), (b * capacity + at) * width);
    }
  }

  /** Host cache: the first Lk rows of every batch, densely packed [B, Lk, width]. */
  hostRows(which: 'k' | 'v', Lk: number): Tensor {
    const cache = (which === 'k' ? this.kHost : this.vHost) as Float32Array;
    const { capacity, width } = this;
    const all = new Float32Array(this.batch * Lk * width);
    for (let b = 0; b < this.batch; b++) {
      all.set(cache.subarray(b * capacity * width, (b * capacity + Lk) * width), b * Lk * width);
    }
    return { shape: [this.batch, Lk, width], data: all };
  }
}
