import {
  type AttentionConfig,
  assertKnownKeys,
  type Backend,
  type BackendCreateOptions,
  type BackendFactory,
  compileByRunning,
  describeValue,
  type FusedAttentionAttrs,
  type FusedKernels,
  formatShape,
  type GraphDims,
  type Kernels,
  QkvError,
  shaderSupports,
  sizeOf,
  type Tensor,
  type WarmupShape,
} from '@qkv/core';
import { acquireDevice, describeAdapter, type GpuDevice, probeGpu, releaseDevice } from './device.js';
import { BR, MAX_FUSED_HEAD_DIM } from './kernels/fusedAttention.js';
import * as k from './kernels/index.js';
import { TM } from './kernels/linear.js';
import { MAX_GROUPS_PER_DIM, Runtime, WebGPUTensor } from './runtime.js';

export interface WebGPUBackendOptions {
  /**
   * Lowers the per-buffer limit below the device's `maxStorageBufferBindingSize` (bytes), e.g.
   * to see LIMIT_EXCEEDED without allocating a gigabyte.
   */
  maxStorageBufferBindingSize?: number;
}
const OPTION_KEY_LIST = ['maxStorageBufferBindingSize'] as const;
const OPTION_KEYS = new Set<string>(OPTION_KEY_LIST);

function resolveOptions(options: BackendCreateOptions | undefined): WebGPUBackendOptions {
  const o = options ?? {};
  if (typeof o !== 'object' || o === null) {
    throw new QkvError(
      'INVALID_OPTION',
      `backendOptions (webgpu): expected an object like { maxStorageBufferBindingSize: 2 ** 20 }, got ${describeValue(o)}`,
    );
  }
  assertKnownKeys('backendOptions (webgpu)', o, OPTION_KEYS);
  const max = (o as WebGPUBackendOptions).maxStorageBufferBindingSize;
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 4)) {
    throw new QkvError(
      'INVALID_OPTION',
      `backendOptions.maxStorageBufferBindingSize: expected an integer number of bytes ≥ 4, got ${describeValue(max)}`,
    );
  }
  return o as WebGPUBackendOptions;
}

/**
 * The webgpu backend: WGSL compute kernels on one (shared) GPUDevice; tensors are storage
 * buffers from upload to download, and a run's kernels are recorded into one command encoder.
 */
export class WebGPUBackend implements Backend<WebGPUTensor> {
  readonly name = 'webgpu';
  readonly supports = webgpuSupports;
  /** Packed sequences: mask and fusedAttention take `sequenceIds`. */
  readonly inputs = ['sequenceIds'] as const;
  readonly runtime: Runtime;
  /** The per-buffer limit checkLimits enforces (bytes). */
  readonly maxBufferBytes: number;
  readonly #live = new Set<WebGPUTensor>();
  #destroyed = false;

  private constructor(gpu: GpuDevice, options: WebGPUBackendOptions) {
    this.runtime = new Runtime(gpu);
    const l = gpu.device.limits;
    this.maxBufferBytes = Math.min(
      l.maxStorageBufferBindingSize,
      l.maxBufferSize,
      options.maxStorageBufferBindingSize ?? Number.POSITIVE_INFINITY,
    );
  }

  static async create(options?: BackendCreateOptions): Promise<WebGPUBackend> {
    const o = resolveOptions(options);
    return new WebGPUBackend(await acquireDevice(), o);
  }

  get gpu(): GpuDevice {
    return this.runtime.gpu;
  }

  #alive(): void {
    if (this.#destroyed) throw new QkvError('DISPOSED', 'webgpu backend: used after destroy()');
    this.runtime.alive();
  }

  #track(t: WebGPUTensor): WebGPUTensor {
    this.#live.add(t);
    return t;
  }

  #use(t: WebGPUTensor): WebGPUTensor;
  #use(t: WebGPUTensor | null): WebGPUTensor | null;
  #use(t: WebGPUTensor | null): WebGPUTensor | null {
    if (t?.disposed) throw new QkvError('DISPOSED', 'webgpu backend: a tensor was used after it was disposed');
    return t;
  }

  /** Per-head constants (ALiBi slopes, sink logits) [H] for one dispatch (freed after it is submitted). */
  #perHead(s: readonly number[] | undefined): WebGPUTensor | null {
    return s === undefined ? null : this.runtime.upload([s.length], Float32Array.from(s));
  }
  #drop(t: WebGPUTensor | null): void {
    if (t) this.runtime.destroyBuffer(t.buffer);
  }

  upload(t: Tensor): WebGPUTensor {
    this.#alive();
    return this.#track(this.runtime.upload([...t.shape], t.data as Float32Array));
  }

  async download(t: WebGPUTensor): Promise<Tensor> {
    this.#alive();
    return { shape: [...t.shape], data: await this.runtime.read(this.#use(t)) };
  }

  dispose(t: WebGPUTensor): void {
    if (t.disposed) return;
    t.disposed = true;
    this.#live.delete(t);
    this.runtime.destroyBuffer(t.buffer);
  }

  liveTensors(): number {
    return this.#live.size;
  }

  /** Every kernel checks the device and its inputs first, and tracks its output. */
  #run<A extends unknown[]>(f: (...a: A) => WebGPUTensor): (...a: A) => WebGPUTensor {
    return (...a: A) => {
      this.#alive();
      for (const x of a) if (x instanceof WebGPUTensor) this.#use(x);
      return this.#track(f(...a));
    };
  }

  readonly kernels: Kernels<WebGPUTensor> = {
    positionalEncoding: this.#run((attrs) => k.positionalEncoding(this.runtime, attrs)),
    add: this.#run((a, b) => k.add(this.runtime, a, b)),
    linear: this.#run((x, w, bias, attrs) => k.linear(this.runtime, x, w, bias, attrs)),
    scores: this.#run((q, key, attrs) => k.scores(this.runtime, q, key, attrs)),
    scale: this.#run((s, attrs) => k.scale(this.runtime, s, attrs)),
    mask: this.#run((s, pad, am, attrs, ids) => {
      const slopes = this.#perHead(attrs.alibiSlopes);
      const out = k.mask(this.runtime, s, pad, am, slopes, this.#use(ids ?? null), attrs);
      this.#drop(slopes);
      return out;
    }),
    softmax: this.#run((s, attrs) => {
      const sinks = this.#perHead(attrs.sinks);
      const out = k.softmax(this.runtime, s, sinks, attrs);
      this.#drop(sinks);
      return out;
    }),
    logSumExp: this.#run((s, attrs) => {
      const sinks = this.#perHead(attrs.sinks);
      const out = k.logSumExp(this.runtime, s, sinks, attrs);
      this.#drop(sinks);
      return out;
    }),
    weightedSum: this.#run((w, v, attrs) => k.weightedSum(this.runtime, w, v, attrs)),
    rotary: this.#run((x, attrs) => k.rotary(this.runtime, x, attrs)),
    // Appends in place and hands back the cache itself (a session's persistent tensor).
    writeRows: (cache, rows, attrs) => {
      this.#alive();
      return k.writeRows(this.runtime, this.#use(cache), this.#use(rows), attrs);
    },
  };

  readonly fused: FusedKernels<WebGPUTensor> = {
    fusedAttention: this.#run((q, key, v, pad, am, attrs, ids) => this.#flash(q, key, v, pad, am, attrs, ids, null)),
    // The flash kernel writes each row's m + log l as it writes the row (returnLse stays fused).
    fusedAttentionLse: (q, key, v, pad, am, attrs, ids) => {
      this.#alive();
      const lse = this.#track(this.runtime.tensor([attrs.batch, attrs.numHeads, attrs.queryLength]));
      try {
        const heads = this.#run(this.#flash.bind(this))(q, key, v, pad, am, attrs, ids, lse);
        return [heads, lse] as const;
      } catch (e) {
        this.dispose(lse);
        throw e;
      }
    },
  };

  #flash(
    q: WebGPUTensor,
    key: WebGPUTensor,
    v: WebGPUTensor,
    pad: WebGPUTensor | null,
    am: WebGPUTensor | null,
    attrs: FusedAttentionAttrs,
    ids: WebGPUTensor | null | undefined,
    lse: WebGPUTensor | null,
  ): WebGPUTensor {
    const slopes = this.#perHead(attrs.alibiSlopes);
    const sinks = this.#perHead(attrs.sinks);
    try {
      return k.fusedAttention(this.runtime, q, key, v, pad, am, slopes, this.#use(ids ?? null), sinks, attrs, lse);
    } finally {
      this.#drop(slopes);
      this.#drop(sinks);
    }
  }

  /** Refuses, before any upload, a graph whose buffers or grids this device cannot hold. */
  checkLimits(dims: GraphDims, fused: boolean): void {
    const { batch: B, queryLength: Lq, keyLength: Lk, dModel, numHeads: H, headDim: hd, numKVHeads: KVH } = dims;
    const { keyDim, valueDim } = dims;
    const cap = dims.keyCapacity ?? Lk;
    const tensors: [string, number[]][] = [
      ['input, x, attention, residual [B, Lq, dModel]', [B, Lq, dModel]],
      // Fed only by cross-attention: self-attention (every KV-cache step) projects K, V from x.
      ...(dims.selfAttention
        ? []
        : ([
            ['key [B, Lk, keyDim]', [B, Lk, keyDim]],
            ['value [B, Lk, valueDim]', [B, Lk, valueDim]],
          ] as [string, number[]][])),
      ['wk [keyDim, KVH·hd]', [keyDim, KVH * hd]],
      ['wv [valueDim, KVH·hd]', [valueDim, KVH * hd]],
      ['q, heads [B, Lq, H·hd]', [B, Lq, H * hd]],
      ['k, v [B, Lk (or the cache capacity), KVH·hd]', [B, cap, KVH * hd]],
      ['wq, wo [dModel, H·hd]', [dModel, H * hd]],
      ['attnMask [Lq, Lk]', [Lq, Lk]],
    ];
    if (!fused) tensors.push(['scores, scaled, masked, weights [B, H, Lq, Lk]', [B, H, Lq, Lk]]);
    for (const [what, shape] of tensors) {
      const bytes = sizeOf(shape) * 4;
      if (bytes > this.maxBufferBytes) {
        throw new QkvError(
          'LIMIT_EXCEEDED',
          `webgpu backend: ${what} = ${formatShape(shape)} needs ${bytes} bytes in one buffer, over this device's maxStorageBufferBindingSize/maxBufferSize of ${this.maxBufferBytes} bytes${fused ? '' : '; drop returnWeights/capture of score nodes so the fused path can run'}`,
        );
      }
    }
    const grids: [string, number][] = [
      ['the projections: ⌈B·Lq / 64⌉ workgroups', Math.ceil((B * Lq) / TM)],
      // Self-attention projects K, V of the fed tokens only (a KV-cache step: the new ones).
      ['the key/value projections: ⌈B·Lk / 64⌉ workgroups', Math.ceil((B * (dims.selfAttention ? Lq : Lk)) / TM)],
    ];
    if (fused) {
      grids.push(['the flash kernel: B workgroups', B], ['the flash kernel: H workgroups', H]);
      grids.push([`the flash kernel: ⌈Lq / ${BR}⌉ workgroups`, Math.ceil(Lq / BR)]);
    }
    for (const [what, n] of grids) {
      if (n > MAX_GROUPS_PER_DIM) {
        throw new QkvError(
          'LIMIT_EXCEEDED',
          `webgpu backend: ${what} = ${n}, over maxComputeWorkgroupsPerDimension ${MAX_GROUPS_PER_DIM} (B ${B}, Lq ${Lq}, Lk ${Lk}, H ${H})`,
        );
      }
    }
    if (fused && hd > MAX_FUSED_HEAD_DIM) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `webgpu backend: headDim ${hd} is over the flash kernel's limit of ${MAX_FUSED_HEAD_DIM} (a query row and its accumulator live in registers); request weights to run the unfused chain`,
      );
    }
  }

  /**
   * Compiles (by running once on zeros) every pipeline a run of this config and shape needs,
   * and returns how long that took. Later handles share the device while any backend holds it,
   * and find the pipelines compiled.
   */
  warmup(config: AttentionConfig, shape: WarmupShape): Promise<number> {
    return compileByRunning(this, config, shape);
  }

  /** Test hook: makes the device lost, as a driver reset or a GPU process crash would. */
  loseDevice(): void {
    this.gpu.simulateLoss();
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const t of [...this.#live]) this.dispose(t);
    this.runtime.close();
    releaseDevice(this.gpu);
  }
}

export type { WarmupShape };

export interface Warmup {
  /** The adapter, e.g. "google swiftshader SwiftShader driver 5.0.0". */
  readonly adapter: string;
  /** First-run cost: WGSL compilation + one run, in ms. */
  readonly compileMs: number;
  /** Compiled pipelines now cached on the device. */
  readonly pipelines: number;
  /** Lets the device go (it is destroyed once no attention handle uses it either). */
  release(): Promise<void>;
}

/**
 * Compiles every pipeline for `config` at `shape` ahead of the first real run and keeps the
 * device (and so the pipelines) alive until `release()`: attention handles created in the
 * meantime start warm.
 */
export async function warmup(
  config: AttentionConfig,
  shape: WarmupShape,
  options?: WebGPUBackendOptions,
): Promise<Warmup> {
  const backend = await WebGPUBackend.create(options as BackendCreateOptions | undefined);
  try {
    const compileMs = await backend.warmup(config, shape);
    return {
      adapter: backend.gpu.adapterName,
      compileMs,
      pipelines: backend.gpu.pipelines.size,
      release: () => backend.destroy(),
    };
  } catch (e) {
    await backend.destroy();
    throw e;
  }
}

/**
 * Which optional features the WGSL kernels run: rotary, ALiBi, window and the serving features
 * (softcap, sink logits, sink tokens), not maskMod/scoreMod, JavaScript callbacks per score that
 * a shader cannot call.
 */
export const webgpuSupports = shaderSupports('webgpu', 'WGSL');

/**
 * The webgpu backend's factory. Priority 40, above webgl: compute shaders share workgroup memory
 * and write many outputs per thread, which fragment shaders cannot. `isAvailable()` asks for an
 * adapter (no device is made), so `auto` skips it with the reason where there is none.
 */
export const webgpuBackend: BackendFactory = {
  name: 'webgpu',
  priority: 40,
  description:
    'WGSL compute shaders on WebGPU: navigator.gpu in browsers, Dawn (the webgpu package) over Vulkan in Node; tiled matmul and flash attention, buffers kept on the GPU',
  isAvailable: async () => {
    const p = await probeGpu();
    if (!p.ok) return { available: false, reason: `webgpu backend: ${p.reason}` };
    return { available: true, detail: `${p.provider}: ${describeAdapter(p.adapter)}` };
  },
  supports: webgpuSupports,
  optionKeys: OPTION_KEY_LIST,
  create: (options) => WebGPUBackend.create(options),
};
