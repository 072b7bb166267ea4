import { describe, expect, it } from 'vitest';
import { liveThreads, type WorkersBackend, workersBackend } from '../../dist/index.js';

describe('in the browser', () => {
  it('runs cross-origin isolated, so SharedArrayBuffer exists and the backend is available', async () => {
    expect((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated).toBe(true);
    expect(await workersBackend.isAvailable()).toEqual({ available: true });
  });

  it('starts Web Workers and stops them on destroy', async () => {
    expect(typeof Worker).toBe('function');
    const before = liveThreads();
    const b = (await workersBackend.create({ threads: 2 })) as WorkersBackend;
    expect(liveThreads() - before).toBe(2);
    await b.destroy();
    expect(liveThreads()).toBe(before);
  });
});
