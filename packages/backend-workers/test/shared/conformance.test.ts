import { cpuBackend } from '@qkv/backend-cpu';
import { describeConformance } from '@qkv/conformance/suite';
import { describe } from 'vitest';
import { workersBackend } from '../../dist/index.js';

describe('default options (small ops run inline, large ones on the threads)', () => {
  describeConformance(workersBackend, { reference: cpuBackend });
});

// The golden and fuzz shapes are small, so under the default threshold most ops would never
// reach a thread; here every op goes through the pool, split into blocks on 2 threads.
describe('every op on 2 threads (inlineThreshold: 0)', () => {
  describeConformance(workersBackend, {
    reference: cpuBackend,
    backendOptions: { threads: 2, inlineThreshold: 0 },
  });
});
