import { describeValue, QkvError } from '@qkv/core';
import { WASM_RELAXED_SIMD_BASE64, WASM_SIMD128_BASE64 } from './wasm-bytes.generated.js';

/**
 * The two WebAssembly builds of assembly/kernels.ts (scripts/build-wasm.mjs), one source:
 * - 'relaxed-simd': 128-bit SIMD plus relaxed SIMD, `f32x4.relaxed_madd` (fused multiply-add) in
 *   the matrix-multiply and attention inner loops and in the exp polynomial;
 * - 'simd128': 128-bit SIMD only, a separate multiply and add (every engine with WASM SIMD).
 * Which one runs is decided once per backend (a kernel choice below) and reported by it; the hot
 * loops never branch on it.
 */
export type WasmBuild = 'relaxed-simd' | 'simd128';
/** What the cpu kernels of one backend run: a WebAssembly build, or the TypeScript reference. */
export type KernelBuild = WasmBuild | 'reference';
/** `backendOptions.kernels`: 'fast' = the best WebAssembly build this runtime has. */
export type KernelChoice = 'fast' | KernelBuild;

export const KERNEL_CHOICES: readonly KernelChoice[] = ['fast', 'relaxed-simd', 'simd128', 'reference'];

/** Best first: what 'fast' takes. */
const BY_PREFERENCE: readonly WasmBuild[] = ['relaxed-simd', 'simd128'];

/**
 * The smallest module that uses a relaxed op: one function (v128, v128, v128) → v128 returning
 * f32x4.relaxed_madd of its parameters. `WebAssembly.validate` of it says whether this engine
 * has relaxed SIMD (Node 22+, Chrome 114+, Firefox 145+; Node 20 only with
 * --experimental-wasm-relaxed-simd) without compiling the kernels.
 */
// biome-ignore format: one line per part of the module
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type 0: (v128 v128 v128) → v128
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x0a, 0x0d, 0x01, 0x0b, 0x00, // code: one body of 11 bytes, no locals
  0x20, 0x00, 0x20, 0x01, 0x20, 0x02, // local.get 0, 1, 2
  0xfd, 0x85, 0x02, // f32x4.relaxed_madd (0xfd 0x105)
  0x0b, // end
]);
/** The same function with f32x4.mul + f32x4.add: 128-bit SIMD alone. */
// biome-ignore format: one line per part of the module
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x10, 0x01, 0x0e, 0x00, // code: one body of 14 bytes, no locals
  0x20, 0x00, 0x20, 0x01, 0xfd, 0xe6, 0x01, // f32x4.mul (0xfd 0xe6)
  0x20, 0x02, 0xfd, 0xe4, 0x01, // f32x4.add (0xfd 0xe4)
  0x0b,
]);

/** What the kernels module exports (assembly/kernels.ts): byte pointers into its memory. */
export interface KernelExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  packPanels(b: number, K: number, N: number, ldb: number, out: number): void;
  packTransposed(
    src: number,
    rows: number,
    cols: number,
    ld: number,
    rowsPadded: number,
    colsPadded: number,
    out: number,
  ): void;
  gemm(a: number, M: number, K: number, bp: number, Np: number, bias: number, c: number): void;
  gatherRows(src: number, ld: number, rows: number, cols: number, dst: number, ldd: number, rowsPadded: number): void;
  scatterRows(src: number, lds: number, rows: number, cols: number, dst: number, ld: number): void;
  packKeys(
    src: number,
    ld: number,
    rows: number,
    cols: number,
    rowsPadded: number,
    colsPadded: number,
    out: number,
  ): void;
  /** 1 when V holds NaN or ±∞ (assembly/stage.ts). */
  packValues(src: number, ld: number, rows: number, cols: number, panelRows: number, out: number): number;
  attention(
    q: number,
    nq: number,
    hdp: number,
    kp: number,
    vp: number,
    Lkp: number,
    keyBias: number,
    am: number,
    amStride: number,
    o: number,
    m: number,
    l: number,
    s: number,
    scale: number,
    causal: number,
    iStart: number,
    causalOffset: number,
    vNonFinite: number,
  ): void;
}

let detected: Readonly<Record<WasmBuild, boolean>> | undefined;

/** Which builds this runtime validates (probed once per thread). */
export function wasmBuildSupport(): Readonly<Record<WasmBuild, boolean>> {
  if (detected === undefined) {
    const valid = (bytes: Uint8Array) => {
      try {
        return typeof WebAssembly === 'object' && WebAssembly.validate(bytes as BufferSource);
      } catch {
        return false;
      }
    };
    const simd = valid(SIMD_PROBE);
    detected = { simd128: simd, 'relaxed-simd': simd && valid(RELAXED_PROBE) };
  }
  return detected;
}

/** The best build this runtime has, or null without WebAssembly SIMD. */
export function bestWasmBuild(): WasmBuild | null {
  const support = wasmBuildSupport();
  return BY_PREFERENCE.find((b) => support[b]) ?? null;
}

function unsupported(build: WasmBuild): string {
  return build === 'relaxed-simd'
    ? 'this runtime has no WebAssembly relaxed SIMD (Node 22+, Chrome 114+, Firefox 145+; Node 20 needs --experimental-wasm-relaxed-simd)'
    : 'this runtime has no WebAssembly SIMD';
}

/**
 * Resolves `backendOptions.kernels` to what runs. 'fast' takes the best build and falls back to
 * the reference kernels only where WebAssembly SIMD is missing (the backend reports it); a build
 * named explicitly that this runtime lacks is refused, never replaced.
 */
export function resolveKernelChoice(choice: unknown, who: string): KernelBuild {
  const c = choice ?? 'fast';
  if (!KERNEL_CHOICES.includes(c as KernelChoice)) {
    throw new QkvError(
      'INVALID_OPTION',
      `backendOptions.kernels (${who}): expected one of ${KERNEL_CHOICES.map((k) => `'${k}'`).join(', ')}, got ${describeValue(c)}`,
    );
  }
  if (c === 'reference') return 'reference';
  if (c === 'fast') return bestWasmBuild() ?? 'reference';
  const build = c as WasmBuild;
  if (!wasmBuildSupport()[build]) {
    throw new QkvError(
      'CAPABILITY',
      `backendOptions.kernels (${who}): '${build}' cannot run here: ${unsupported(build)}`,
    );
  }
  return build;
}

const BASE64: Record<WasmBuild, string> = { 'relaxed-simd': WASM_RELAXED_SIMD_BASE64, simd128: WASM_SIMD128_BASE64 };

function bytes(build: WasmBuild): Uint8Array {
  const bin = atob(BASE64[build]);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** One instance per build per thread; each has its own linear memory. */
const instances = new Map<WasmBuild, WebAssembly.Instance>();

function instantiate(build: WasmBuild, module: WebAssembly.Module): WebAssembly.Instance {
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort: () => {
        throw new Error(`qkv wasm kernels (${build}): abort`);
      },
    },
  });
  instances.set(build, instance);
  return instance;
}

/**
 * Compiles a build asynchronously (browsers refuse synchronous compiles over 4 KiB on the main
 * thread): backends await this in `create()`, worker threads before they report ready.
 */
export async function preloadBuild(build: WasmBuild): Promise<void> {
  if (!instances.has(build)) {
    if (!wasmBuildSupport()[build]) throw new QkvError('CAPABILITY', `qkv wasm kernels: ${unsupported(build)}`);
    instantiate(build, await WebAssembly.compile(bytes(build) as BufferSource));
  }
}

/** The build's exports on this thread, compiled synchronously on first use if not preloaded. */
export function buildExports(build: WasmBuild): KernelExports {
  const have = instances.get(build) ?? compileNow(build);
  return have.exports as unknown as KernelExports;
}

function compileNow(build: WasmBuild): WebAssembly.Instance {
  if (!wasmBuildSupport()[build]) throw new QkvError('CAPABILITY', `qkv wasm kernels: ${unsupported(build)}`);
  return instantiate(build, new WebAssembly.Module(bytes(build) as BufferSource));
}

/** Bytes of linear memory the kernels hold on this thread, all builds together (it only grows). */
export function wasmMemoryBytes(): number {
  let total = 0;
  for (const i of instances.values()) total += (i.exports.memory as WebAssembly.Memory).buffer.byteLength;
  return total;
}
