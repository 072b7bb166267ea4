/**
 * Packed sequences (`sequenceIds` [B, Lk]): the per-block id ranges the fused kernels use to
 * skip blocks of keys that cannot share a query's id, and the split of a row into contiguous
 * runs of one id, which lets any fused kernel run each packed sequence as its own problem.
 */

/** Keys per block whose id range the fused reference kernel checks before visiting them. */
export const SEQUENCE_BLOCK = 32;

/** min/max id of each block of SEQUENCE_BLOCK keys, per batch: [B · ceil(Lk / BLOCK)]. */
export function sequenceBlocks(ids: Float32Array, B: number, Lk: number): { min: Float32Array; max: Float32Array } {
  const n = Math.ceil(Lk / SEQUENCE_BLOCK);
  const min = new Float32Array(B * n).fill(Number.POSITIVE_INFINITY);
  const max = new Float32Array(B * n).fill(Number.NEGATIVE_INFINITY);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < Lk; j++) {
      const blk = b * n + Math.floor(j / SEQUENCE_BLOCK);
      const id = ids[b * Lk + j] as number;
      if (id < (min[blk] as number)) min[blk] = id;
      if (id > (max[blk] as number)) max[blk] = id;
    }
  }
  return { min, max };
}

/**
 * Batch b's row of ids split into maximal runs of one id: [start, end) pairs. Null when an id
 * comes back after another (not contiguous), where only the per-key test is exact.
 */
export function contiguousRuns(ids: Float32Array, b: number, L: number): number[] | null {
  const runs: number[] = [];
  const seen = new Set<number>();
  let start = 0;
  for (let j = 1; j <= L; j++) {
    if (j < L && ids[b * L + j] === ids[b * L + start]) continue;
    const id = ids[b * L + start] as number;
    if (seen.has(id)) return null;
    seen.add(id);
    runs.push(start, j);
    start = j;
  }
  return runs;
}
