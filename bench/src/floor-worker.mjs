// One thread of the decode bench's two-thread floor: reads its half of a cache in the decode
// arena (shared WebAssembly memory) each time it is told to, and answers with its time.
import { parentPort, workerData } from 'node:worker_threads';
import { cpuKernels } from '@qkv/backend-cpu';

const { memory, id, ptr, bytes } = workerData;
parentPort.on('message', () => {
  const t0 = performance.now();
  const sum = cpuKernels.readArena({ memory, id, ptr }, bytes);
  parentPort.postMessage({ ms: performance.now() - t0, sum });
});
