import { describeReliability } from '@qkv/conformance/reliability';
import { liveThreads, workersBackend } from '../../dist/index.js';

// Every op through the pool (inlineThreshold: 0), so the soak and the fuzz exercise the threads
// and not the inline path; live threads must stay at the pool size throughout.
describeReliability(workersBackend, {
  backendOptions: { threads: 2, inlineThreshold: 0 },
  resources: () => liveThreads(),
  timeout: 300_000,
});
