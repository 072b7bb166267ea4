export { CpuBackend, type CpuBackendOptions, type CpuKernelChoice, CpuTensor, cpuBackend } from './backend.js';
export type { KernelBuild, KernelChoice, WasmBuild } from './fast/index.js';
export * as cpuKernels from './kernels/index.js';
