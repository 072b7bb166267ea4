export { WorkersBackend, type WorkersStats, workersBackend } from './backend.js';
export { DECODE_BLOCKS_PER_THREAD, decodeSplits, MIN_SPLIT_KEYS } from './decode.js';
export {
  dispatchWork,
  FAST_WORK_DIVISOR,
  OPS,
  type OpRecord,
  planTask,
  type SliceOp,
  type SliceTask,
  workPerRow,
} from './ops.js';
export { INLINE_WORK_THRESHOLD, MAX_THREADS, type WorkersBackendOptions } from './options.js';
export {
  BLOCKS_PER_THREAD,
  blockRange,
  FUSED_BLOCKS_PER_THREAD,
  LINEAR_BLOCKS_PER_THREAD,
  LINEAR_COLUMN_BLOCKS_PER_THREAD,
  LINEAR_PANEL,
  MIN_BLOCK_WORK,
  MIN_COLUMN_BLOCK_WORK,
  MIN_FUSED_BLOCK_ROWS,
  MIN_LINEAR_BLOCK_ROWS,
  planBlocks,
  planColumns,
  type TaskPlan,
} from './plan.js';
export { liveThreads } from './platform.js';
export { DEFAULT_START_TIMEOUT_MS, type PoolStats, SLICE_MS } from './pool.js';
export { LINEAR_COLUMN_MAX_ROWS } from './prepared.js';
export { WorkersTensor } from './tensor.js';
