import {
  type AttentionConfig,
  type Backend,
  type BackendCreateOptions,
  type BackendFactory,
  type BackendTensor,
  buildGraph,
  describeValue,
  execute,
  FEATURE_OPTIONS,
  type FusedAttentionAttrs,
  type FusedKernels,
  formatShape,
  type GraphDims,
  type Kernels,
  type LinearAttrs,
  QkvError,
  type ResolvedConfig,
  requiredFeatures,
  resolveConfig,
  sinusoidalPositionalEncoding,
  sizeOf,
  type Tensor,
  type WriteRowsAttrs,
} from '@qkv/core';
import type { IKernelRunShortcut, KernelOutput } from 'gpu.js';
import {
  acquireDevice,
  defaultMode,
  type GlDevice,
  type GlTexture,
  type KernelSpec,
  MODES,
  probe,
  releaseDevice,
  type WebGLMode,
} from './device.js';
import * as k from './kernels/index.js';
import {
  ADD,
  FUSED_PROBS,
  type FusedVariant,
  fusedKey,
  fusedOutputSource,
  fusedScoresSource,
  fusedStatsSource,
  linearSource,
  PACK,
  PACK_TRANSPOSED,
  type PackedLayout,
  packedWidth,
  STATS_WIDTH,
  sameLayout,
  texelsPerGroup,
  transposeValuesSource,
  UNPACK,
} from './packed.js';
import type { RawTexture } from './raw.js';

/** A packed RGBA copy of a tensor (packed.ts), with the layout it was packed in. */
export interface PackedTexture {
  readonly layout: PackedLayout;
  readonly raw: RawTexture;
}

/**
 * A tensor on the GPU, owned by exactly one handle, in up to two forms: `texture`, gpu.js's flat
 * float texture (one value per texel), and `packed` (4 values per texel, for the raw programs).
 * Either may be made from the other on demand and is then kept until dispose: the projections
 * and fused attention produce only the packed form, a weight is packed once on first use.
 */
export class WebGLTensor implements BackendTensor {
  readonly shape: readonly number[];
  texture: GlTexture | null;
  packed: PackedTexture | null;
  /** As a projection weight: transposed-packed (see `#weightPacked`). */
  weightT: RawTexture | null = null;
  disposed = false;
  constructor(shape: readonly number[], texture: GlTexture | null, packed: PackedTexture | null = null) {
    this.shape = shape;
    this.texture = texture;
    this.packed = packed;
  }
}

/** The GL texture and texel size behind a gpu.js texture (fields gpu.js's typings leave out). */
function glOf(t: GlTexture): { tex: WebGLTexture; width: number; height: number } {
  const g = t as unknown as { texture: WebGLTexture; size: [number, number] };
  return { tex: g.texture, width: g.size[0], height: g.size[1] };
}

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** `backendOptions` for `createAttention(…, { backend: 'webgl', backendOptions })`. */
export interface WebGLBackendOptions {
  /** gpu.js mode; default: 'webgl2' in a browser, 'headlessgl' in Node. */
  mode?: WebGLMode;
  /** Lower the texture-size limit below the context's MAX_TEXTURE_SIZE (e.g. to mimic a smaller GPU). */
  maxTextureSize?: number;
  /** Score values per tile of the fused path (default FUSED_TILE_ELEMENTS); smaller = less GPU memory, more passes. */
  fusedTileElements?: number;
}

const OPTION_KEYS = new Set(['mode', 'maxTextureSize', 'fusedTileElements']);

/**
 * Kernels index in float32 (see kernels/common.ts), exact for integers below 2^24: no tensor may
 * hold more values than that, whatever MAX_TEXTURE_SIZE allows.
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 24;
/** Score rows per fused tile: bounds the fused path's score memory to ~2^21 values per tile. */
export const FUSED_TILE_ELEMENTS = 2 ** 21;

/** The texture gpu.js allocates for n values: near-square (utils.closestSquareDimensions). */
export function textureDims(n: number): [number, number] {
  const sqrt = Math.sqrt(n);
  let high = Math.ceil(sqrt);
  let low = Math.floor(sqrt);
  while (high * low < n) {
    high--;
    low = Math.ceil(n / high);
  }
  return [low, Math.ceil(n / low)];
}

export function fusedTileRows(rows: number, keyLength: number, tileElements = FUSED_TILE_ELEMENTS): number {
  return Math.max(1, Math.min(rows, Math.floor(tileElements / keyLength)));
}

function resolveOptions(options: BackendCreateOptions | undefined): WebGLBackendOptions {
  const o = (options ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!OPTION_KEYS.has(key)) {
      throw new QkvError(
        'UNKNOWN_OPTION',
        `backendOptions.${key}: not a webgl backend option; expected one of ${[...OPTION_KEYS].join(', ')}`,
      );
    }
  }
  const out: WebGLBackendOptions = {};
  if (o.mode !== undefined) {
    if (!MODES.includes(o.mode as WebGLMode)) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.mode: expected one of ${MODES.map((m) => `"${m}"`).join(', ')}, got ${describeValue(o.mode)}`,
      );
    }
    out.mode = o.mode as WebGLMode;
  }
  for (const key of ['maxTextureSize', 'fusedTileElements'] as const) {
    const v = o[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new QkvError(
        'INVALID_OPTION',
        `backendOptions.${key}: expected a positive integer, got ${describeValue(v)}`,
      );
    }
    out[key] = v;
  }
  return out;
}

/**
 * The webgl backend: every kernel is a gpu.js kernel on a (shared) GL context; tensors are
 * float textures that stay on the GPU from upload to download.
 */
export class WebGLBackend implements Backend<WebGLTensor> {
  readonly name = 'webgl';
  readonly supports = webglSupports;
  readonly device: GlDevice;
  readonly maxTextureSize: number;
  readonly fusedTileElements: number;
  readonly #live = new Set<WebGLTensor>();
  #destroyed = false;

  private constructor(device: GlDevice, maxTextureSize: number, fusedTileElements: number) {
    this.device = device;
    this.maxTextureSize = maxTextureSize;
    this.fusedTileElements = fusedTileElements;
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
      device,
      Math.min(device.maxTextureSize, o.maxTextureSize ?? Number.POSITIVE_INFINITY),
      o.fusedTileElements ?? FUSED_TILE_ELEMENTS,
    );
  }

  get mode(): WebGLMode {
    return this.device.mode;
  }

  /** Throws LIMIT_EXCEEDED unless a tensor of `n` values fits one texture here. */
  #checkSize(what: string, n: number): void {
    if (n > MAX_TENSOR_ELEMENTS) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `webgl backend: ${what} has ${n} values, over the limit of ${MAX_TENSOR_ELEMENTS} (2^24) per tensor: the kernels index textures in float32, exact only below 2^24`,
      );
    }
    const [w, h] = textureDims(n);
    if (Math.max(w, h) > this.maxTextureSize) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `webgl backend: ${what} has ${n} values and needs a ${w}×${h} float texture, over MAX_TEXTURE_SIZE ${this.maxTextureSize}`,
      );
    }
  }

  checkLimits(dims: GraphDims, fused: boolean): void {
    const { batch: B, queryLength: Lq, keyLength: Lk, dModel, numHeads: H, headDim: hd, numKVHeads: KVH } = dims;
    const { keyDim, valueDim } = dims;
    const tensors: [string, number[]][] = [
      ['input, x, attention, residual [B, Lq, dModel]', [B, Lq, dModel]],
      ['key [B, Lk, keyDim]', [B, Lk, keyDim]],
      ['value [B, Lk, valueDim]', [B, Lk, valueDim]],
      ['wk [keyDim, KVH·hd]', [keyDim, KVH * hd]],
      ['wv [valueDim, KVH·hd]', [valueDim, KVH * hd]],
      ['q, heads [B, Lq, H·hd]', [B, Lq, H * hd]],
      ['k, v [B, Lk, KVH·hd]', [B, Lk, KVH * hd]],
      ['wq, wo [dModel, H·hd]', [dModel, H * hd]],
      ['attnMask [Lq, Lk]', [Lq, Lk]],
    ];
    if (fused) {
      const tile = fusedTileRows(B * H * Lq, Lk, this.fusedTileElements);
      tensors.push([`the fused score tile [${tile} rows of B·H·Lq, Lk]`, [tile, Lk]]);
    } else {
      tensors.push(['scores, scaled, masked, weights [B, H, Lq, Lk]', [B, H, Lq, Lk]]);
    }
    for (const [what, shape] of tensors) this.#checkSize(`${what} = ${formatShape(shape)}`, sizeOf(shape));
  }

  #alive(): void {
    if (this.#destroyed) throw new QkvError('DISPOSED', 'webgl backend: used after destroy()');
    if (this.device.gl.isContextLost()) {
      throw new QkvError('CONTEXT_LOST', 'webgl backend: the WebGL context was lost; create a new attention handle');
    }
  }

  /** gpu.js's flat texture of `t`, unpacked from its packed form if that is all it has. */
  #tex(t: WebGLTensor): GlTexture {
    if (t.disposed) throw new QkvError('DISPOSED', 'webgl backend: a tensor was used after it was disposed');
    if (t.texture === null) t.texture = this.#unpack(t.packed as PackedTexture, sizeOf(t.shape));
    return t.texture;
  }

  /** Whether a packed texture of w × h texels fits here. */
  #fits(w: number, h: number): boolean {
    return w <= this.maxTextureSize && h <= this.maxTextureSize;
  }

  /**
   * `t` in packed `layout`: its own packed form when that matches, else packed now from the flat
   * texture and kept on `t` (x feeds three projections, a weight every run) unless `t` already
   * holds a different packing, in which case the caller gets a temporary to delete.
   */
  #packed(t: WebGLTensor, layout: PackedLayout): { raw: RawTexture; temporary: boolean } {
    if (t.packed && sameLayout(t.packed.layout, layout)) return { raw: t.packed.raw, temporary: false };
    const flat = this.#tex(t);
    const raw = this.device.raw.createTexture(packedWidth(layout), layout.rows);
    this.device.raw.draw('pack', PACK, raw, {
      textures: { uSrc: glOf(flat) },
      uniforms: {
        uGW: layout.groupWidth,
        uGW4: texelsPerGroup(layout),
        uCols: layout.groupWidth * layout.groups,
      },
    });
    if (t.packed) return { raw, temporary: true };
    t.packed = { layout, raw };
    return { raw, temporary: false };
  }

  /**
   * A weight [nIn, nOut] transposed-packed for the projection (PACK_TRANSPOSED), made once per
   * weight tensor and kept with it (`weightT`): weights are uploaded once and reused every run.
   */
  #weightPacked(w: WebGLTensor, nIn: number, nOut: number): { raw: RawTexture } {
    if (w.weightT) return { raw: w.weightT };
    const raw = this.device.raw.createTexture(Math.ceil(nIn / 4), nOut);
    this.device.raw.draw('packTransposed', PACK_TRANSPOSED, raw, {
      textures: { uSrc: glOf(this.#tex(w)) },
      uniforms: { uIn: nIn, uOut: nOut },
    });
    w.weightT = raw;
    return { raw };
  }

  /** A gpu.js flat texture of n values from a packed one: a gpu.js-owned texture, rendered by UNPACK. */
  #unpack(p: PackedTexture, n: number): GlTexture {
    this.#alive();
    const out = (this.device.kernel(k.allocSpec(n)) as unknown as () => GlTexture)();
    const target = glOf(out);
    this.device.raw.draw('unpack', UNPACK, target, {
      textures: { uP: p.raw },
      uniforms: {
        uGW: p.layout.groupWidth,
        uGW4: texelsPerGroup(p.layout),
        uCols: p.layout.groupWidth * p.layout.groups,
        uN: n,
        uDstW: target.width,
      },
    });
    return out;
  }

  /** Wraps a packed result as a (packed-only) tensor handle. */
  #packedTensor(shape: readonly number[], layout: PackedLayout, raw: RawTexture): WebGLTensor {
    const t = new WebGLTensor(shape, null, { layout, raw });
    this.#live.add(t);
    return t;
  }

  /** Runs a cached kernel and wraps its (immutable, hence owned) output texture. */
  #run(spec: KernelSpec, shape: readonly number[], args: unknown[]): WebGLTensor {
    this.#alive();
    const kernel: IKernelRunShortcut = this.device.kernel(spec);
    const out = (kernel as unknown as (...a: unknown[]) => KernelOutput)(...args) as unknown as GlTexture;
    const t = new WebGLTensor(shape, out);
    this.#live.add(t);
    return t;
  }

  upload(t: Tensor): WebGLTensor {
    const n = t.data.length;
    this.#checkSize(`upload of a ${formatShape(t.shape)} tensor`, n);
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
    if (n > 0 && this.#fits(width, rows)) {
      this.#alive();
      let data: Float32Array;
      if (cols % 4 === 0) {
        data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
      } else {
        data = new Float32Array(width * 4 * rows);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) data[r * width * 4 + c] = t.data[r * cols + c] as number;
        }
      }
      return this.#packedTensor([...t.shape], layout, this.device.raw.upload(width, rows, data));
    }
    // A private Float32Array: gpu.js reads Array arguments by type, and the caller may reuse its array.
    return this.#run(k.copySpec(n), [...t.shape], [Float32Array.from(t.data)]);
  }

  async download(t: WebGLTensor): Promise<Tensor> {
    this.#alive();
    if (t.disposed) throw new QkvError('DISPOSED', 'webgl backend: a tensor was used after it was disposed');
    if (t.texture === null && t.packed) {
      // Packed-only (a projection's output): read the RGBA texels and reorder on the host.
      const { layout, raw } = t.packed;
      const texels = this.device.raw.read(raw);
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
    const data = this.#tex(t).toArray() as Float32Array;
    return { shape: [...t.shape], data: Float32Array.from(data) };
  }

  dispose(t: WebGLTensor): void {
    if (t.disposed) return;
    t.disposed = true;
    this.#live.delete(t);
    const { texture, packed, weightT } = t;
    t.texture = null;
    t.packed = null;
    t.weightT = null;
    // After the device is gone its context (and every texture on it) is already freed.
    // (Read-back framebuffers are cached per kernel and size by gpu.js and freed with the kernel.)
    if (this.device.destroyed) return;
    texture?.delete();
    if (packed) this.device.raw.deleteTexture(packed.raw);
    if (weightT) this.device.raw.deleteTexture(weightT);
  }

  liveTensors(): number {
    return this.#live.size;
  }

  /** Live GL textures on this backend's context (tensors + gpu.js's per-kernel textures). */
  liveTextures(): number {
    return this.device.counts.textures;
  }

  readonly kernels: Kernels<WebGLTensor> = {
    positionalEncoding: (attrs) =>
      // Core owns the formula so every backend starts from identical values; it is uploaded once per run.
      this.upload(sinusoidalPositionalEncoding(attrs.length, attrs.dModel, attrs.offset)),
    add: (a, b) => {
      const n = sizeOf(a.shape);
      const nB = sizeOf(b.shape);
      // Packed when an input is packed-only (a projection's output: the residual X + ΔE), so the
      // result downloads as packed texels and nothing is unpacked for one addition.
      const cols = a.shape[a.shape.length - 1] ?? 1;
      const packedIn = (a.texture === null || b.texture === null) && !a.disposed && !b.disposed;
      if (
        packedIn &&
        cols === b.shape[b.shape.length - 1] &&
        n % nB === 0 &&
        this.#fits(Math.ceil(cols / 4), n / cols)
      ) {
        this.#alive();
        const rows = n / cols;
        const layout: PackedLayout = { rows, groupWidth: cols, groups: 1 };
        const ap = this.#packed(a, layout);
        const bp = this.#packed(b, { rows: nB / cols, groupWidth: cols, groups: 1 });
        const out = this.device.raw.createTexture(packedWidth(layout), rows);
        try {
          this.device.raw.draw('add', ADD, out, {
            textures: { uA: ap.raw, uB: bp.raw },
            uniforms: { uBRows: nB / cols },
          });
        } catch (e) {
          this.device.raw.deleteTexture(out);
          throw e;
        } finally {
          for (const p of [ap, bp]) if (p.temporary) this.device.raw.deleteTexture(p.raw);
        }
        return this.#packedTensor(a.shape, layout, out);
      }
      return this.#run(k.addSpec(n, nB), a.shape, [this.#tex(a), this.#tex(b)]);
    },
    linear: (x, w, bias, attrs) => this.#linear(x, w, bias, attrs),
    scores: (q, key, attrs) =>
      this.#run(
        k.scoresSpec(attrs),
        [attrs.batch, attrs.numHeads, attrs.queryLength, attrs.keyLength],
        [this.#tex(q), this.#tex(key)],
      ),
    scale: (s, attrs) => this.#run(k.scaleSpec(sizeOf(s.shape)), s.shape, [this.#tex(s), attrs.scale]),
    mask: (s, pad, am, attrs) => {
      const v = k.maskVariant(attrs, pad !== null, am !== null);
      const args: unknown[] = [this.#tex(s)];
      if (pad) args.push(this.#tex(pad));
      if (am) args.push(this.#tex(am));
      if (attrs.alibiSlopes) args.push(Float32Array.from(attrs.alibiSlopes));
      args.push(...k.modifierArgs(attrs));
      return this.#run(k.maskSpec(attrs, v), s.shape, args);
    },
    softmax: (s, attrs) => {
      const { rows, cols } = attrs;
      const m = this.#run(k.rowMaxSpec(rows, cols), [rows], [this.#tex(s), Number.NEGATIVE_INFINITY]);
      try {
        const l = this.#run(k.rowSumSpec(rows, cols), [rows], [this.#tex(s), this.#tex(m)]);
        try {
          return this.#run(k.normalizeSpec(rows, cols), s.shape, [this.#tex(s), this.#tex(m), this.#tex(l)]);
        } finally {
          this.dispose(l);
        }
      } finally {
        this.dispose(m);
      }
    },
    weightedSum: (w, v, attrs) =>
      this.#run(
        k.weightedSumSpec(attrs),
        [attrs.batch, attrs.queryLength, attrs.numHeads * attrs.headDim],
        [this.#tex(w), this.#tex(v)],
      ),
    rotary: (x, attrs) => {
      const { cos, sin } = k.rotaryTables(attrs);
      return this.#run(k.rotarySpec(attrs), x.shape, [this.#tex(x), cos, sin]);
    },
    writeRows: (cache, rows, attrs) => this.#writeRows(cache, rows, attrs),
  };

  /**
   * KV-cache append. The rows land in a new texture (a shader cannot write the texture it
   * reads) that replaces the cache handle's, so core's handle stays the cache; the stale packed
   * copy goes too. Costs one pass over the cache per step, all on the GPU.
   */
  #writeRows(cache: WebGLTensor, rows: WebGLTensor, attrs: WriteRowsAttrs): WebGLTensor {
    const { rows: t, capacity, offset } = attrs;
    if (offset + t > capacity) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `webgl backend: writeRows of rows ${offset} … ${offset + t - 1} does not fit a cache of ${capacity} rows`,
      );
    }
    const next = this.#run(k.writeRowsSpec(attrs), cache.shape, [this.#tex(cache), this.#tex(rows), offset]);
    const old = { texture: cache.texture, packed: cache.packed };
    cache.texture = next.texture;
    cache.packed = null;
    next.texture = null;
    next.disposed = true;
    this.#live.delete(next);
    old.texture?.delete();
    if (old.packed) this.device.raw.deleteTexture(old.packed.raw);
    return cache;
  }

  /**
   * x [rows, nIn] · w [nIn, nOut] + bias → [rows, nOut]. The packed program (4 outputs per
   * fragment, vec4 reads) whenever the packed textures fit MAX_TEXTURE_SIZE; the gpu.js kernel
   * otherwise (e.g. more than MAX_TEXTURE_SIZE rows, which the flat near-square layout allows).
   */
  #linear(x: WebGLTensor, w: WebGLTensor, bias: WebGLTensor | null, attrs: LinearAttrs): WebGLTensor {
    const { rows, inFeatures: nIn, outFeatures: nOut } = attrs;
    const shape = [...x.shape.slice(0, -1), nOut];
    const nIn4 = Math.ceil(nIn / 4);
    const nOut4 = Math.ceil(nOut / 4);
    if (!(this.#fits(nIn4, rows) && this.#fits(nIn4, nOut) && this.#fits(nOut4, rows))) {
      const args = bias ? [this.#tex(x), this.#tex(w), this.#tex(bias)] : [this.#tex(x), this.#tex(w)];
      return this.#run(k.linearSpec(attrs, bias !== null), shape, args);
    }
    this.#alive();
    const raw = this.device.raw;
    const xp = this.#packed(x, { rows, groupWidth: nIn, groups: 1 });
    const wp = this.#weightPacked(w, nIn, nOut);
    const bp = bias ? this.#packed(bias, { rows: 1, groupWidth: nOut, groups: 1 }) : null;
    const out = raw.createTexture(nOut4, rows);
    try {
      raw.draw(`linear|${nIn4}|${nOut}|${bias !== null}`, linearSource(nIn4, nOut, bias !== null), out, {
        textures: { uX: xp.raw, uW: wp.raw, ...(bp ? { uB: bp.raw } : {}) },
      });
    } catch (e) {
      raw.deleteTexture(out);
      throw e;
    } finally {
      for (const p of [xp, bp]) if (p?.temporary) raw.deleteTexture(p.raw);
    }
    return this.#packedTensor(shape, { rows, groupWidth: nOut, groups: 1 }, out);
  }

  readonly fused: FusedKernels<WebGLTensor> = {
    fusedAttention: (q, key, v, pad, am, attrs) =>
      this.#fusedPacked(q, key, v, pad, am, attrs) ?? this.#fusedGpuJs(q, key, v, pad, am, attrs),
  };

  /**
   * Fused attention on packed textures (packed.ts), the B·H·Lq score rows in tiles of at most
   * `fusedTileElements` scores (and MAX_TEXTURE_SIZE rows). Once: pass 0 transposes v (vT).
   * Per tile:
   *   pass 1  scores: S = scale·q·k (− ALiBi) (+ attnMask), −∞ where hidden   [ceil(Lk/4), tileRows]
   *   pass 2  stats:  (row max m, Σ exp(S − m))                         [2, tileRows/2]
   *   pass 3  probs:  P = exp(S − m) / l                                        [ceil(Lk/4), tileRows]
   *   pass 4  output: heads = P·V, one draw per (b, h) segment of the tile     into [H·hd4, B·Lq]
   * Each output texel is written by exactly one segment draw, so tiles need no copy of earlier
   * output. Lk, the offsets and the scale are uniforms under a compiled bound of
   * nextPow2(ceil(keyCapacity/4)) keys: a KV-cache session compiles these programs once.
   * Returns null where a packed texture would not fit MAX_TEXTURE_SIZE (the gpu.js path runs).
   */
  #fusedPacked(
    q: WebGLTensor,
    key: WebGLTensor,
    v: WebGLTensor,
    pad: WebGLTensor | null,
    am: WebGLTensor | null,
    attrs: FusedAttentionAttrs,
  ): WebGLTensor | null {
    const { batch: B, numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
    const cap = attrs.keyCapacity ?? Lk;
    const hd4 = Math.ceil(hd / 4);
    const Lk4 = Math.ceil(Lk / 4);
    const rows = B * H * Lq;
    const tileRows = Math.min(fusedTileRows(rows, Lk, this.fusedTileElements), this.maxTextureSize);
    const cap4 = Math.ceil(cap / 4);
    if (
      !(
        this.#fits(H * hd4, B * Lq) &&
        this.#fits(KVH * hd4, B * cap) &&
        this.#fits(Lk4, tileRows) &&
        this.#fits(cap4, B * KVH * hd)
      )
    ) {
      return null;
    }
    this.#alive();
    const raw = this.device.raw;
    const variant: FusedVariant = {
      H,
      group: H / KVH,
      Lq,
      hd4,
      causal: attrs.causal,
      hasPadding: pad !== null,
      hasAttnMask: am !== null,
      window: attrs.window !== undefined,
      alibi: attrs.alibiSlopes !== undefined,
      maxKeys4: nextPow2(Math.ceil(cap / 4)),
    };
    const flat = (t: WebGLTensor) => glOf(this.#tex(t));
    const headsLayout: PackedLayout = { rows: B * Lq, groupWidth: hd, groups: H };
    const kvLayout: PackedLayout = { rows: B * cap, groupWidth: hd, groups: KVH };
    const inputs = [this.#packed(q, headsLayout), this.#packed(key, kvLayout), this.#packed(v, kvLayout)] as const;
    const [qp, kp, vp] = inputs;
    const masks = { ...(pad ? { uPad: flat(pad) } : {}), ...(am ? { uAm: flat(am) } : {}) };
    const temps: RawTexture[] = [];
    let out: RawTexture | null = null;
    try {
      const S = raw.createTexture(Lk4, tileRows);
      temps.push(S);
      const stats = raw.createTexture(STATS_WIDTH, Math.ceil(tileRows / STATS_WIDTH));
      temps.push(stats);
      const P = raw.createTexture(Lk4, tileRows);
      temps.push(P);
      out = raw.createTexture(H * hd4, B * Lq);
      // Pass 0: v transposed for pass 4.
      const vT = raw.createTexture(cap4, B * KVH * hd);
      temps.push(vT);
      raw.draw(`fused.vT|${KVH}|${hd}|${hd4}`, transposeValuesSource(variant, KVH, hd), vT, {
        textures: { uV: vp.raw },
        uniforms: { uCap: cap },
      });
      const scoresKey = fusedKey('fused.scores', variant);
      const scoresSrc = fusedScoresSource(variant);
      const statsKey = `fused.stats|${variant.maxKeys4}`;
      const statsSrc = fusedStatsSource(variant);
      const outKey = fusedKey('fused.output', variant);
      const outKey2 = `${outKey}|${hd}|${KVH}`;
      const outSrc = fusedOutputSource(variant, hd, KVH);
      for (let r0 = 0; r0 < rows; r0 += tileRows) {
        this.#alive();
        // Pass 1.
        raw.draw(scoresKey, scoresSrc, S, {
          textures: { uQ: qp.raw, uK: kp.raw, ...masks },
          uniforms: {
            uRowStart: r0,
            uRows: rows,
            uLk: Lk,
            uCap: cap,
            uScale: attrs.scale,
            uNegInf: Number.NEGATIVE_INFINITY,
            uQueryOffset: attrs.queryOffset ?? 0,
            uWindow: attrs.window ?? 0,
            ...(attrs.alibiSlopes ? { uSlopes: attrs.alibiSlopes } : {}),
          },
        });
        // Passes 2 and 3.
        raw.draw(statsKey, statsSrc, stats, {
          textures: { uS: S },
          uniforms: { uLk4: Lk4, uNegInf: Number.NEGATIVE_INFINITY },
        });
        raw.draw('fused.probs', FUSED_PROBS, P, { textures: { uS: S, uStats: stats } });
        // Pass 4: the (b, h) segments of rows r0 … r1−1, each a rectangle of the output.
        const r1 = Math.min(rows, r0 + tileRows);
        for (let bh = Math.floor(r0 / Lq); bh * Lq < r1; bh++) {
          const i0 = Math.max(r0, bh * Lq) - bh * Lq;
          const i1 = Math.min(r1, (bh + 1) * Lq) - bh * Lq;
          const b = Math.floor(bh / H);
          const h = bh - b * H;
          raw.draw(outKey2, outSrc, out, { textures: { uP: P, uVT: vT }, uniforms: { uRowStart: r0, uLk4: Lk4 } }, [
            h * hd4,
            b * Lq + i0,
            hd4,
            i1 - i0,
          ]);
        }
      }
    } catch (e) {
      if (out) raw.deleteTexture(out);
      throw e;
    } finally {
      for (const t of temps) raw.deleteTexture(t);
      for (const p of inputs) if (p.temporary) raw.deleteTexture(p.raw);
    }
    return this.#packedTensor([B, Lq, H * hd], headsLayout, out);
  }

  /**
   * The gpu.js fused path (used where packed textures would not fit MAX_TEXTURE_SIZE): tiles of
   * `tileRows` score rows; per tile: pass 1 masked, scaled scores; passes 2–4 the row softmax;
   * pass 5 this tile's heads rows (the rest copied from the previous tile's output).
   */
  #fusedGpuJs(
    q: WebGLTensor,
    key: WebGLTensor,
    v: WebGLTensor,
    pad: WebGLTensor | null,
    am: WebGLTensor | null,
    attrs: FusedAttentionAttrs,
  ): WebGLTensor {
    const { batch: B, numHeads: H, queryLength: Lq, keyLength: Lk, headDim: hd } = attrs;
    const rows = B * H * Lq;
    const tileRows = fusedTileRows(rows, Lk, this.fusedTileElements);
    const variant = k.maskVariant(attrs, pad !== null, am !== null);
    const scoreArgs: unknown[] = [this.#tex(q), this.#tex(key)];
    if (pad) scoreArgs.push(this.#tex(pad));
    if (am) scoreArgs.push(this.#tex(am));
    if (attrs.alibiSlopes) scoreArgs.push(Float32Array.from(attrs.alibiSlopes));
    scoreArgs.push(...k.modifierArgs(attrs));
    const headsShape = [B, Lq, H * hd];
    let out: WebGLTensor | null = null;
    try {
      for (let rowStart = 0; rowStart < rows; rowStart += tileRows) {
        // Pass 1: the masked, scaled scores of this tile's rows.
        const s = this.#run(
          k.fusedScoresSpec(attrs, tileRows, variant),
          [tileRows, Lk],
          [...scoreArgs, attrs.scale, rowStart],
        );
        const tmp: WebGLTensor[] = [s];
        try {
          // Passes 2–4: the row softmax of the tile.
          const m = this.#run(k.rowMaxSpec(tileRows, Lk), [tileRows], [this.#tex(s), Number.NEGATIVE_INFINITY]);
          tmp.push(m);
          const l = this.#run(k.rowSumSpec(tileRows, Lk), [tileRows], [this.#tex(s), this.#tex(m)]);
          tmp.push(l);
          const p = this.#run(
            k.normalizeSpec(tileRows, Lk),
            [tileRows, Lk],
            [this.#tex(s), this.#tex(m), this.#tex(l)],
          );
          tmp.push(p);
          // Pass 5: this tile's heads rows; the rest come from the previous tile's output.
          const prev: WebGLTensor | null = out;
          const args: unknown[] = [this.#tex(p), this.#tex(v)];
          if (prev) args.push(this.#tex(prev));
          args.push(rowStart);
          out = this.#run(k.fusedOutputSpec(attrs, tileRows, prev !== null), headsShape, args);
          if (prev) this.dispose(prev);
        } finally {
          for (const t of tmp) this.dispose(t);
        }
      }
    } catch (e) {
      if (out) this.dispose(out);
      throw e;
    }
    return out as WebGLTensor;
  }

  /**
   * Compiles (by running once on zeros) every kernel a run of this config and shape needs, on
   * this backend's context, and returns how long that took. Later handles of the same mode share
   * the context while any backend holds it, and find the kernels compiled.
   */
  async warmup(config: AttentionConfig, shape: WarmupShape): Promise<number> {
    const t0 = performance.now();
    const resolved = resolveConfig(config);
    const Lk = shape.keyLength ?? shape.queryLength;
    const selfAttention = shape.keyLength === undefined || (resolved.selfAttention ?? false);
    const graph = buildGraph(resolved, {
      batch: shape.batch,
      queryLength: shape.queryLength,
      keyLength: Lk,
      selfAttention,
      hasKeyPaddingMask: shape.keyPaddingMask ?? false,
      hasAttnMask: shape.attnMask ?? false,
    });
    const zeros = (s: readonly number[]): Tensor => ({ shape: [...s], data: new Float32Array(sizeOf(s)) });
    const params = new Map<string, WebGLTensor>();
    const feeds = new Map<string, Tensor>();
    for (const n of graph.nodes) {
      if (n.op === 'param') params.set(n.name, this.upload(zeros(n.shape)));
      if (n.op === 'input') feeds.set(n.name, zeros(n.shape));
    }
    try {
      for (const withWeights of shape.paths === 'fused'
        ? [false]
        : shape.paths === 'unfused'
          ? [true]
          : [false, true]) {
        await execute({
          graph,
          backend: this,
          params,
          feeds,
          outputs: withWeights ? ['attention', 'residual', 'weights'] : ['attention', 'residual'],
        });
      }
    } finally {
      for (const p of params.values()) this.dispose(p);
    }
    return performance.now() - t0;
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const t of [...this.#live]) this.dispose(t);
    await releaseDevice(this.device);
  }
}

/** The shape `warmup` compiles for. keyLength absent = self-attention. */
export interface WarmupShape {
  batch: number;
  queryLength: number;
  keyLength?: number;
  keyPaddingMask?: boolean;
  attnMask?: boolean;
  /** Which paths to compile: 'fused' (no weights asked), 'unfused' (weights/captures) or 'both' (default). */
  paths?: 'fused' | 'unfused' | 'both';
}

export interface Warmup {
  readonly mode: WebGLMode;
  /** First-run cost: shader translation + compilation + one run, in ms. */
  readonly compileMs: number;
  /** Compiled kernels now cached on the context. */
  readonly kernels: number;
  /** Lets the context go (it is destroyed once no attention handle uses it either). */
  release(): Promise<void>;
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
 * Which optional features the webgl kernels run: rotary, ALiBi and window (in GLSL), not
 * maskMod/scoreMod, which are JavaScript callbacks evaluated per score that a GLSL shader cannot
 * call. Core turns a reason into CAPABILITY for an explicit 'webgl' and a skip under 'auto'.
 */
export function webglSupports(config: ResolvedConfig): true | string {
  const reasons = requiredFeatures(config)
    .filter((f) => f === 'maskMod' || f === 'scoreMod')
    .map(
      (f) =>
        `${FEATURE_OPTIONS[f]} is a JavaScript function, and webgl kernels are GLSL shaders that cannot call back into JavaScript`,
    );
  return reasons.length === 0 ? true : `webgl backend: ${reasons.join('; ')}`;
}

/**
 * The webgl backend's factory. Priority 30, above workers and cpu: a real GPU beats threads.
 * `isAvailable()` makes (and frees) a probe context, so `auto` skips it with the reason where
 * none can be made (Node without an X display, `gl` not built, no float render targets).
 */
export const webglBackend: BackendFactory = {
  name: 'webgl',
  priority: 30,
  description: 'gpu.js kernels on WebGL2/WebGL1 (browsers) or headless-gl (Node); float32 textures kept on the GPU',
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
