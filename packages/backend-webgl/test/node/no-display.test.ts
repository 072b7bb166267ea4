import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const pkg = fileURLToPath(new URL('../..', import.meta.url));

/** Runs a module script in a child Node with DISPLAY unset and no xvfb: headless-gl gets no context. */
function runWithoutDisplay(script: string): { status: number | null; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.DISPLAY;
  delete env.XAUTHORITY;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: pkg, env, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('Node without an X display', () => {
  it('importing the package does not throw; isAvailable() says why; create() refuses', () => {
    // The built package, as users import it (turbo's test task builds first).
    const r = runWithoutDisplay(`
      const m = await import('./dist/index.js');
      const a = await m.webglBackend.isAvailable();
      let created = 'created';
      try { await m.webglBackend.create(); } catch (e) { created = e.code + ': ' + e.message; }
      console.log(JSON.stringify({ a, created, live: m.liveDevices() }));
    `);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as {
      a: { available: boolean; reason: string };
      created: string;
      live: number;
    };
    expect(out.a.available).toBe(false);
    expect(out.a.reason).toContain('headless-gl could not create a GL context');
    expect(out.a.reason).toContain('DISPLAY is unset');
    expect(out.created).toMatch(/^BACKEND_UNAVAILABLE: webgl backend: headlessgl: .*DISPLAY is unset/);
    expect(out.live).toBe(0);
  });

  it('auto skips webgl with that reason and picks the next backend', () => {
    const r = runWithoutDisplay(`
      const { webglBackend } = await import('./dist/index.js');
      const { cpuBackend } = await import('@qkv/backend-cpu');
      const { BackendRegistry } = await import('@qkv/core');
      const reg = new BackendRegistry().register(webglBackend).register(cpuBackend);
      const { backend, selection } = await reg.create('auto');
      await backend.destroy();
      console.log(JSON.stringify(selection));
    `);
    expect(r.status).toBe(0);
    const sel = JSON.parse(r.stdout.trim()) as { backend: string; skipped: { name: string; reason: string }[] };
    expect(sel.backend).toBe('cpu');
    expect(sel.skipped[0]?.name).toBe('webgl');
    expect(sel.skipped[0]?.reason).toMatch(/^unavailable: headless-gl could not create a GL context: no X display/);
  });
});
