/**
 * qkv: transformer attention on pluggable backends.
 *
 *   const attn = await createAttention(config, weights, { backend: 'auto' });
 *   const out = await attn.run({ query }, { returnWeights: true, capture: ['scores'] });
 *
 * The built-in backends are registered into the default registry on first use (never at import
 * time); `registerBackend` adds your own. Optional backends (`@qkv/backend-webgl`, `@qkv/backend-webgpu`) are separate
 * packages: in Node an installed one is found by itself, in a bundled app import its factory and
 * `registerBackend` it.
 */
import {
  type Attention,
  type AttentionConfig,
  type AttentionWeights,
  type BackendCreateOptions,
  type BackendFactory,
  type BackendInfo,
  BackendRegistry,
  createAttention as coreCreateAttention,
} from '@qkv/core';
import { builtinBackends } from './builtins.js';

export * from '@qkv/core';
export { builtinBackends } from './builtins.js';
export { installHint, OPTIONAL_BACKENDS, type OptionalBackend, optionalBackendFactory } from './optional.js';

let defaultRegistry: BackendRegistry | null = null;

/** The registry `createAttention` uses unless told otherwise, holding every built-in backend. */
export function getDefaultRegistry(): BackendRegistry {
  if (!defaultRegistry) {
    defaultRegistry = new BackendRegistry();
    for (const f of builtinBackends()) defaultRegistry.register(f);
  }
  return defaultRegistry;
}

/** Adds (or replaces) a backend in the default registry. */
export function registerBackend(factory: BackendFactory): void {
  getDefaultRegistry().register(factory);
}

export interface QkvCreateOptions {
  /** 'auto' (default) or a backend name: 'cpu', 'workers', 'webgl', or one you registered. */
  backend?: string;
  backendOptions?: BackendCreateOptions;
  /** Defaults to the default registry. */
  registry?: BackendRegistry;
}

export function createAttention(
  config: AttentionConfig,
  weights: AttentionWeights,
  options: QkvCreateOptions = {},
): Promise<Attention> {
  const { registry, ...rest } = options ?? {};
  return coreCreateAttention(config, weights, {
    ...rest,
    registry: registry ?? getDefaultRegistry(),
  });
}

/** Every registered backend with its priority, availability and the reason when unavailable. */
export function listBackends(registry: BackendRegistry = getDefaultRegistry()): Promise<BackendInfo[]> {
  return registry.list();
}
