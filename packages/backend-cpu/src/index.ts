export { CpuBackend, CpuTensor, cpuBackend } from './backend.js';
export * as cpuKernels from './kernels/index.js';
