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
  beginPackScope,
  endPackScope,
  type FastKernels,
  fastKernelMemoryBytes,
  fastKernels,
  fastKernelsAvailable,
  fusedAttention,
  fusedAttentionIsFast,
  linear,
  preloadFastKernels,
} from './wasm.js';
