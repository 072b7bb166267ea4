import { cpuBackend } from '@qkv/backend-cpu';
import { describeConformance } from '@qkv/conformance/suite';
import type { BackendFactory } from '@qkv/core';
import { describe } from 'vitest';
import { type WorkersBackend, workersBackend } from '../../dist/index.js';

/**
 * Every output buffer that no pending op uses is filled with NaN when its op is queued
 * (`poisonOutputs`): outputs are not zero-filled because every kernel writes every element, and
 * this suite is what proves it (a skipped element would show up as NaN against the reference).
 */
const poisoned: BackendFactory = {
  ...workersBackend,
  create: async (options) => {
    const b = (await workersBackend.create(options)) as WorkersBackend;
    b.poisonOutputs(true);
    return b;
  },
};

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
