export {
  FUSED_TILE_ELEMENTS,
  fusedTileRows,
  MAX_TENSOR_ELEMENTS,
  textureDims,
  type Warmup,
  type WarmupShape,
  WebGLBackend,
  type WebGLBackendOptions,
  WebGLTensor,
  warmup,
  webglBackend,
  webglSupports,
} from './backend.js';
export { liveDevices, type WebGLMode } from './device.js';
