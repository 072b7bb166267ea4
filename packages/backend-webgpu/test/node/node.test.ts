import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Runs the fixture in a fresh Node; a process Dawn kept alive would hit the timeout. */
function run(env: Record<string, string | undefined>, preload?: string) {
  const r = spawnSync(
    process.execPath,
    [...(preload ? ['--import', fixture(preload)] : []), fixture('run-and-dispose.mjs')],
    { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 },
  );
  const lines = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  return { status: r.status, signal: r.signal, stderr: r.stderr, lines };
}

describe('Node (Dawn)', () => {
  it('finds the SwiftShader Vulkan driver by itself and exits after dispose()', { timeout: 90_000 }, () => {
    const r = run({ VK_ICD_FILENAMES: undefined, VK_DRIVER_FILES: undefined });
    expect(r.signal, `the process did not exit by itself: ${r.stderr}`).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.lines[0].availability).toMatchObject({ available: true });
    expect(r.lines[1].first).toBeCloseTo(0.64, 5);
  });

  it('without a Vulkan driver: unavailable, saying there is no adapter and what Dawn needs', {
    timeout: 90_000,
  }, () => {
    const r = run({ VK_ICD_FILENAMES: '/nonexistent/icd.json' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.lines[0].availability.available).toBe(false);
    expect(r.lines[0].availability.reason).toMatch(
      /^webgpu backend: no WebGPU adapter: Dawn \(webgpu package\)\.requestAdapter\(\) returned null \(Node: Dawn needs a Vulkan driver and the Vulkan loader, libvulkan1; VK_ICD_FILENAMES=\/nonexistent\/icd.json\)/,
    );
  });

  it('without the webgpu package: unavailable, saying the Node provider is missing', { timeout: 90_000 }, () => {
    const r = run({}, 'no-provider.mjs');
    expect(r.status, r.stderr).toBe(0);
    expect(r.lines[0].availability).toEqual({
      available: false,
      reason: expect.stringMatching(
        /^webgpu backend: the Node provider is missing: the "webgpu" package \(Dawn\) could not be loaded \(Cannot find package 'webgpu'.*\); install webgpu@0\.6\.2$/,
      ),
    });
  });
});
