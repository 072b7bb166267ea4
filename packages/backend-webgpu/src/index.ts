export {
  type Warmup,
  type WarmupShape,
  WebGPUBackend,
  type WebGPUBackendOptions,
  warmup,
  webgpuBackend,
  webgpuSupports,
} from './backend.js';
export { liveDevices, NODE_PROVIDER, SWIFTSHADER_ICD } from './device.js';
export { liveBuffers, WebGPUTensor } from './runtime.js';
