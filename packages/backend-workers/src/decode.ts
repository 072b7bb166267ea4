import { cpuKernels, type KernelBuild } from '@qkv/backend-cpu';
import type { FusedAttentionAttrs, FusedKernels } from '@qkv/core';
import { OPS } from './ops.js';
import type { Scheduler } from './queue.js';
import { d, data, type WorkersTensor } from './tensor.js';

/**
 * The workers backend's fused kernels: split-KV decoding (FlashDecoding, Dao et al. 2023) where q
 * is a few rows against caches in the decode arena, the flash kernel over query rows otherwise.
 *
 * A decode step is two queued ops: `decodePartial` blocks of (b, key split), each the partials
 * (o, m, l) of every KV head over the split's keys, computed in place on the cache by the decode
 * kernel (a split is a contiguous block of cache rows), then `decodeMerge`, which merges
 * each (b, kvh)'s partials exactly (rescaled to the larger max, base 2) into heads and lse.
 * Splits give every thread DECODE_BLOCKS_PER_THREAD blocks where the keys allow, none shorter
 * than MIN_SPLIT_KEYS (shorter splits cost more in per-call setup and merging than they save).
 */
export const DECODE_BLOCKS_PER_THREAD = 8;
export const MIN_SPLIT_KEYS = 512;

export function decodeSplits(attrs: FusedAttentionAttrs, threads: number): number {
  const want = Math.ceil((threads * DECODE_BLOCKS_PER_THREAD) / attrs.batch);
  return Math.max(1, Math.min(want, Math.floor(attrs.keyLength / MIN_SPLIT_KEYS)));
}

export function workersFused(s: Scheduler, threads: number, build: KernelBuild): Required<FusedKernels<WorkersTensor>> {
  const flash = OPS.fusedAttention.kernel(s.enqueueOp, build);
  const heads = (a: FusedAttentionAttrs) => [a.batch, a.queryLength, a.numHeads * a.headDim];
  const lseShape = (a: FusedAttentionAttrs) => [a.batch, a.numHeads, a.queryLength];

  /** The two decode ops, or null where the decode kernel does not apply. */
  const decode = (
    q: WorkersTensor,
    k: WorkersTensor,
    v: WorkersTensor,
    masked: boolean,
    attrs: FusedAttentionAttrs,
    withLse: boolean,
  ): WorkersTensor[] | null => {
    if (build === 'reference' || k.arena === null || v.arena === null || !cpuKernels.decodeApplies(attrs, masked))
      return null;
    const splits = decodeSplits(attrs, threads);
    const [kRef, vRef] = [k.arena, v.arena];
    const partial = s.enqueue(
      [attrs.batch * attrs.numKVHeads * splits * cpuKernels.partialFloats(attrs)],
      [q, k, v],
      (out) => ({ op: 'decodePartial', q: d(q), k: kRef, v: vRef, partial: out, splits, attrs }),
    );
    const outs = s.enqueueOutputs(withLse ? [heads(attrs), lseShape(attrs)] : [heads(attrs)], [partial], ([o, l]) => ({
      op: 'decodeMerge',
      partial: d(partial),
      out: o as Float32Array,
      lse: l ?? null,
      splits,
      attrs,
    }));
    s.dispose(partial); // its buffer goes to later steps of the queue
    return outs;
  };

  return {
    fusedAttention: (q, k, v, pad, am, attrs, ids) =>
      decode(q, k, v, pad !== null || am !== null || ids != null, attrs, false)?.[0] ??
      flash(q, k, v, pad, am, attrs, ids),
    fusedAttentionLse: (q, k, v, pad, am, attrs, ids) => {
      const [out, lse] =
        decode(q, k, v, pad !== null || am !== null || ids != null, attrs, true) ??
        s.enqueueOutputs([heads(attrs), lseShape(attrs)], [q, k, v, pad, am, ids ?? null], ([o, l]) => ({
          op: 'fusedAttention',
          q: d(q),
          k: d(k),
          v: d(v),
          keyPaddingMask: data(pad),
          attnMask: data(am),
          sequenceIds: data(ids ?? null),
          out: o as Float32Array,
          lse: l as Float32Array,
          attrs,
          kernels: build,
        }));
      return [out as WorkersTensor, lse as WorkersTensor] as const;
    },
  };
}
