import { sizeOf } from '@qkv/core';
import { flatGroup, grid1d, type Params, type Runtime, type WebGPUTensor } from '../runtime.js';

/** Threads per workgroup of the one-thread-per-output kernels. */
export const WG = 256;

/**
 * A shader's declarations: the uniform block `p` at binding 0 (4-byte fields, in the order the
 * dispatch's `Params` writes them), then storage buffers at bindings 1 … n. A buffer written as
 * `name:rw` is the output; the others are read-only.
 */
export function declare(fields: readonly string[], buffers: readonly string[]): string {
  const struct = `struct P { ${fields.join(', ')} };`;
  const vars = buffers.map((b, i) => {
    const [name, mode] = b.split(':');
    return `@group(0) @binding(${i + 1}) var<storage, ${mode === 'rw' ? 'read_write' : 'read'}> ${name}: array<f32>;`;
  });
  return [struct, '@group(0) @binding(0) var<uniform> p: P;', ...vars].join('\n');
}

/** The entry point of a one-thread-per-output kernel over a `grid1d` dispatch: `idx` is the output. */
export const perOutput = (n: string) => `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  ${flatGroup}
  let idx = group * ${WG}u + lid;
  if (idx >= ${n}) { return; }`;

/** Runs a one-thread-per-output kernel (`threads` of them) into a new tensor of `shape`. */
export function elementwise(
  rt: Runtime,
  key: string,
  wgsl: () => string,
  params: Params,
  inputs: readonly (WebGPUTensor | null)[],
  shape: readonly number[],
  threads = sizeOf(shape),
): WebGPUTensor {
  const out = rt.tensor(shape);
  const buffers = inputs.filter((t): t is WebGPUTensor => t !== null).map((t) => t.buffer);
  rt.dispatch({ key, wgsl, params, buffers: [...buffers, out.buffer], groups: grid1d(Math.ceil(threads / WG)) });
  return out;
}
