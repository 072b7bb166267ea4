import type { AttentionGraph } from './graph.js';
import type { ReturnWeights } from './inputs.js';
import type { Tensor } from './tensor.js';

/** What run() and a session step return, read off the executor's downloads. */

/** Mean over heads: weights [B, H, Lq, Lk] → [B, Lq, Lk] (PyTorch's average_attn_weights). */
export function averageHeads(w: Tensor): Tensor {
  const [B, H, Lq, Lk] = w.shape as [number, number, number, number];
  const plane = Lq * Lk;
  const out = new Float32Array(B * plane);
  for (let b = 0; b < B; b++) {
    for (let e = 0; e < plane; e++) {
      let sum = 0;
      for (let h = 0; h < H; h++) sum += w.data[(b * H + h) * plane + e] as number;
      out[b * plane + e] = sum / H;
    }
  }
  return { shape: [B, Lq, Lk], data: out };
}

/** Drops the leading batch dim of batch-first nodes for unbatched calls. */
export function unbatch(t: Tensor, dims: readonly string[]): Tensor {
  if (dims[0] !== 'B') return t;
  return { shape: t.shape.slice(1), data: t.data };
}

/**
 * attention, residual and (when asked) weights of one run, and `take` for any other downloaded
 * node; unbatched calls get every batch-first output without its leading dim.
 */
export function readOutputs(
  graph: AttentionGraph,
  tensors: ReadonlyMap<string, Tensor>,
  unbatched: boolean,
  returnWeights: ReturnWeights | undefined,
): { attention: Tensor; residual: Tensor; weights?: Tensor; take(name: string): Tensor } {
  const dimsOf = new Map(graph.nodes.map((n) => [n.name, n.dims]));
  const take = (name: string): Tensor => {
    const t = tensors.get(name);
    if (!t) throw new Error(`qkv: "${name}" was not downloaded`);
    return unbatched ? unbatch(t, dimsOf.get(name) ?? []) : t;
  };
  const out: { attention: Tensor; residual: Tensor; weights?: Tensor; take(name: string): Tensor } = {
    attention: take('attention'),
    residual: take('residual'),
    take,
  };
  if (returnWeights === 'averaged') {
    const w = averageHeads(tensors.get('weights') as Tensor);
    out.weights = unbatched ? unbatch(w, ['B']) : w;
  } else if (returnWeights) {
    out.weights = take('weights');
  }
  return out;
}
