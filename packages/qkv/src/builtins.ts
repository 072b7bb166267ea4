import { cpuBackend } from '@qkv/backend-cpu';
import { workersBackend } from '@qkv/backend-workers';
import type { BackendFactory } from '@qkv/core';
import { OPTIONAL_BACKENDS, optionalBackendFactory } from './optional.js';

/**
 * The backends of the default registry (the registry orders them by priority): cpu and workers,
 * which qkv depends on, and a stand-in for each optional backend package (`OPTIONAL_BACKENDS`),
 * which runs the real one when that package is installed and says what to install when not.
 */
export function builtinBackends(): BackendFactory[] {
  return [cpuBackend, workersBackend, ...OPTIONAL_BACKENDS.map(optionalBackendFactory)];
}
