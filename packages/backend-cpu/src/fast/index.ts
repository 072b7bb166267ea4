export {
  beginPackScope,
  endPackScope,
  fastKernelMemoryBytes,
  fastKernelsAvailable,
  fusedAttention,
  fusedAttentionIsFast,
  linear,
  preloadFastKernels,
} from './wasm.js';
