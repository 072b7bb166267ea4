import { randomTensor, randomWeights, rng } from '@qkv/conformance';
import { BackendRegistry, createAttention, isQkvError } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { WebGLBackend, webglBackend } from '../../src/index.js';

// Browser only: WEBGL_lose_context is how a page (or the GPU process) takes a context away;
// headless-gl has no such event.
describe('a lost WebGL context', () => {
  it('rejects runs with CONTEXT_LOST (never a hang), and the next handle gets a fresh context', async () => {
    const registry = new BackendRegistry().register(webglBackend);
    const config = { dModel: 16, numHeads: 4, causal: true };
    const weights = randomWeights(config, rng(1));
    const query = randomTensor([2, 6, 16], rng(2));
    const attn = await createAttention(config, weights, { backend: 'webgl', registry });
    const before = await attn.run({ query });

    // Another backend on the same shared device: its GL context is the handle's context.
    const peek = await WebGLBackend.create();
    const ext = peek.device.gl.getExtension('WEBGL_lose_context') as { loseContext(): void } | null;
    expect(ext, 'WEBGL_lose_context is available in Chromium').not.toBeNull();
    ext?.loseContext();
    expect(peek.device.gl.isContextLost()).toBe(true);

    const lost = await attn.run({ query }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isQkvError(lost, 'CONTEXT_LOST'), String(lost)).toBe(true);
    expect((lost as Error).message).toMatch(/WebGL context was lost; create a new attention handle/);

    const next = await createAttention(config, weights, { backend: 'webgl', registry });
    try {
      const after = await next.run({ query });
      after.attention.data.forEach((v, i) => expect(v).toBeCloseTo(before.attention.data[i] as number, 5));
    } finally {
      await next.dispose();
    }
    // Disposing the handles of the lost context frees what is left and does not throw.
    await attn.dispose();
    await peek.destroy();
  });
});
