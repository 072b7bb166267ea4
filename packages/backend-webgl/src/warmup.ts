import { type AttentionConfig, buildGraph, execute, resolveConfig, sizeOf, type Tensor } from '@qkv/core';
import type { WebGLBackend } from './backend.js';
import type { WebGLMode } from './device.js';
import type { WebGLTensor } from './tensor.js';

/**
 * Warm-up: compile every program a config and shape need before the first real run (shader
 * translation and compilation are most of a first run's cost), on the shared context.
 */

/**
 * Compiles (by running once on zeros) every kernel a run of this config and shape needs, on
 * the backend's context, and returns how long that took. Later handles of the same mode share
 * the context while any backend holds it, and find the kernels compiled.
 */
export async function compileFor(backend: WebGLBackend, config: AttentionConfig, shape: WarmupShape): Promise<number> {
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
    if (n.op === 'param') params.set(n.name, backend.upload(zeros(n.shape)));
    if (n.op === 'input') feeds.set(n.name, zeros(n.shape));
  }
  try {
    for (const withWeights of shape.paths === 'fused' ? [false] : shape.paths === 'unfused' ? [true] : [false, true]) {
      await execute({
        graph,
        backend,
        params,
        feeds,
        outputs: withWeights ? ['attention', 'residual', 'weights'] : ['attention', 'residual'],
      });
    }
  } finally {
    for (const p of params.values()) backend.dispose(p);
  }
  return performance.now() - t0;
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
