import { type BackendTensor, QkvError, sizeOf } from '@qkv/core';
import type { GlDevice, KernelSpec } from './device.js';
import { type GlTexture, glOf, newFlatTexture, runKernel } from './gpujs.js';
import { MAX_TENSOR_ELEMENTS, textureDims } from './options.js';
import { PACK, type PackedLayout, packedWidth, sameLayout, texelsPerGroup, UNPACK } from './packed.js';
import type { RawTexture } from './raw.js';

/** A packed RGBA copy of a tensor (packed.ts), with the layout it was packed in. */
export interface PackedTexture {
  readonly layout: PackedLayout;
  readonly raw: RawTexture;
}

/**
 * Fused pass 0's v transposed ([ceil(cap/4), B·KVH·hd], ops/fusedAttention.ts), kept on a v
 * (a KV cache) so a decode step does not redo it: valid for the packed form it was drawn from,
 * which only ops/writeRows.ts changes, and it redraws the columns it changes.
 */
export interface ValuesT {
  readonly raw: RawTexture;
  readonly KVH: number;
  readonly hd: number;
  readonly cap: number;
}

/**
 * A tensor on the GPU, owned by exactly one handle, in up to two forms: `texture`, gpu.js's flat
 * float texture (one value per texel, what gpu.js kernels read), and `packed` (4 values per
 * texel, what the raw programs read). Either may be made from the other on demand and is then
 * kept until dispose: uploads, the projections and fused attention produce only the packed form.
 * A projection weight also keeps `weightT`, its transposed packing (ops/linear.ts), made once;
 * a v of fused attention keeps `valuesT` (see ValuesT). ops/writeRows.ts, the one op that writes
 * into an existing tensor, updates every form it holds.
 */
export class WebGLTensor implements BackendTensor {
  readonly shape: readonly number[];
  texture: GlTexture | null;
  packed: PackedTexture | null;
  /** As a projection weight: transposed-packed (see ops/linear.ts). */
  weightT: RawTexture | null = null;
  /** As fused attention's v: its pass 0 transpose. */
  valuesT: ValuesT | null = null;
  disposed = false;
  constructor(shape: readonly number[], texture: GlTexture | null, packed: PackedTexture | null = null) {
    this.shape = shape;
    this.texture = texture;
    this.packed = packed;
  }
}

/**
 * The tensors of one backend on its device: their two forms and the conversions between them,
 * and the ways an op makes a new tensor (a gpu.js kernel, or a raw program's packed output).
 * What every ops/<op>.ts receives.
 */
export class Textures {
  readonly device: GlDevice;
  readonly maxTextureSize: number;
  readonly fusedTileElements: number;
  readonly live = new Set<WebGLTensor>();
  destroyed = false;

  constructor(device: GlDevice, maxTextureSize: number, fusedTileElements: number) {
    this.device = device;
    this.maxTextureSize = maxTextureSize;
    this.fusedTileElements = fusedTileElements;
  }

  /** Throws DISPOSED after destroy() and CONTEXT_LOST once the context is gone. */
  alive(): void {
    if (this.destroyed) throw new QkvError('DISPOSED', 'webgl backend: used after destroy()');
    if (this.device.gl.isContextLost()) {
      throw new QkvError('CONTEXT_LOST', 'webgl backend: the WebGL context was lost; create a new attention handle');
    }
  }

  /** Throws LIMIT_EXCEEDED unless a tensor of `n` values fits one texture here. */
  checkSize(what: string, n: number): void {
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

  /** Whether a packed texture of w × h texels fits here. */
  fits(w: number, h: number): boolean {
    return w <= this.maxTextureSize && h <= this.maxTextureSize;
  }

  /** gpu.js's flat texture of `t`, unpacked from its packed form if that is all it has. */
  tex(t: WebGLTensor): GlTexture {
    if (t.disposed) throw new QkvError('DISPOSED', 'webgl backend: a tensor was used after it was disposed');
    if (t.texture === null) t.texture = this.#unpack(t.packed as PackedTexture, sizeOf(t.shape));
    return t.texture;
  }

  /** `tex(t)` as a raw program's sampler input. */
  flat(t: WebGLTensor): { tex: WebGLTexture; width: number; height: number } {
    return glOf(this.tex(t));
  }

  /**
   * `t` in packed `layout`: its own packed form when that matches, else packed now from the flat
   * texture and kept on `t` (x feeds three projections, a weight every run) unless `t` already
   * holds a different packing, in which case the caller gets a temporary to delete.
   */
  packed(t: WebGLTensor, layout: PackedLayout): { raw: RawTexture; temporary: boolean } {
    if (t.packed && sameLayout(t.packed.layout, layout)) return { raw: t.packed.raw, temporary: false };
    const src = this.flat(t);
    const raw = this.device.raw.createTexture(packedWidth(layout), layout.rows);
    this.device.raw.draw('pack', PACK, raw, {
      textures: { uSrc: src },
      uniforms: {
        uGW: layout.groupWidth,
        uGW4: texelsPerGroup(layout),
        uCols: layout.groupWidth * layout.groups,
        uRowShift: 0,
      },
    });
    if (t.packed) return { raw, temporary: true };
    t.packed = { layout, raw };
    return { raw, temporary: false };
  }

  /** A gpu.js flat texture of n values from a packed one (gpu.js-owned, rendered by UNPACK). */
  #unpack(p: PackedTexture, n: number): GlTexture {
    this.alive();
    const out = newFlatTexture(this.device, n);
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

  /**
   * A new flat tensor (a gpu.js-owned texture of zeros) for raw programs to render into, through
   * `flat(t)` as their target.
   */
  flatTensor(shape: readonly number[]): WebGLTensor {
    this.alive();
    const t = new WebGLTensor(shape, newFlatTexture(this.device, sizeOf(shape)));
    this.live.add(t);
    return t;
  }

  /** Wraps a raw program's packed output as a (packed-only) tensor handle. */
  packedTensor(shape: readonly number[], layout: PackedLayout, raw: RawTexture): WebGLTensor {
    const t = new WebGLTensor(shape, null, { layout, raw });
    this.live.add(t);
    return t;
  }

  /** Runs a cached gpu.js kernel and wraps its (immutable, hence owned) output texture. */
  run(spec: KernelSpec, shape: readonly number[], args: unknown[]): WebGLTensor {
    this.alive();
    const t = new WebGLTensor(shape, runKernel(this.device, spec, args));
    this.live.add(t);
    return t;
  }

  /**
   * Renders into a new packed texture of w × h texels with `draw`; deletes it again (and the
   * temporaries) when the draw fails, so a failed op leaves nothing behind.
   */
  drawPacked(
    w: number,
    h: number,
    draw: (out: RawTexture) => void,
    temporaries: readonly ({ raw: RawTexture; temporary: boolean } | null)[] = [],
  ): RawTexture {
    const raw = this.device.raw;
    const out = raw.createTexture(w, h);
    try {
      draw(out);
    } catch (e) {
      raw.deleteTexture(out);
      throw e;
    } finally {
      for (const p of temporaries) if (p?.temporary) raw.deleteTexture(p.raw);
    }
    return out;
  }

  dispose(t: WebGLTensor): void {
    if (t.disposed) return;
    t.disposed = true;
    this.live.delete(t);
    const { texture, packed, weightT, valuesT } = t;
    t.texture = null;
    t.packed = null;
    t.weightT = null;
    t.valuesT = null;
    // After the device is gone its context (and every texture on it) is already freed.
    // (Read-back framebuffers are cached per kernel and size by gpu.js and freed with the kernel.)
    if (this.device.destroyed) return;
    texture?.delete();
    if (packed) this.device.raw.deleteTexture(packed.raw);
    if (weightT) this.device.raw.deleteTexture(weightT);
    if (valuesT) this.device.raw.deleteTexture(valuesT.raw);
  }
}
