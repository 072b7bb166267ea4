export { DECODED_DTYPES, type DecodedDtype, SAFETENSORS_DTYPE_BYTES, type SafetensorsDtype } from './dtype.js';
export { fromCheckpoint } from './formats.js';
export {
  CHECKPOINT_FORMATS,
  type CheckpointAttention,
  type CheckpointFormat,
  type CheckpointOptions,
} from './mapping.js';
export { type ByteSource, type SafetensorsEntry, SafetensorsFile } from './safetensors.js';
export { readSafetensors, type SafetensorsSource } from './source.js';
