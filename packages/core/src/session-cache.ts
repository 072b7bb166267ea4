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
  /**
   * A packed session's sequence ids per row [B, capacity], on the host whatever the mode (one
   * float per token, uploaded as the step's `sequenceIds` or turned into its padding mask).
   */
  ids: Float32Array | null;

  private constructor(
    batch: number,
    capacity: number,
    width: number,
    device: [BackendTensor, BackendTensor] | null,
    host: [Float32Array, Float32Array] | null,
    ids: Float32Array | null,
  ) {
    this.batch = batch;
    this.capacity = capacity;
    this.width = width;
    this.k = device?.[0] ?? null;
    this.v = device?.[1] ?? null;
    this.kHost = host?.[0] ?? null;
    this.vHost = host?.[1] ?? null;
    this.ids = ids;
  }

  get device(): boolean {
    return this.k !== null;
  }

  /** A zeroed cache; `data` (K then V, [B, capacity, width] each) and `ids` fill it instead. */
  static async allocate(
    backend: Backend,
    device: boolean,
    batch: number,
    capacity: number,
    width: number,
    data?: [Float32Array, Float32Array],
    ids: Float32Array | null = null,
  ): Promise<KvCache> {
    const n = batch * capacity * width;
    const [kData, vData] = data ?? [new Float32Array(n), new Float32Array(n)];
    if (!device) return new KvCache(batch, capacity, width, null, [kData, vData], ids);
    const shape = [batch, capacity, width];
    // Where the backend's decode kernel reads it in place, if it says where (allocateCache).
    const place = (d: Float32Array) =>
      backend.allocateCache ? backend.allocateCache(shape, d) : backend.upload({ shape, data: d });
    const k = await place(kData);
    let v: BackendTensor;
    try {
      v = await place(vData);
    } catch (e) {
      backend.dispose(k);
      throw e;
    }
    return new KvCache(batch, capacity, width, [k, v], null, ids);
  }

  /** Both stores as host arrays (a download for a device cache). */
  async read(backend: Backend): Promise<[Float32Array, Float32Array]> {
    if (this.kHost && this.vHost) return [this.kHost, this.vHost];
    const k = await backend.download(this.k as BackendTensor);
    const v = await backend.download(this.v as BackendTensor);
    return [k.data, v.data];
  }

  /** A private copy (refs 1) for a session that shared this one; this cache is released once. */
  async copy(backend: Backend): Promise<KvCache> {
    const [k, v] = await this.read(backend);
    const data: [Float32Array, Float32Array] = [k.slice(), v.slice()];
    const out = await KvCache.allocate(
      backend,
      this.device,
      this.batch,
      this.capacity,
      this.width,
      data,
      this.ids?.slice() ?? null,
    );
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

  /** Packed session: writes the ids [B, t] of t new tokens at row `at` of every batch. */
  writeIds(ids: Float32Array, t: number, at: number): void {
    // A session that turns packed after a reset gets its id rows now.
    this.ids ??= new Float32Array(this.batch * this.capacity);
    const cache = this.ids;
    for (let b = 0; b < this.batch; b++) cache.set(ids.subarray(b * t, (b + 1) * t), b * this.capacity + at);
  }

  /** Packed session: the ids of the first Lk rows [B, Lk]. */
  idRows(Lk: number): Tensor {
    const cache = this.ids as Float32Array;
    const out = new Float32Array(this.batch * Lk);
    for (let b = 0; b < this.batch; b++) out.set(cache.subarray(b * this.capacity, b * this.capacity + Lk), b * Lk);
    return { shape: [this.batch, Lk], data: out };
  }

  /**
   * Packed session, one query per batch at row `queryRow`: the first Lk rows as a padding mask
   * [B, Lk] (1 where a row's id is not the query's), which is what the ids mean for one query and
   * holds however the rows are ordered (a wrapped window ring).
   */
  otherSequences(Lk: number, queryRow: number): Tensor {
    const cache = this.ids as Float32Array;
    const out = new Float32Array(this.batch * Lk);
    for (let b = 0; b < this.batch; b++) {
      const base = b * this.capacity;
      const id = cache[base + queryRow];
      for (let j = 0; j < Lk; j++) out[b * Lk + j] = cache[base + j] === id ? 0 : 1;
    }
    return { shape: [this.batch, Lk], data: out };
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
