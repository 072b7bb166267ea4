/**
 * A small hand-written WebGL program layer beside gpu.js, for the hot kernels (projections and
 * the fused attention). gpu.js stores one value per texel and computes one value per fragment,
 * and every read goes through its generic flat-index → texel decode; these programs use **packed
 * RGBA textures** (4 consecutive values of a row per texel) and compute 4 outputs per fragment
 * with vec4 reads, so a projection fetches ~6× fewer texels, each addressed by a cheap 2-D
 * coordinate. See `packed.ts` for the programs.
 *
 * Shaders are GLSL ES 1.00, which WebGL1, WebGL2 and headless-gl all compile; textures are RGBA
 * float (render targets need EXT_color_buffer_float / OES_texture_float, which the device
 * probe already requires). Every draw runs inside `withGpuJsState` (gpujs.ts, the one seam
 * between the two layers), which restores the GL state gpu.js assumes survives between its calls,
 * so the two layers share one context safely.
 */

import { withGpuJsState } from './gpujs.js';

/** An RGBA float texture of width × height texels owned by this layer. */
export interface RawTexture {
  readonly tex: WebGLTexture;
  readonly width: number;
  readonly height: number;
}

export type Uniform = number | readonly number[];

export interface DrawInputs {
  /** sampler uniform name → texture and its size in texels (bound as `${name}` and `${name}Size`). */
  readonly textures: Readonly<Record<string, { tex: WebGLTexture; width: number; height: number }>>;
  readonly uniforms?: Readonly<Record<string, Uniform>>;
}

const VERTEX = `attribute vec2 aPos;
void main() { gl_Position = vec4(aPos, 0.0, 1.0); }`;

/** Declarations every fragment program starts with. */
export const PRELUDE = `precision highp float;
precision highp int;
precision highp sampler2D;
// Texel (x, y) of a texture of size sz, by its centre: exact for NEAREST sampling.
vec4 texel(sampler2D t, vec2 sz, float x, float y) {
  return texture2D(t, vec2((x + 0.5) / sz.x, (y + 0.5) / sz.y));
}
// Value n of a gpu.js texture (one value per texel in .r, row-major in a near-square texture).
float flatAt(sampler2D t, vec2 sz, float n) {
  float y = floor((n + 0.5) / sz.x);
  return texel(t, sz, n - y * sz.x, y).r;
}
`;

/**
 * Quads to draw instead of the whole target: `count` vertices of the vec4 attribute `aVertex`
 * (location 0) in `buffer`, two triangles per quad, placed by the program's own vertex shader.
 */
export interface Geometry {
  readonly buffer: WebGLBuffer;
  readonly count: number;
}

/** The rectangles [x, y, w, h] of a flat texture `width` texels wide that hold values n0 … n1−1. */
export function flatRects(n0: number, n1: number, width: number): [number, number, number, number][] {
  const [x0, y0] = [n0 % width, Math.floor(n0 / width)];
  const [x1, y1] = [n1 % width, Math.floor(n1 / width)];
  if (y0 === y1) return [[x0, y0, x1 - x0, 1]];
  const rects: [number, number, number, number][] = [[x0, y0, width - x0, 1]];
  if (y1 > y0 + 1) rects.push([0, y0 + 1, width, y1 - y0 - 1]);
  if (x1 > 0) rects.push([0, y1, x1, 1]);
  return rects;
}

export class RawGl {
  readonly gl: WebGLRenderingContext;
  readonly #programs = new Map<string, { program: WebGLProgram; uniforms: Map<string, WebGLUniformLocation | null> }>();
  readonly #geometries = new Map<string, Geometry>();
  readonly #buffer: WebGLBuffer;
  /** Whether vertex shaders may sample textures (MAX_VERTEX_TEXTURE_IMAGE_UNITS > 0). */
  readonly vertexTextures: boolean;
  readonly #framebuffer: WebGLFramebuffer;
  readonly #internalFormat: number;

  constructor(gl: WebGLRenderingContext, webgl2: boolean) {
    this.gl = gl;
    // WebGL2 needs a sized float format to render to; WebGL1 (OES_texture_float) takes RGBA + FLOAT.
    this.#internalFormat = webgl2 ? (gl as WebGL2RenderingContext).RGBA32F : gl.RGBA;
    this.#buffer = gl.createBuffer() as WebGLBuffer;
    const saved = gl.getParameter(gl.ARRAY_BUFFER_BINDING) as WebGLBuffer | null;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.#buffer);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, saved);
    this.#framebuffer = gl.createFramebuffer() as WebGLFramebuffer;
    this.vertexTextures = (gl.getParameter(gl.MAX_VERTEX_TEXTURE_IMAGE_UNITS) as number) > 0;
  }

  /** The vertex buffer `key`, made by `build` (aVertex values, 4 per vertex) on first use. */
  geometry(key: string, build: () => Float32Array): Geometry {
    let g = this.#geometries.get(key);
    if (g) return g;
    const gl = this.gl;
    const data = build();
    const buffer = gl.createBuffer() as WebGLBuffer;
    const saved = gl.getParameter(gl.ARRAY_BUFFER_BINDING) as WebGLBuffer | null;
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, saved);
    g = { buffer, count: data.length / 4 };
    this.#geometries.set(key, g);
    return g;
  }

  get programCount(): number {
    return this.#programs.size;
  }

  createTexture(width: number, height: number): RawTexture {
    const gl = this.gl;
    const tex = gl.createTexture() as WebGLTexture;
    const savedUnit = gl.getParameter(gl.ACTIVE_TEXTURE) as number;
    gl.activeTexture(gl.TEXTURE0);
    const saved = gl.getParameter(gl.TEXTURE_BINDING_2D) as WebGLTexture | null;
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texImage2D(gl.TEXTURE_2D, 0, this.#internalFormat, width, height, 0, gl.RGBA, gl.FLOAT, null);
    gl.bindTexture(gl.TEXTURE_2D, saved);
    gl.activeTexture(savedUnit);
    return { tex, width, height };
  }

  /** A texture holding `data` (width·height RGBA texels, row by row). */
  upload(width: number, height: number, data: Float32Array): RawTexture {
    const gl = this.gl;
    const t = this.createTexture(width, height);
    const savedUnit = gl.getParameter(gl.ACTIVE_TEXTURE) as number;
    gl.activeTexture(gl.TEXTURE0);
    const saved = gl.getParameter(gl.TEXTURE_BINDING_2D) as WebGLTexture | null;
    const flip = gl.getParameter(gl.UNPACK_FLIP_Y_WEBGL) as boolean;
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.bindTexture(gl.TEXTURE_2D, t.tex);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, width, height, gl.RGBA, gl.FLOAT, data);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, flip);
    gl.bindTexture(gl.TEXTURE_2D, saved);
    gl.activeTexture(savedUnit);
    return t;
  }

  deleteTexture(t: RawTexture): void {
    this.gl.deleteTexture(t.tex);
  }

  /** Compiles program `key` now (as `draw` would on first use), so a later draw cannot fail to. */
  prepare(key: string, fragment: string): void {
    this.#program(key, fragment);
  }

  #program(key: string, fragment: string, vertex = VERTEX) {
    let p = this.#programs.get(key);
    if (p) return p;
    const gl = this.gl;
    const compile = (type: number, src: string) => {
      const s = gl.createShader(type) as WebGLShader;
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) {
        const log = gl.getShaderInfoLog(s);
        gl.deleteShader(s);
        throw new Error(`webgl backend: compiling ${key} failed: ${log}`);
      }
      return s;
    };
    const vs = compile(gl.VERTEX_SHADER, vertex);
    const fs = compile(gl.FRAGMENT_SHADER, fragment);
    const program = gl.createProgram() as WebGLProgram;
    gl.attachShader(program, vs);
    gl.attachShader(program, fs);
    gl.bindAttribLocation(program, 0, vertex === VERTEX ? 'aPos' : 'aVertex');
    gl.linkProgram(program);
    gl.deleteShader(vs);
    gl.deleteShader(fs);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      const log = gl.getProgramInfoLog(program);
      gl.deleteProgram(program);
      throw new Error(`webgl backend: linking ${key} failed: ${log}`);
    }
    p = { program, uniforms: new Map() };
    this.#programs.set(key, p);
    return p;
  }

  /**
   * Runs program `key` (fragment source `fragment`, compiled once per key) over `rect`
   * ([x, y, w, h] texels, default the whole target) of `target`. Fragments find their texel
   * with gl_FragCoord.
   */
  draw(
    key: string,
    fragment: string,
    target: RawTexture,
    inputs: DrawInputs,
    rect: readonly [number, number, number, number] = [0, 0, target.width, target.height],
  ): void {
    this.#draw(this.#program(key, fragment), target, inputs, rect, null);
  }

  /**
   * Runs program `key` (vertex shader `vertex`, fragment shader `fragment`) over the quads of
   * `geometry` only, in target texel coordinates mapped by the vertex shader: fragments outside
   * them never run, and those texels keep what they held.
   */
  drawGeometry(
    key: string,
    vertex: string,
    fragment: string,
    target: RawTexture,
    inputs: DrawInputs,
    geometry: Geometry,
  ): void {
    this.#draw(this.#program(key, fragment, vertex), target, inputs, [0, 0, target.width, target.height], geometry);
  }

  #draw(
    p: { program: WebGLProgram; uniforms: Map<string, WebGLUniformLocation | null> },
    target: RawTexture,
    inputs: DrawInputs,
    rect: readonly [number, number, number, number],
    geometry: Geometry | null,
  ): void {
    const gl = this.gl;
    const loc = (name: string) => {
      if (!p.uniforms.has(name)) p.uniforms.set(name, gl.getUniformLocation(p.program, name));
      return p.uniforms.get(name) ?? null;
    };
    withGpuJsState(gl, () => {
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.#framebuffer);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, target.tex, 0);
      gl.disable(gl.SCISSOR_TEST);
      gl.viewport(rect[0], rect[1], rect[2], rect[3]);
      gl.useProgram(p.program);
      gl.bindBuffer(gl.ARRAY_BUFFER, geometry ? geometry.buffer : this.#buffer);
      gl.enableVertexAttribArray(0);
      gl.vertexAttribPointer(0, geometry ? 4 : 2, gl.FLOAT, false, 0, 0);
      let unit = 0;
      for (const [name, t] of Object.entries(inputs.textures)) {
        gl.activeTexture(gl.TEXTURE0 + unit);
        gl.bindTexture(gl.TEXTURE_2D, t.tex);
        gl.uniform1i(loc(name), unit);
        gl.uniform2f(loc(`${name}Size`), t.width, t.height);
        unit++;
      }
      for (const [name, v] of Object.entries(inputs.uniforms ?? {})) {
        if (typeof v === 'number') gl.uniform1f(loc(name), v);
        // An array's location is that of its element 0 (the bare name is not found everywhere).
        else gl.uniform1fv(loc(`${name}[0]`), new Float32Array(v));
      }
      if (geometry) gl.drawArrays(gl.TRIANGLES, 0, geometry.count);
      else gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, null, 0);
    });
  }

  /** Reads a whole texture back: width·height RGBA texels, row by row. */
  read(t: RawTexture): Float32Array {
    const gl = this.gl;
    const saved = gl.getParameter(gl.FRAMEBUFFER_BINDING) as WebGLFramebuffer | null;
    const out = new Float32Array(t.width * t.height * 4);
    try {
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.#framebuffer);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t.tex, 0);
      gl.readPixels(0, 0, t.width, t.height, gl.RGBA, gl.FLOAT, out);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, null, 0);
    } finally {
      gl.bindFramebuffer(gl.FRAMEBUFFER, saved);
    }
    return out;
  }

  /** Frees programs, the vertex buffers and the framebuffer (textures belong to their tensors). */
  destroy(): void {
    const gl = this.gl;
    for (const p of this.#programs.values()) gl.deleteProgram(p.program);
    this.#programs.clear();
    for (const g of this.#geometries.values()) gl.deleteBuffer(g.buffer);
    this.#geometries.clear();
    gl.deleteBuffer(this.#buffer);
    gl.deleteFramebuffer(this.#framebuffer);
  }
}
