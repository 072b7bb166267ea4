/**
 * The seam between gpu.js and the raw programs (raw.ts): the only module that knows how gpu.js
 * works inside. gpu.js runs the kernels that have no packed program (the unfused score chain,
 * rotary, the oversized fallbacks; docs/ARCHITECTURE.md says why), the raw programs
 * run the hot path, and both share one GL context and hand textures to each other here:
 *
 *  - `glOf`: the GL texture and texel size behind a gpu.js texture, read from the `texture` and
 *    `size` fields that gpu.js's typings leave out (pinned by the exact gpu.js version in
 *    package.json), so a raw program can sample it;
 *  - `newFlatTexture`: a texture *owned by gpu.js* for a raw program to render into (unpacking a
 *    packed tensor for a gpu.js kernel downstream): gpu.js has no API to adopt a foreign texture,
 *    so a kernel returning 0.0 runs once to allocate one, which later gpu.js kernels, `toArray`
 *    and `delete` then treat as their own;
 *  - `runKernel`: calls a compiled kernel and takes its output texture (`pipeline: true`);
 *  - `withGpuJsState`: every raw draw saves and restores the GL state gpu.js assumes survives
 *    between its calls (it sets viewport and vertex attributes only when it builds a kernel).
 */
import type { IKernelRunShortcut, KernelOutput, Texture } from 'gpu.js';
import type { GlDevice, KernelSpec } from './device.js';

/** A gpu.js output texture: one float per texel in a near-square texture (see `textureDims`). */
export type GlTexture = Texture;

/** The GL texture and texel size behind a gpu.js texture. */
export function glOf(t: GlTexture): { tex: WebGLTexture; width: number; height: number } {
  const g = t as unknown as { texture: WebGLTexture; size: [number, number] };
  return { tex: g.texture, width: g.size[0], height: g.size[1] };
}

/** Runs the compiled kernel of `spec` and returns its (immutable, hence owned) output texture. */
export function runKernel(device: GlDevice, spec: KernelSpec, args: readonly unknown[]): GlTexture {
  const kernel: IKernelRunShortcut = device.kernel(spec);
  return (kernel as unknown as (...a: unknown[]) => KernelOutput)(...args) as unknown as GlTexture;
}

/** An output texture of n values, owned by gpu.js, for a raw program to render into. */
export function newFlatTexture(device: GlDevice, n: number): GlTexture {
  return runKernel(device, allocSpec(n), []);
}

function allocSpec(n: number): KernelSpec {
  return { name: 'alloc', output: n, constants: {}, source: 'function alloc() {\n  return 0.0;\n}' };
}

/** Runs `draw` and puts back the GL state gpu.js relies on between its own calls. */
export function withGpuJsState(gl: WebGLRenderingContext, draw: () => void): void {
  const saved = {
    viewport: gl.getParameter(gl.VIEWPORT) as Int32Array,
    scissorTest: gl.isEnabled(gl.SCISSOR_TEST),
    framebuffer: gl.getParameter(gl.FRAMEBUFFER_BINDING) as WebGLFramebuffer | null,
    program: gl.getParameter(gl.CURRENT_PROGRAM) as WebGLProgram | null,
    arrayBuffer: gl.getParameter(gl.ARRAY_BUFFER_BINDING) as WebGLBuffer | null,
    unit: gl.getParameter(gl.ACTIVE_TEXTURE) as number,
    attrib: {
      buffer: gl.getVertexAttrib(0, gl.VERTEX_ATTRIB_ARRAY_BUFFER_BINDING) as WebGLBuffer | null,
      size: gl.getVertexAttrib(0, gl.VERTEX_ATTRIB_ARRAY_SIZE) as number,
      type: gl.getVertexAttrib(0, gl.VERTEX_ATTRIB_ARRAY_TYPE) as number,
      normalized: gl.getVertexAttrib(0, gl.VERTEX_ATTRIB_ARRAY_NORMALIZED) as boolean,
      stride: gl.getVertexAttrib(0, gl.VERTEX_ATTRIB_ARRAY_STRIDE) as number,
      offset: gl.getVertexAttribOffset(0, gl.VERTEX_ATTRIB_ARRAY_POINTER),
      enabled: gl.getVertexAttrib(0, gl.VERTEX_ATTRIB_ARRAY_ENABLED) as boolean,
    },
  };
  try {
    draw();
  } finally {
    const a = saved.attrib;
    if (a.buffer) {
      gl.bindBuffer(gl.ARRAY_BUFFER, a.buffer);
      gl.vertexAttribPointer(0, a.size, a.type, a.normalized, a.stride, a.offset);
    }
    if (!a.enabled) gl.disableVertexAttribArray(0);
    gl.bindBuffer(gl.ARRAY_BUFFER, saved.arrayBuffer);
    gl.activeTexture(saved.unit);
    gl.useProgram(saved.program);
    gl.bindFramebuffer(gl.FRAMEBUFFER, saved.framebuffer);
    gl.viewport(
      saved.viewport[0] as number,
      saved.viewport[1] as number,
      saved.viewport[2] as number,
      saved.viewport[3] as number,
    );
    if (saved.scissorTest) gl.enable(gl.SCISSOR_TEST);
  }
}
