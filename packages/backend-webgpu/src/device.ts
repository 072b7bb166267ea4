/**
 * The GPU side of the webgpu backend: finding a WebGPU implementation (a browser's
 * `navigator.gpu`, or Dawn's Node binding, the `webgpu` package), probing it, and one shared
 * device that every backend in this realm uses while any holds it. A lost device is dropped at
 * once, so the next backend created gets a new one.
 */
import { QkvError } from '@qkv/core';

/** The Node provider, an optional peer: `npm install webgpu@0.6.2`. */
export const NODE_PROVIDER = 'webgpu';
/** Where Debian's Chromium keeps its SwiftShader Vulkan driver (used when nothing else is set). */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

type Probe = { ok: true; gpu: GPU; adapter: GPUAdapter; provider: string } | { ok: false; reason: string };

const isNode = () => typeof process !== 'undefined' && typeof process.versions?.node === 'string';

let nodeGpu: Promise<GPU> | null = null;
/** Where the Vulkan loader finds installed drivers (their ICD manifests) on Linux. */
const ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

async function loadNodeProvider(): Promise<GPU> {
  // Dawn's Vulkan loader reads its variables when the instance is created. With none set, no
  // driver installed (a machine without a GPU) and Debian Chromium's SwiftShader driver present,
  // point the loader at SwiftShader; a machine with a real driver keeps it.
  const env = process.env;
  if (env.VK_ICD_FILENAMES === undefined && env.VK_DRIVER_FILES === undefined) {
    const { existsSync, readdirSync } = await import('node:fs');
    const installed = ICD_DIRS.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));
    if (!installed && existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  // A computed specifier: bundlers for browsers must not try to resolve the Node addon.
  const spec = NODE_PROVIDER;
  const m = (await import(/* @vite-ignore */ spec)) as { create(flags: string[]): GPU };
  return m.create([]);
}

/** Finds an adapter, or says exactly which step failed. Never throws. */
export async function probeGpu(): Promise<Probe> {
  let gpu: GPU | undefined;
  let provider: string;
  if (typeof navigator !== 'undefined' && (navigator as Navigator & { gpu?: GPU }).gpu) {
    gpu = (navigator as Navigator & { gpu: GPU }).gpu;
    provider = 'navigator.gpu';
  } else if (isNode()) {
    provider = `Dawn (${NODE_PROVIDER} package)`;
    try {
      nodeGpu ??= loadNodeProvider();
      gpu = await nodeGpu;
    } catch (e) {
      nodeGpu = null;
      return {
        ok: false,
        reason: `the Node provider is missing: the "${NODE_PROVIDER}" package (Dawn) could not be loaded (${(e as Error).message.split('\n')[0]}); install webgpu@0.6.2`,
      };
    }
  } else {
    return { ok: false, reason: 'no navigator.gpu: this browser has no WebGPU (or it is disabled)' };
  }
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      const hint = isNode()
        ? ` (Node: Dawn needs a Vulkan driver and the Vulkan loader, libvulkan1; VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? 'unset'})`
        : '';
      return { ok: false, reason: `no WebGPU adapter: ${provider}.requestAdapter() returned null${hint}` };
    }
    return { ok: true, gpu, adapter, provider };
  } catch (e) {
    return { ok: false, reason: `no WebGPU adapter: ${provider}.requestAdapter() threw ${(e as Error).message}` };
  }
}

export function describeAdapter(adapter: GPUAdapter): string {
  const i = adapter.info;
  return [i.vendor, i.architecture, i.description || i.device].filter((s) => s).join(' ');
}

/** One GPUDevice, shared by the backends that hold it; pipelines are cached on it. */
export class GpuDevice {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly provider: string;
  /** Compiled pipelines by signature (kernel + the constants baked into its WGSL). */
  readonly pipelines = new Map<string, GPUComputePipeline>();
  /** Set once the device is lost (not when we destroy it ourselves). */
  lostReason: string | null = null;
  /** Rejects once the device is lost: in-flight reads race against it and never hang. */
  readonly lost: Promise<never>;
  holders = 0;
  #destroying = false;

  private constructor(device: GPUDevice, adapterName: string, provider: string) {
    this.device = device;
    this.adapterName = adapterName;
    this.provider = provider;
    this.lost = device.lost.then((info) => {
      if (!this.#destroying) this.lostReason = `${info.reason}: ${info.message}`;
      if (shared === this) shared = null;
      throw this.lostError();
    });
    // Nobody may be awaiting it yet: an unobserved rejection must not crash the process.
    this.lost.catch(() => {});
  }

  lostError(): QkvError {
    return new QkvError(
      'CONTEXT_LOST',
      `webgpu backend: the GPU device was lost (${this.lostReason ?? 'destroyed'}); runs in flight were rejected, create a new attention handle (it gets a new device)`,
    );
  }

  static async open(): Promise<GpuDevice> {
    const p = await probeGpu();
    if (!p.ok) throw new QkvError('BACKEND_UNAVAILABLE', `webgpu backend: ${p.reason}`);
    const l = p.adapter.limits;
    // Ask for the adapter's own limits where they exceed the defaults: larger tensors fit.
    const device = await p.adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      },
    });
    return new GpuDevice(device, describeAdapter(p.adapter), p.provider);
  }

  /** Test hook: what a driver reset does, without being one. */
  simulateLoss(): void {
    this.device.destroy();
    this.lostReason = 'unknown: simulated device loss';
  }

  destroy(): void {
    this.#destroying = true;
    this.pipelines.clear();
    this.device.destroy();
  }
}

let shared: GpuDevice | null = null;
let opening: Promise<GpuDevice> | null = null;

/** The shared device (opened on first use, or again after a loss), held until `releaseDevice`. */
export async function acquireDevice(): Promise<GpuDevice> {
  if (!shared) {
    opening ??= GpuDevice.open().finally(() => {
      opening = null;
    });
    const d = await opening;
    if (d.lostReason === null) shared = d;
  }
  const d = shared ?? (await acquireDevice());
  d.holders++;
  return d;
}

/** Drops one hold; the last one destroys the device, so Node can exit. */
export function releaseDevice(d: GpuDevice): void {
  d.holders--;
  if (d.holders > 0) return;
  if (shared === d) shared = null;
  d.destroy();
}

/** Devices currently open (0 once every backend is destroyed). */
export function liveDevices(): number {
  return shared === null ? 0 : 1;
}
