import { cpuBackend } from '@qkv/backend-cpu';
import { webglBackend } from '@qkv/backend-webgl';
import { workersBackend } from '@qkv/backend-workers';
import type { BackendFactory } from '@qkv/core';

/** The backends that ship with qkv, highest priority first is decided by the registry. */
export function builtinBackends(): BackendFactory[] {
  return [cpuBackend, workersBackend, webglBackend];
}
