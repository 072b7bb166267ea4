import { cpuBackend } from '@qkv/backend-cpu';
import { BackendRegistry, createAttention, isQkvError } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { liveThreads, workersBackend } from '../../dist/index.js';
import { expectSameData, inputsFor, weightsFor } from '../shared/helpers.js';

/**
 * How threads start: `backendOptions.workerUrl` (the worker entry served or copied where a bundler
 * did not put it) and WORKER_FAILED, never a hang, when they cannot.
 */
const inBrowser = typeof (globalThis as { Worker?: unknown }).Worker === 'function';
const config = { dModel: 16, numHeads: 4, causal: true };
const weights = weightsFor(config, 5);
const inputs = inputsFor(2, 9, 16, 6);
const registry = () => new BackendRegistry().register(cpuBackend).register(workersBackend);

/** The built worker entry (`@qkv/backend-workers/worker`), as a user would point at it. */
const goodUrl = new URL('../../dist/worker.js', import.meta.url);
const missingUrl = new URL('../fixtures/no-such-worker.js', import.meta.url);
/** A script that loads but never becomes qkv's worker. */
function silentUrl(): string {
  return inBrowser
    ? URL.createObjectURL(new Blob(['setInterval(() => {}, 1000);'], { type: 'text/javascript' }))
    : new URL('../fixtures/silent-worker.mjs', import.meta.url).href;
}

/** Rejects with the error `p` rejected with, or fails the test if it settles otherwise or late. */
async function failure(p: Promise<unknown>, withinMs: number): Promise<Error> {
  const started = Date.now();
  const outcome = await p.then(
    () => new Error('expected a rejection, it resolved'),
    (e: unknown) => e,
  );
  expect(Date.now() - started).toBeLessThan(withinMs);
  expect(isQkvError(outcome)).toBe(true);
  return outcome as Error;
}

async function noThreadsLeft(): Promise<void> {
  // Browsers count a thread until terminate(); Node until its exit event, which follows shortly.
  for (let i = 0; i < 100 && liveThreads() > 0; i++) await new Promise((r) => setTimeout(r, 20));
  expect(liveThreads()).toBe(0);
}

describe('workers start-up', () => {
  it('runs with backendOptions.workerUrl pointing at the worker entry (URL and string)', async () => {
    const want = await (await createAttention(config, weights, { registry: registry(), backend: 'cpu' })).run(inputs);
    for (const workerUrl of [goodUrl, goodUrl.href]) {
      const attn = await createAttention(config, weights, {
        registry: registry(),
        backend: 'workers',
        backendOptions: { workerUrl, threads: 2, inlineThreshold: 0 },
      });
      const got = await attn.run(inputs);
      expectSameData('attention', got.attention, want.attention);
      await attn.dispose();
    }
    await noThreadsLeft();
  });

  it('a workerUrl that does not load rejects createAttention with WORKER_FAILED saying what to do', async () => {
    const e = await failure(
      createAttention(config, weights, {
        registry: registry(),
        backend: 'workers',
        backendOptions: { workerUrl: missingUrl, threads: 2 },
      }),
      5000,
    );
    expect(e).toMatchObject({ code: 'WORKER_FAILED' });
    expect(e.message).toContain(`backendOptions.workerUrl = ${missingUrl.href}`);
    expect(e.message).toContain('@qkv/backend-workers/worker');
    expect(e.message).toContain('Cross-Origin-Embedder-Policy: require-corp');
    await noThreadsLeft();
  });

  it('a script that loads but never starts fails after startTimeout, not never', async () => {
    const e = await failure(
      createAttention(config, weights, {
        registry: registry(),
        backend: 'workers',
        backendOptions: { workerUrl: silentUrl(), threads: 2, startTimeout: 300 },
      }),
      4000,
    );
    expect(e).toMatchObject({ code: 'WORKER_FAILED' });
    expect(e.message).toMatch(/no worker thread said it was ready within 300 ms/);
    await noThreadsLeft();
  });

  it('auto records why workers could not start and runs on cpu with the same numbers', async () => {
    const attn = await createAttention(config, weights, {
      registry: registry(),
      backendOptions: { workerUrl: missingUrl, threads: 2 },
    });
    expect(attn.backend).toBe('cpu');
    const skip = attn.selection.skipped.find((s) => s.name === 'workers');
    expect(skip?.reason).toMatch(/^failed to initialise: .*WORKER_FAILED|^failed to initialise: workers backend: /);
    expect(skip?.reason).toContain('workerUrl');
    const want = await (await createAttention(config, weights, { registry: registry(), backend: 'cpu' })).run(inputs);
    expectSameData('attention', (await attn.run(inputs)).attention, want.attention);
    await attn.dispose();
    await noThreadsLeft();
  });

  it('after a failed start the next handle starts a fresh pool', async () => {
    await failure(
      createAttention(config, weights, {
        registry: registry(),
        backend: 'workers',
        backendOptions: { workerUrl: missingUrl, threads: 2 },
      }),
      5000,
    );
    const attn = await createAttention(config, weights, {
      registry: registry(),
      backend: 'workers',
      backendOptions: { threads: 2 },
    });
    expect(attn.backend).toBe('workers');
    await attn.dispose();
  });

  it('refuses malformed workerUrl and startTimeout', async () => {
    for (const [backendOptions, msg] of [
      [{ workerUrl: 42 }, /^backendOptions.workerUrl: expected a URL or a non-empty string .* got 42/],
      [{ workerUrl: '' }, /^backendOptions.workerUrl: expected a URL/],
      [{ startTimeout: 0 }, /^backendOptions.startTimeout: expected milliseconds in \(0, 120000\], got 0/],
      [{ startTimeout: Number.POSITIVE_INFINITY }, /^backendOptions.startTimeout: expected milliseconds/],
    ] as const) {
      await expect(
        createAttention(config, weights, { registry: registry(), backend: 'workers', backendOptions }),
      ).rejects.toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(msg) });
    }
  });
});
