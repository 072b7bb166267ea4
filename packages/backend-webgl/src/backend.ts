import {
  type AttentionConfig,
  type Backend,
  type BackendCreateOptions,
  type BackendFactory,
  type FusedKernels,
  formatShape,
  type GraphDims,
  type Kernels,
  QkvError,
  shaderSupports,
  sinusoidalPositionalEncoding,
  sizeOf,
  type Tensor,
} from '@qkv/core';
import { acquireDevice, defaultMode, type GlDevice, probe, releaseDevice, type WebGLMode } from './device.js';
import { add } from './ops/add.js';
import { copySpec } from './ops/common.js';
import { fusedAttention, fusedAttentionLse } from './ops/fusedAttention.js';
import { linear } from './ops/linear.js';
import { logSumExp } from './ops/logSumExp.js';
import { mask } from './ops/mask.js';
import { rotary } from './ops/rotary.js';
import { scale } from './ops/scale.js';
import { scores } from './ops/scores.js';
import { softmax } from './ops/softmax.js';
import { weightedSum } from './ops/weightedSum.js';
import { writeRows } from './ops/writeRows.js';
import type { WebGLBackendOptions } from './options.js';
import { FUSED_TILE_ELEMENTS, fusedTileRows, OPTION_KEYS, resolveOptions } from './options.js';
import { type PackedLayout, packedWidth, texelsPerGroup } from './packed.js';
import { Textures, type WebGLTensor } from './tensor.js';
import { compileFor, type Warmup, type WarmupShape } from './warmup.js';

/**
 * The webgl backend: tensors are float textures that stay on the GPU from upload to download, in
 * two forms (tensor.ts). The hot path — upload, the four projections, fused attention, the
 * residual add, download — runs hand-written packed RGBA programs (raw.ts, ops/<op>.ts); gpu.js
 * kernels run the rest: the unfused score chain (scores, scale, mask, softmax, weightedSum, when
 * weights or score captures are asked for), rotary, and every op's fallback where a
 * packed texture would exceed MAX_TEXTURE_SIZE. gpujs.ts is the one seam between the two layers;
 * docs/ARCHITECTURE.md has the measurement behind the split. One line per op below.
 */
export class WebGLBackend implements Backend<WebGLTensor> {
  readonly name = 'webgl';
  readonly supports = webglSupports;
  /** Packed sequences: mask and both fused paths take `sequenceIds`. */
  readonly inputs = ['sequenceIds'] as const;
  readonly #t: Textures;

  private constructor(textures: Textures) {
    this.#t = textures;
  }

  static async create(options?: BackendCreateOptions): Promise<WebGLBackend> {
    const o = resolveOptions(options);
    // Browsers: WebGL2 unless asked otherwise, WebGL1 as the fallback. Node: headless-gl.
    const modes: WebGLMode[] = o.mode ? [o.mode] : defaultMode() === 'webgl2' ? ['webgl2', 'webgl'] : [defaultMode()];
    let device: GlDevice | null = null;
    const failures: string[] = [];
    for (const mode of modes) {
      try {
        device = await acquireDevice(mode);
        break;
      } catch (e) {
        failures.push(`${mode}: ${(e as Error).message}`);
      }
    }
    if (!device) throw new QkvError('BACKEND_UNAVAILABLE', `webgl backend: ${failures.join('; ')}`);
    return new WebGLBackend(
      new Textures(
        device,
        Math.min(device.maxTextureSize, o.maxTextureSize ?? Number.POSITIVE_INFINITY),
        o.fusedTileElements ?? FUSED_TILE_ELEMENTS,
      ),
    );
  }

  get device(): GlDevice {
    return this.#t.device;
  }

  get maxTextureSize(): number {
    return this.#t.maxTextureSize;
  }

  get fusedTileElements(): number {
    return this.#t.fusedTileElements;
  }

  get mode(): WebGLMode {
    return this.device.mode;
  }

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
    if (fused) {
      const tile = fusedTileRows(B * H * Lq, Lk, this.#t.fusedTileElements);
      tensors.push([`the fused score tile [${tile} rows of B·H·Lq, Lk]`, [tile, Lk]]);
    } else {
      tensors.push(['scores, scaled, masked, weights [B, H, Lq, Lk]', [B, H, Lq, Lk]]);
    }
    for (const [what, shape] of tensors) this.#t.checkSize(`${what} = ${formatShape(shape)}`, sizeOf(shape));
  }

  upload(t: Tensor): WebGLTensor {
    const t_ = this.#t;
    const n = t.data.length;
    t_.checkSize(`upload of a ${formatShape(t.shape)} tensor`, n);
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(t.data[i])) {
        throw new QkvError(
          'CAPABILITY',
          `webgl backend: the ${formatShape(t.shape)} tensor holds NaN at flat index ${i}; GLSL ES leaves NaN comparisons and propagation undefined, so results could not match the NaN-propagating reference (use the cpu backend for NaN data)`,
        );
      }
    }
    // Straight into a packed texture, one texImage2D, rows of the last dimension padded to whole
    // texels: gpu.js's own upload re-lays the data out on the host first, which costs more
    // than the projection it feeds. gpu.js kernels get the flat form on demand (#tex).
    const cols = t.shape.length > 0 ? (t.shape[t.shape.length - 1] as number) : 1;
    const rows = cols === 0 ? 0 : n / cols;
    const layout: PackedLayout = { rows, groupWidth: cols, groups: 1 };
    const width = packedWidth(layout);
    if (n > 0 && t_.fits(width, rows)) {
      t_.alive();
      let data: Float32Array;
      if (cols % 4 === 0) {
        data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
      } else {
        data = new Float32Array(width * 4 * rows);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) data[r * width * 4 + c] = t.data[r * cols + c] as number;
        }
      }
      return t_.packedTensor([...t.shape], layout, t_.device.raw.upload(width, rows, data));
    }
    // A private Float32Array: gpu.js reads Array arguments by type, and the caller may reuse its array.
    return t_.run(copySpec(n), [...t.shape], [Float32Array.from(t.data)]);
  }

  async download(t: WebGLTensor): Promise<Tensor> {
    const t_ = this.#t;
    t_.alive();
    if (t.disposed) throw new QkvError('DISPOSED', 'webgl backend: a tensor was used after it was disposed');
    if (t.texture === null && t.packed) {
      // Packed-only (a projection's output): read the RGBA texels and reorder on the host.
      const { layout, raw } = t.packed;
      const texels = t_.device.raw.read(raw);
      const gw4 = texelsPerGroup(layout);
      const width = packedWidth(layout);
      const cols = layout.groupWidth * layout.groups;
      const data = new Float32Array(sizeOf(t.shape));
      for (let r = 0; r < layout.rows; r++) {
        for (let g = 0; g < layout.groups; g++) {
          for (let c = 0; c < layout.groupWidth; c++) {
            data[r * cols + g * layout.groupWidth + c] = texels[(r * width + g * gw4) * 4 + c] as number;
          }
        }
      }
      return { shape: [...t.shape], data };
    }
    const data = t_.tex(t).toArray() as Float32Array;
    return { shape: [...t.shape], data: Float32Array.from(data) };
  }

  dispose(t: WebGLTensor): void {
    this.#t.dispose(t);
  }

  liveTensors(): number {
    return this.#t.live.size;
  }

  /** Live GL textures on this backend's context (tensors + gpu.js's per-kernel textures). */
  liveTextures(): number {
    return this.device.counts.textures;
  }

  readonly kernels: Kernels<WebGLTensor> = {
    // Core owns the formula so every backend starts from identical values; uploaded once per run.
    positionalEncoding: (a) => this.upload(sinusoidalPositionalEncoding(a.length, a.dModel, a.offset)),
    add: (a, b) => add(this.#t, a, b),
    linear: (x, w, bias, attrs) => linear(this.#t, x, w, bias, attrs),
    scores: (q, k, attrs) => scores(this.#t, q, k, attrs),
    scale: (s, attrs) => scale(this.#t, s, attrs),
    mask: (s, pad, am, attrs, ids) => mask(this.#t, s, pad, am, attrs, ids ?? null),
    softmax: (s, attrs) => softmax(this.#t, s, attrs),
    logSumExp: (s, attrs) => logSumExp(this.#t, s, attrs),
    weightedSum: (w, v, attrs) => weightedSum(this.#t, w, v, attrs),
    rotary: (x, attrs) => rotary(this.#t, x, attrs),
    writeRows: (cache, rows, attrs) => writeRows(this.#t, cache, rows, attrs),
  };

  readonly fused: FusedKernels<WebGLTensor> = {
    fusedAttention: (q, k, v, pad, am, attrs, ids) => fusedAttention(this.#t, q, k, v, pad, am, attrs, ids ?? null),
    fusedAttentionLse: (q, k, v, pad, am, attrs, ids) =>
      fusedAttentionLse(this.#t, q, k, v, pad, am, attrs, ids ?? null),
  };

  /**
   * Compiles (by running once on zeros) every kernel a run of this config and shape needs, on
   * this backend's context, and returns how long that took (warmup.ts).
   */
  warmup(config: AttentionConfig, shape: WarmupShape): Promise<number> {
    return compileFor(this, config, shape);
  }

  async destroy(): Promise<void> {
    if (this.#t.destroyed) return;
    this.#t.destroyed = true;
    for (const t of [...this.#t.live]) this.#t.dispose(t);
    await releaseDevice(this.device);
  }
}

/**
 * Compiles every kernel for `config` at `shape` ahead of the first real run and keeps the GL
 * context (and so the compiled kernels) alive until `release()`: attention handles created in the
 * meantime with the same mode start warm.
 */
export async function warmup(
  config: AttentionConfig,
  shape: WarmupShape,
  options?: WebGLBackendOptions,
): Promise<Warmup> {
  const backend = await WebGLBackend.create(options as BackendCreateOptions | undefined);
  try {
    const compileMs = await backend.warmup(config, shape);
    return { mode: backend.mode, compileMs, kernels: backend.device.kernelCount, release: () => backend.destroy() };
  } catch (e) {
    await backend.destroy();
    throw e;
  }
}

/**
 * Which optional features the webgl kernels run: rotary, ALiBi, window, softcap, sink logits and
 * sink tokens (in GLSL), not maskMod/scoreMod, which are JavaScript callbacks evaluated per score
 * that a GLSL shader cannot call. Core turns a reason into CAPABILITY for an explicit 'webgl' and
 * a skip under 'auto'.
 */
export const webglSupports = shaderSupports('webgl', 'GLSL');

/**
 * The webgl backend's factory. Priority 30, above workers and cpu: a real GPU beats threads.
 * `isAvailable()` makes (and frees) a probe context, so `auto` skips it with the reason where
 * none can be made (Node without an X display, `gl` not built, no float render targets).
 */
export const webglBackend: BackendFactory = {
  name: 'webgl',
  priority: 30,
  description:
    'packed RGBA WebGL programs for the projections and fused attention, gpu.js kernels for the rest, on WebGL2/WebGL1 (browsers) or headless-gl (Node); float32 textures kept on the GPU',
  isAvailable: async () => {
    const mode = defaultMode();
    const p = await probe(mode);
    if (p.ok) return { available: true, detail: `${mode}, MAX_TEXTURE_SIZE ${p.maxTextureSize}` };
    if (mode !== 'webgl2') return { available: false, reason: p.reason };
    const fallback = await probe('webgl');
    return fallback.ok
      ? { available: true, detail: `webgl (WebGL1 fallback; ${p.reason}), MAX_TEXTURE_SIZE ${fallback.maxTextureSize}` }
      : { available: false, reason: `${p.reason}; ${fallback.reason}` };
  },
  supports: webglSupports,
  optionKeys: [...OPTION_KEYS],
  create: (options) => WebGLBackend.create(options),
};
