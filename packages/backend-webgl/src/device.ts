/**
 * The GL side of the webgl backend: loading gpu.js (and, in Node, headless-gl) lazily, probing
 * whether a float-capable context can be made, and the shared, reference-counted `GlDevice` that
 * owns one context, its compiled kernels and an instrumented count of its live GL objects.
 *
 * Nothing here runs at import time: `gl` is a native addon that may be missing or unbuilt, and a
 * browser bundle must never see it, so both packages are imported only inside the probe / create.
 */
import type { GPU, IKernelRunShortcut } from 'gpu.js';
import { RawGl } from './raw.js';

/** gpu.js modes the backend accepts: a browser's WebGL2 or WebGL1, or Node's headless-gl (WebGL1). */
export type WebGLMode = 'webgl2' | 'webgl' | 'headlessgl';
export const MODES: readonly WebGLMode[] = ['webgl2', 'webgl', 'headlessgl'];

type GpuJs = typeof import('gpu.js');
type CreateGL = (width: number, height: number, options?: object) => WebGLRenderingContext | null;

export const isBrowser = (): boolean => typeof window !== 'undefined' && typeof document !== 'undefined';

let gpuJsModule: Promise<GpuJs> | null = null;
/** gpu.js is CommonJS in Node (named exports via cjs-module-lexer) and a UMD bundle in browsers. */
export function loadGpuJs(): Promise<GpuJs> {
  gpuJsModule ??= import('gpu.js').then((m) => {
    const mod = m as GpuJs & { default?: GpuJs };
    return (mod.GPU ? mod : mod.default) as GpuJs;
  });
  return gpuJsModule;
}

/**
 * Imports a package named at run time, so that browser bundlers never try to resolve the addon:
 * a parameter, not a local constant, which bundlers (Vite's dependency optimizer) inline into a
 * literal `import('gl')` that they then fail to resolve.
 */
function importByName(name: string): Promise<unknown> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name);
}

/** headless-gl's factory. */
async function loadHeadlessGl(): Promise<CreateGL> {
  const m = (await importByName('gl')) as CreateGL | { default?: CreateGL };
  return (typeof m === 'function' ? m : m.default) as CreateGL;
}

function displayText(): string {
  const env = typeof process !== 'undefined' ? process.env : {};
  return env.DISPLAY ? `DISPLAY=${env.DISPLAY}` : 'no X display (DISPLAY is unset; run under `xvfb-run -a`)';
}

export function defaultMode(): WebGLMode {
  return isBrowser() ? 'webgl2' : 'headlessgl';
}

interface MadeContext {
  gl: WebGLRenderingContext;
  canvas: object | undefined;
  /** Frees the context itself (STACKGL_destroy_context / WEBGL_lose_context). */
  destroy(): void;
}

/**
 * Makes a context for `mode`, or returns why not. Float render targets are required: the
 * backend is single precision only (float textures), never the 8-bit packed fallback.
 */
async function makeContext(mode: WebGLMode): Promise<MadeContext | string> {
  if (mode === 'headlessgl') {
    if (isBrowser()) return 'headlessgl mode is for Node; in a browser use webgl2 or webgl';
    let createGL: CreateGL;
    try {
      createGL = await loadHeadlessGl();
    } catch (e) {
      return `headless-gl (the optional native \`gl\` package: \`npm install gl\`) is not installed or not built: ${(e as Error).message.split('\n')[0]}`;
    }
    const gl = createGL(1, 1, { preserveDrawingBuffer: true });
    if (!gl) return `headless-gl could not create a GL context: ${displayText()}`;
    const destroy = () => (gl.getExtension('STACKGL_destroy_context') as { destroy(): void } | null)?.destroy();
    if (!gl.getExtension('OES_texture_float')) {
      destroy();
      return 'headless-gl has no OES_texture_float: float textures are required (single precision)';
    }
    return { gl, canvas: undefined, destroy };
  }
  if (typeof document === 'undefined' && typeof OffscreenCanvas === 'undefined') {
    return `${mode} mode needs a browser canvas; in Node use headlessgl`;
  }
  const canvas: HTMLCanvasElement | OffscreenCanvas =
    typeof document !== 'undefined' ? document.createElement('canvas') : new OffscreenCanvas(1, 1);
  const attrs = {
    alpha: false,
    antialias: false,
    depth: false,
    preserveDrawingBuffer: true,
    premultipliedAlpha: false,
  };
  const gl = canvas.getContext(mode, attrs) as WebGLRenderingContext | null;
  if (!gl) return `this browser cannot create a ${mode === 'webgl2' ? 'WebGL2' : 'WebGL'} context`;
  const destroy = () => (gl.getExtension('WEBGL_lose_context') as { loseContext(): void } | null)?.loseContext();
  // Rendering into float textures: core in WebGL2 with EXT_color_buffer_float; WebGL1 needs OES_texture_float.
  const floatExt = mode === 'webgl2' ? 'EXT_color_buffer_float' : 'OES_texture_float';
  if (!gl.getExtension(floatExt)) {
    destroy();
    return `${mode} context has no ${floatExt}: float render targets are required (single precision)`;
  }
  return { gl, canvas, destroy };
}

/** Whether `mode` can run here; the reason when not. Never throws. */
export async function probe(
  mode: WebGLMode,
): Promise<{ ok: true; maxTextureSize: number } | { ok: false; reason: string }> {
  try {
    const made = await makeContext(mode);
    if (typeof made === 'string') return { ok: false, reason: made };
    const maxTextureSize = made.gl.getParameter(made.gl.MAX_TEXTURE_SIZE) as number;
    made.destroy();
    await loadGpuJs();
    return { ok: true, maxTextureSize };
  } catch (e) {
    return { ok: false, reason: `probing ${mode} failed: ${(e as Error).message}` };
  }
}

/** What `GlDevice.kernel` needs to build (or find) one compiled kernel. */
export interface KernelSpec {
  /** Op name plus every compile-time value: the cache key is `${name}|${JSON of constants}|${output}`. */
  readonly name: string;
  /** A `function name(args) { … }` source string for gpu.js to translate to GLSL. */
  readonly source: string;
  /** Output length: every tensor is a flat, 1-D float texture. */
  readonly output: number;
  readonly constants: Readonly<Record<string, number>>;
}

type GlWithCounts = WebGLRenderingContext & { __qkvCounts?: GlCounts };
export interface GlCounts {
  textures: number;
  framebuffers: number;
}

/**
 * One GL context with its gpu.js instance and compiled kernels, shared by every backend of the
 * same mode (one JS thread, and each kernel call is synchronous, so sharing is safe). Sharing
 * means a shape signature is compiled once per process, not once per attention handle, and
 * browsers' limit of ~16 live contexts is never approached. The last release destroys it all.
 */
export class GlDevice {
  readonly mode: WebGLMode;
  readonly gpu: GPU;
  readonly gl: WebGLRenderingContext;
  readonly maxTextureSize: number;
  readonly counts: GlCounts;
  /** The hand-written packed programs (raw.ts, packed.ts) on the same context. */
  readonly raw: RawGl;
  readonly #kernels = new Map<string, IKernelRunShortcut>();
  readonly #destroyContext: () => void;
  refs = 0;
  destroyed = false;
  /** Replaced in the device map after its context was lost (or released): never handed out again. */
  retired = false;

  private constructor(mode: WebGLMode, gpu: GPU, made: MadeContext, counts: GlCounts) {
    this.mode = mode;
    this.gpu = gpu;
    this.gl = made.gl;
    this.counts = counts;
    this.maxTextureSize = made.gl.getParameter(made.gl.MAX_TEXTURE_SIZE) as number;
    this.#destroyContext = made.destroy;
    this.raw = new RawGl(made.gl, mode === 'webgl2');
  }

  static async open(mode: WebGLMode): Promise<GlDevice> {
    const made = await makeContext(mode);
    if (typeof made === 'string') throw new Error(made);
    const { GPU } = await loadGpuJs();
    const counts = instrument(made.gl);
    const gpu = new GPU({ mode, context: made.gl, ...(made.canvas ? { canvas: made.canvas } : {}) });
    return new GlDevice(mode, gpu, made, counts);
  }

  /** Compiled once per (op, constants, output length); gpu.js compiles lazily on the first call. */
  kernel(spec: KernelSpec): IKernelRunShortcut {
    const key = `${spec.name}|${JSON.stringify(spec.constants)}|${spec.output}`;
    let k = this.#kernels.get(key);
    if (!k) {
      k = this.gpu.createKernel(spec.source, {
        output: [spec.output],
        constants: spec.constants,
        // Textures in, textures out: intermediates never leave the GPU between nodes…
        pipeline: true,
        // …and each call gets its own output texture. A mutable pipeline kernel reuses one
        // texture per kernel, so a handle from an earlier call would be overwritten by the next.
        immutable: true,
        precision: 'single',
        // highp everywhere: 'speed' lets drivers pick mediump for some values.
        tactic: 'precision',
        // Loops are bounded by constants, which gpu.js emits as GLSL constants; no
        // silent truncation at loopMaxIterations.
        dynamicOutput: false,
      });
      this.#kernels.set(key, k);
    }
    return k;
  }

  /** Compiled gpu.js kernels plus raw programs. */
  get kernelCount(): number {
    return this.#kernels.size + this.raw.programCount;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const k of this.#kernels.values()) k.destroy(false);
    this.#kernels.clear();
    this.raw.destroy();
    // gpu.destroy() only frees the context when it still has kernels; free it explicitly too.
    await this.gpu.destroy();
    this.#destroyContext();
    this.counts.textures = 0;
    this.counts.framebuffers = 0;
  }
}

/** Counts live textures and framebuffers on a context by wrapping its create/delete calls. */
function instrument(gl: GlWithCounts): GlCounts {
  if (gl.__qkvCounts) return gl.__qkvCounts;
  const counts: GlCounts = { textures: 0, framebuffers: 0 };
  const createTexture = gl.createTexture.bind(gl);
  const deleteTexture = gl.deleteTexture.bind(gl);
  const createFramebuffer = gl.createFramebuffer.bind(gl);
  const deleteFramebuffer = gl.deleteFramebuffer.bind(gl);
  gl.createTexture = () => {
    const t = createTexture();
    if (t) counts.textures++;
    return t;
  };
  gl.deleteTexture = (t: WebGLTexture | null) => {
    if (t && gl.isTexture(t)) counts.textures--;
    deleteTexture(t);
  };
  gl.createFramebuffer = () => {
    const f = createFramebuffer();
    if (f) counts.framebuffers++;
    return f;
  };
  gl.deleteFramebuffer = (f: WebGLFramebuffer | null) => {
    if (f && gl.isFramebuffer(f)) counts.framebuffers--;
    deleteFramebuffer(f);
  };
  gl.__qkvCounts = counts;
  return counts;
}

const devices = new Map<WebGLMode, Promise<GlDevice>>();
/** Live devices, for leak tests: each is one GL context. */
export function liveDevices(): number {
  return devices.size;
}

export async function acquireDevice(mode: WebGLMode): Promise<GlDevice> {
  let p = devices.get(mode);
  if (!p) {
    p = GlDevice.open(mode);
    devices.set(mode, p);
    p.catch(() => devices.delete(mode));
  }
  const d = await p;
  // Released to zero (and torn down) while we waited: open a fresh one.
  if (d.destroyed) return acquireDevice(mode);
  if (d.gl.isContextLost()) {
    // A lost context takes every texture and compiled program with it: new handles get a fresh
    // context, while the handles still on the old one fail with CONTEXT_LOST and release it.
    if (!d.retired) {
      d.retired = true;
      devices.delete(mode);
    }
    return acquireDevice(mode);
  }
  d.refs++;
  return d;
}

export async function releaseDevice(d: GlDevice): Promise<void> {
  d.refs--;
  if (d.refs > 0) return;
  // Forget it before the async teardown so a concurrent acquire opens a fresh context (unless a
  // lost context was already replaced by a newer one, which must stay).
  if (!d.retired) devices.delete(d.mode);
  d.retired = true;
  await d.destroy();
}
