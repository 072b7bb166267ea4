export { WebGLBackend, warmup, webglBackend, webglSupports } from './backend.js';
export { liveDevices, type WebGLMode } from './device.js';
export {
  FUSED_TILE_ELEMENTS,
  fusedTileRows,
  MAX_TENSOR_ELEMENTS,
  textureDims,
  type WebGLBackendOptions,
} from './options.js';
export { WebGLTensor } from './tensor.js';
export type { Warmup, WarmupShape } from './warmup.js';
