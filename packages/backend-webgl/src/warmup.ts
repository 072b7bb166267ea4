import { type AttentionConfig, compileByRunning, type WarmupShape } from '@qkv/core';
import type { WebGLBackend } from './backend.js';
import type { WebGLMode } from './device.js';

/**
 * Warm-up: compile every program a config and shape need before the first real run (shader
 * translation and compilation are most of a first run's cost), on the shared context.
 */

/**
 * Compiles (by running once on zeros) every kernel a run of this config and shape needs, on
 * the backend's context, and returns how long that took. Later handles of the same mode share
 * the context while any backend holds it, and find the kernels compiled.
 */
export function compileFor(backend: WebGLBackend, config: AttentionConfig, shape: WarmupShape): Promise<number> {
  return compileByRunning(backend, config, shape);
}

export type { WarmupShape };

export interface Warmup {
  readonly mode: WebGLMode;
  /** First-run cost: shader translation + compilation + one run, in ms. */
  readonly compileMs: number;
  /** Compiled kernels now cached on the context. */
  readonly kernels: number;
  /** Lets the context go (it is destroyed once no attention handle uses it either). */
  release(): Promise<void>;
}
