export { createArena, DecodeArena, releaseDecodeKernel } from './arena.js';
export { fusedAttentionIsFast, STAGE_FLOATS } from './attention.js';
export {
  bestWasmBuild,
  KERNEL_CHOICES,
  type KernelBuild,
  type KernelChoice,
  resolveKernelChoice,
  type WasmBuild,
  wasmBuildSupport,
} from './builds.js';
export {
  type ArenaRef,
  DECODE_MAX_ROWS,
  decodeApplies,
  decodeAttention,
  decodePartial,
  finishPartials,
  KEY_CHUNK,
  partialFloats,
  readArena,
} from './decode.js';
export { linearIsFast, PreparedWeight } from './linear.js';
export { residentBytes } from './resident.js';
export { beginPackScope, endPackScope, forgetPacked, resumePackScope } from './scope.js';
export {
  type FastKernels,
  fastKernelMemoryBytes,
  fastKernels,
  fastKernelsAvailable,
  fusedAttention,
  linear,
  preloadFastKernels,
} from './wasm.js';
