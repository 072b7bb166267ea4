/**
 * How the webgpu backend drives its device: tensors are storage buffers; kernels record compute
 * dispatches into one open command encoder that is submitted when a result is read back (or on
 * the next macrotask), so a run's kernels go to the GPU as one submission; pipelines are compiled
 * once per signature; every buffer made is counted and destroyed.
 */
import { type BackendTensor, QkvError, sizeOf } from '@qkv/core';
import type { GpuDevice } from './device.js';

const STORAGE = 0x80; // GPUBufferUsage.STORAGE (the globals are absent in Node until Dawn loads)
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;
const UNIFORM = 0x40;

/** A backend tensor: float32 values in a storage buffer on the device. */
export class WebGPUTensor implements BackendTensor {
  readonly shape: readonly number[];
  readonly buffer: GPUBuffer;
  disposed = false;
  constructor(shape: readonly number[], buffer: GPUBuffer) {
    this.shape = shape;
    this.buffer = buffer;
  }
}

/** Buffers alive on every device of this realm (tensors, uniforms, read-backs): for leak tests. */
let buffersAlive = 0;
export const liveBuffers = (): number => buffersAlive;

/** The largest grid dimension WebGPU guarantees; bigger 1-D grids fold into x · y. */
export const MAX_GROUPS_PER_DIM = 65535;

/** A dispatch's uniform block: 4-byte scalars in WGSL declaration order. */
export class Params {
  readonly #view: DataView;
  #at = 0;
  constructor(count: number) {
    // Uniform structs round up to 16 bytes.
    this.#view = new DataView(new ArrayBuffer(Math.max(16, Math.ceil((count * 4) / 16) * 16)));
  }
  u(v: number): this {
    this.#view.setUint32(this.#at, v, true);
    this.#at += 4;
    return this;
  }
  f(v: number): this {
    this.#view.setFloat32(this.#at, v, true);
    this.#at += 4;
    return this;
  }
  get bytes(): ArrayBuffer {
    return this.#view.buffer as ArrayBuffer;
  }
}

export interface Dispatch {
  /** Pipeline cache key: the kernel and every constant its WGSL bakes in. */
  readonly key: string;
  readonly wgsl: () => string;
  readonly params: Params;
  /** Storage buffers at bindings 1 … n (the uniform block is binding 0). */
  readonly buffers: readonly GPUBuffer[];
  readonly groups: readonly [number, number?, number?];
}

/** A 1-D grid of n workgroups as [x, y] within the per-dimension limit; shaders use `flatGroup`. */
export function grid1d(n: number): [number, number] {
  return n <= MAX_GROUPS_PER_DIM ? [Math.max(1, n), 1] : [MAX_GROUPS_PER_DIM, Math.ceil(n / MAX_GROUPS_PER_DIM)];
}
/** WGSL: the flat workgroup index of a `grid1d` dispatch. */
export const flatGroup = 'let group = wid.x + wid.y * nwg.x;';

export class Runtime {
  readonly gpu: GpuDevice;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  /** Buffers the open encoder may still use: destroyed right after it is submitted. */
  #afterSubmit: GPUBuffer[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  #error: string | null = null;
  dispatches = 0;
  submits = 0;

  readonly #onError = (e: Event) => {
    this.#error ??= (e as GPUUncapturedErrorEvent).error.message;
  };

  constructor(gpu: GpuDevice) {
    this.gpu = gpu;
    gpu.device.addEventListener('uncapturederror', this.#onError);
  }

  /** Submits what is left and stops listening to the (shared) device. */
  close(): void {
    this.flush();
    this.device.removeEventListener('uncapturederror', this.#onError);
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  alive(): void {
    if (this.gpu.lostReason !== null) throw this.gpu.lostError();
  }

  createBuffer(bytes: number, usage: number, mapped = false): GPUBuffer {
    // Bindings must not be empty and copies move whole 4-byte words.
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const b = this.device.createBuffer({ size, usage, mappedAtCreation: mapped });
    buffersAlive++;
    return b;
  }

  destroyBuffer(b: GPUBuffer): void {
    if (this.#encoder !== null) {
      this.#afterSubmit.push(b);
      return;
    }
    b.destroy();
    buffersAlive--;
  }

  tensor(shape: readonly number[]): WebGPUTensor {
    return new WebGPUTensor(shape, this.createBuffer(sizeOf(shape) * 4, STORAGE | COPY_SRC | COPY_DST));
  }

  upload(shape: readonly number[], data: Float32Array): WebGPUTensor {
    const b = this.createBuffer(data.length * 4, STORAGE | COPY_SRC | COPY_DST, true);
    new Float32Array(b.getMappedRange()).set(data);
    b.unmap();
    return new WebGPUTensor(shape, b);
  }

  /** The open encoder (recording starts a macrotask flush, so work never waits on a read). */
  encoder(): GPUCommandEncoder {
    this.alive();
    if (this.#pass !== null) {
      this.#pass.end();
      this.#pass = null;
    }
    if (this.#encoder === null) {
      this.#encoder = this.device.createCommandEncoder();
      this.#flushTimer = setTimeout(() => this.flush(), 0);
    }
    return this.#encoder;
  }

  pipeline(key: string, wgsl: () => string): GPUComputePipeline {
    let p = this.gpu.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: wgsl(), label: key });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
      this.gpu.pipelines.set(key, p);
    }
    return p;
  }

  dispatch(d: Dispatch): void {
    const pipeline = this.pipeline(d.key, d.wgsl);
    const uniform = this.createBuffer(d.params.bytes.byteLength, UNIFORM, true);
    new Uint8Array(uniform.getMappedRange()).set(new Uint8Array(d.params.bytes));
    uniform.unmap();
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform } }];
    d.buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer } }));
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const enc = this.encoder();
    this.#pass ??= enc.beginComputePass();
    this.#pass.setPipeline(pipeline);
    this.#pass.setBindGroup(0, bindGroup);
    this.#pass.dispatchWorkgroups(d.groups[0], d.groups[1] ?? 1, d.groups[2] ?? 1);
    this.dispatches++;
    this.#afterSubmit.push(uniform);
  }

  /** Copies whole float rows between buffers, in recording order with the dispatches. */
  copy(src: GPUBuffer, srcFloat: number, dst: GPUBuffer, dstFloat: number, floats: number): void {
    this.encoder().copyBufferToBuffer(src, srcFloat * 4, dst, dstFloat * 4, floats * 4);
  }

  /** Submits what is recorded; then frees what it was the last user of. */
  flush(): void {
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    const enc = this.#encoder;
    if (enc === null) return;
    this.#pass?.end();
    this.#pass = null;
    this.#encoder = null;
    if (this.gpu.lostReason === null) {
      this.device.queue.submit([enc.finish()]);
      this.submits++;
    }
    for (const b of this.#afterSubmit) {
      b.destroy();
      buffersAlive--;
    }
    this.#afterSubmit = [];
  }

  /** Reads a tensor back; rejects with CONTEXT_LOST (never hangs) if the device goes away. */
  async read(t: WebGPUTensor): Promise<Float32Array> {
    const n = sizeOf(t.shape);
    const staging = this.createBuffer(n * 4, MAP_READ | COPY_DST);
    this.copy(t.buffer, 0, staging, 0, n);
    this.flush();
    try {
      await Promise.race([staging.mapAsync(MAP_READ), this.gpu.lost]);
      if (this.#error !== null) {
        const message = this.#error;
        this.#error = null;
        throw new QkvError('BACKEND_FAILED', `webgpu backend: the device reported an error: ${message}`);
      }
      return new Float32Array(staging.getMappedRange(), 0, n).slice();
    } catch (e) {
      if (e instanceof QkvError) throw e;
      this.alive();
      throw new QkvError('BACKEND_FAILED', `webgpu backend: reading a result back failed: ${(e as Error).message}`, {
        cause: e,
      });
    } finally {
      this.destroyBuffer(staging);
    }
  }
}
