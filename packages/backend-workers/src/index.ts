export {
  INLINE_WORK_THRESHOLD,
  MAX_THREADS,
  WorkersBackend,
  type WorkersBackendOptions,
  type WorkersStats,
  WorkersTensor,
  workersBackend,
} from './backend.js';
export {
  BLOCKS_PER_THREAD,
  blockRange,
  dispatchWork,
  FAST_WORK_DIVISOR,
  FUSED_BLOCKS_PER_THREAD,
  LINEAR_BLOCKS_PER_THREAD,
  MIN_BLOCK_WORK,
  MIN_FUSED_BLOCK_ROWS,
  MIN_LINEAR_BLOCK_ROWS,
  planBlocks,
  planTask,
  type SliceTask,
  type TaskPlan,
  workPerRow,
} from './ops.js';
export { liveThreads } from './platform.js';
export { DEFAULT_START_TIMEOUT_MS, type PoolStats, SLICE_MS } from './pool.js';
