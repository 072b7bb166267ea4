import { QkvError } from './errors.js';
import { formatShape, type Tensor } from './tensor.js';

/** One run's per-head outputs over a shard of the keys: heads [B, Lq, H·hd], lse [B, H, Lq]. */
export interface AttentionShard {
  readonly heads: Tensor;
  readonly lse: Tensor;
}

/**
 * Merges attention over two disjoint key shards into attention over all of their keys, exactly
 * (the FlashDecoding / ring-attention combine). With lse_s = log Σ_{j ∈ s} exp(score_j):
 *   lse = log(exp(lse_a) + exp(lse_b)) = max + log(exp(lse_a − max) + exp(lse_b − max))
 *   heads = exp(lse_a − lse)·heads_a + exp(lse_b − lse)·heads_b
 * per (b, h, i), because a shard's heads are its Σ exp(score_j)·V_j divided by exp(lse_s).
 * A shard whose query saw no key (lse −∞) weighs 0; both empty: heads 0, lse −∞.
 * Merging is associative, so any number of shards fold pairwise.
 */
export function mergeAttentionShards(a: AttentionShard, b: AttentionShard): AttentionShard {
  const [B, Lq, width] = a.heads.shape as [number, number, number];
  const H = a.lse.shape[1] as number;
  const same = (x: Tensor, y: Tensor) => x.shape.length === y.shape.length && x.shape.every((d, i) => d === y.shape[i]);
  if (
    a.heads.shape.length !== 3 ||
    a.lse.shape.length !== 3 ||
    a.lse.shape[0] !== B ||
    a.lse.shape[2] !== Lq ||
    width % H !== 0
  ) {
    throw new QkvError(
      'INVALID_SHAPE',
      `mergeAttentionShards: expected heads [B, Lq, H·hd] and lse [B, H, Lq], got heads ${formatShape(a.heads.shape)} and lse ${formatShape(a.lse.shape)}`,
    );
  }
  if (!same(a.heads, b.heads) || !same(a.lse, b.lse)) {
    throw new QkvError(
      'INVALID_SHAPE',
      `mergeAttentionShards: both shards need the same shapes, got heads ${formatShape(a.heads.shape)} / ${formatShape(b.heads.shape)} and lse ${formatShape(a.lse.shape)} / ${formatShape(b.lse.shape)}`,
    );
  }
  const hd = width / H;
  const heads = new Float32Array(a.heads.data.length);
  const lse = new Float32Array(a.lse.data.length);
  for (let bb = 0; bb < B; bb++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++) {
        const r = (bb * H + h) * Lq + i;
        const la = a.lse.data[r] as number;
        const lb = b.lse.data[r] as number;
        const max = Math.max(la, lb);
        if (max === Number.NEGATIVE_INFINITY) {
          lse[r] = max; // neither shard saw a key: heads stay 0
          continue;
        }
        const total = max + Math.log(Math.exp(la - max) + Math.exp(lb - max));
        const [wa, wb] = [Math.exp(la - total), Math.exp(lb - total)];
        lse[r] = total;
        const off = (bb * Lq + i) * width + h * hd;
        for (let c = off; c < off + hd; c++)
          heads[c] = wa * (a.heads.data[c] as number) + wb * (b.heads.data[c] as number);
      }
  return { heads: { shape: [...a.heads.shape], data: heads }, lse: { shape: [...a.lse.shape], data: lse } };
}
