/**
 * The math of every op, as plain functions over Float32Arrays that compute a range of rows
 * [from, to). The cpu backend calls them over the whole range; the workers backend calls the very
 * same functions on slices from each thread. One implementation of the math.
 *
 * `linearFast` and `fusedAttentionFast` are the WebAssembly SIMD versions of `linear` and
 * `fusedAttention` with the identical contract (same arguments, same row range); they fall back to
 * the reference function themselves when SIMD is missing or the attrs carry extras they do not
 * implement, so a caller can use them unconditionally. They run the best WebAssembly build this
 * runtime has; `fastKernels(build)` gives the same pair for one build (`resolveKernelChoice`
 * turns a `backendOptions.kernels` value into that build), so a thread pool runs what its
 * backend chose on every thread.
 */
export {
  type ArenaRef,
  beginPackScope,
  bestWasmBuild,
  createArena,
  DecodeArena,
  decodeApplies,
  decodePartial,
  endPackScope,
  type FastKernels,
  fastKernels,
  fastKernelsAvailable,
  finishPartials,
  fusedAttention as fusedAttentionFast,
  fusedAttentionIsFast,
  type KernelBuild,
  type KernelChoice,
  linear as linearFast,
  linearIsFast,
  type PreparedWeight,
  partialFloats,
  preloadFastKernels,
  readArena,
  releaseDecodeKernel,
  residentBytes,
  resolveKernelChoice,
  type WasmBuild,
  wasmBuildSupport,
} from '../fast/index.js';
export { add } from './add.js';
export { fusedAttention, packedFusedAttention } from './fusedAttention.js';
export { linear } from './linear.js';
export { logSumExp } from './logSumExp.js';
export { hasScoreModifiers, mask, modifiedScore, sinkKeysEnd, visibleKeys } from './mask.js';
export { positionalEncoding } from './positionalEncoding.js';
export { rotary } from './rotary.js';
export { scale } from './scale.js';
export { rowsOf, scores } from './scores.js';
export { contiguousRuns, SEQUENCE_BLOCK, sequenceBlocks } from './sequences.js';
export { softmax } from './softmax.js';
export { weightedSum } from './weightedSum.js';
export { writeRows } from './writeRows.js';
