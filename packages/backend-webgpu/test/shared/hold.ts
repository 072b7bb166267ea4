import { afterAll, beforeAll } from 'vitest';
import { type Warmup, warmup } from '../../src/index.js';

/**
 * Keeps one device (and its compiled pipelines) alive for a whole test file: SwiftShader
 * compiles each WGSL pipeline on the CPU in about a second, and without a holder every
 * handle's dispose() destroys the device and its pipelines with it.
 */
export function holdDeviceForFile(): void {
  let held: Warmup | null = null;
  beforeAll(async () => {
    held = await warmup({ dModel: 16, numHeads: 4, causal: true }, { batch: 1, queryLength: 4 });
  }, 120_000);
  afterAll(async () => {
    await held?.release();
  });
}
