import { cpuBackend } from '@qkv/backend-cpu';
import { describeConformance } from '@qkv/conformance/suite';
import { describe } from 'vitest';
import { workersBackend } from '../../dist/index.js';
import { workersFactory } from './helpers.js';

/**
 * Every output buffer that no pending op uses is filled with NaN when its op is queued
 * (`poisonOutputs`): outputs are not zero-filled because every kernel writes every element, and
 * this suite is what proves it (a skipped element would show up as NaN against the reference).
 */
const poisoned = workersFactory((b) => b.poisonOutputs(true));

describe('default options (small ops run inline, large ones on the threads)', () => {
  describeConformance(workersBackend, { reference: cpuBackend });
});

// The golden and fuzz shapes are small, so under the default threshold most ops would never
// reach a thread; here every op goes through the pool, split into blocks on 2 threads, onto
// NaN-poisoned output buffers.
describe('every op on 2 threads (inlineThreshold: 0), outputs poisoned', () => {
  describeConformance(poisoned, {
    reference: cpuBackend,
    backendOptions: { threads: 2, inlineThreshold: 0 },
  });
});
