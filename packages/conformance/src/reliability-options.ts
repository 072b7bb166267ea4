import type { BackendCreateOptions } from '@qkv/core';

export interface ReliabilityOptions {
  backendOptions?: BackendCreateOptions;
  /** Runs in the soak test (default 2000; QKV_SOAK_RUNS overrides). */
  soakRuns?: number;
  /** Concurrent runs on one handle (default 100). */
  concurrency?: number;
  /** Fuzz cases (default 60; QKV_FUZZ_RUNS overrides) and seed (QKV_FUZZ_SEED overrides). */
  fuzzRuns?: number;
  seed?: number;
  /** Allowed growth of process RSS over the soak, after warm-up, in MiB (Node only). */
  rssBoundMiB?: number;
  timeout?: number;
  /** Extra resource counter for the soak (live threads, live textures), if the backend has one. */
  resources?: () => number;
}

export function env(name: string): string | undefined {
  return typeof process !== 'undefined' ? process.env?.[name] : undefined;
}
