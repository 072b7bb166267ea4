export { CpuBackend, type CpuBackendOptions, type CpuKernelPath, CpuTensor, cpuBackend } from './backend.js';
export * as cpuKernels from './kernels/index.js';
