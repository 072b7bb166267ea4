import type { Backend, BackendTensor } from './backend.js';
import { buildGraph } from './build-graph.js';
import { type AttentionConfig, resolveConfig } from './config.js';
import { execute } from './executor.js';
import { sizeOf, type Tensor } from './tensor.js';

/**
 * Warm-up for backends that compile per shape (GPU shaders): run a config's graph once on zeros,
 * so every program a real run of that shape needs is compiled and cached, before the first real
 * run pays for it.
 */

/** The shape a warm-up compiles for. keyLength absent = self-attention. */
export interface WarmupShape {
  batch: number;
  queryLength: number;
  keyLength?: number;
  keyPaddingMask?: boolean;
  attnMask?: boolean;
  /** Which paths to compile: 'fused' (no weights asked), 'unfused' (weights/captures) or 'both' (default). */
  paths?: 'fused' | 'unfused' | 'both';
}

/** Runs `config` at `shape` on zeros through `backend` (both paths by default); returns the ms it took. */
export async function compileByRunning<T extends BackendTensor>(
  backend: Backend<T>,
  config: AttentionConfig,
  shape: WarmupShape,
): Promise<number> {
  const t0 = performance.now();
  const resolved = resolveConfig(config);
  const graph = buildGraph(resolved, {
    batch: shape.batch,
    queryLength: shape.queryLength,
    keyLength: shape.keyLength ?? shape.queryLength,
    selfAttention: shape.keyLength === undefined || (resolved.selfAttention ?? false),
    hasKeyPaddingMask: shape.keyPaddingMask ?? false,
    hasAttnMask: shape.attnMask ?? false,
  });
  const zeros = (s: readonly number[]): Tensor => ({ shape: [...s], data: new Float32Array(sizeOf(s)) });
  const params = new Map<string, T>();
  const feeds = new Map<string, Tensor>();
  for (const n of graph.nodes) {
    if (n.op === 'param') params.set(n.name, await backend.upload(zeros(n.shape)));
    if (n.op === 'input') feeds.set(n.name, zeros(n.shape));
  }
  const paths = shape.paths ?? 'both';
  try {
    for (const withWeights of paths === 'fused' ? [false] : paths === 'unfused' ? [true] : [false, true]) {
      await execute({
        graph,
        backend: backend as unknown as Backend,
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
