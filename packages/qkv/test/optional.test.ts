import { webglBackend } from '@qkv/backend-webgl';
import { webgpuBackend } from '@qkv/backend-webgpu';
import { BackendRegistry } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import {
  builtinBackends,
  installHint,
  OPTIONAL_BACKENDS,
  type OptionalBackend,
  optionalBackendFactory,
} from '../src/index.js';

/** An optional backend whose package does not exist, as `npm install qkv` alone leaves webgl. */
const absent: OptionalBackend = {
  name: 'absentgl',
  priority: 40,
  packageName: '@qkv/backend-absentgl',
  exportName: 'absentglBackend',
  needs: 'nothing else',
  optionKeys: ['mode'],
  description: 'a package that is not installed',
};

describe('optional backends', () => {
  for (const [real, exportName] of [
    [webglBackend, 'webglBackend'],
    [webgpuBackend, 'webgpuBackend'],
  ] as const) {
    it(`the ${real.name} stand-in declares what the real factory declares`, () => {
      const entry = OPTIONAL_BACKENDS.find((b) => b.name === real.name) as OptionalBackend;
      expect(entry).toMatchObject({ name: real.name, priority: real.priority, exportName });
      expect([...entry.optionKeys]).toEqual([...(real.optionKeys ?? [])]);
    });
  }

  it('a package that is not installed is listed as unavailable, naming what to install', async () => {
    const registry = new BackendRegistry().register(optionalBackendFactory(absent));
    const [info] = await registry.list();
    expect(info).toMatchObject({ name: 'absentgl', available: false });
    expect(info?.reason).toBe(`not installed: ${installHint(absent)}`);
    expect(info?.reason).toContain('npm install @qkv/backend-absentgl');
    expect(info?.reason).toContain(
      "import { absentglBackend } from '@qkv/backend-absentgl' and registerBackend(absentglBackend)",
    );
  });

  it('asked for by name it throws BACKEND_UNAVAILABLE with that hint; auto skips it with the reason', async () => {
    const { cpuBackend } = await import('@qkv/backend-cpu');
    const registry = new BackendRegistry().register(optionalBackendFactory(absent)).register(cpuBackend);
    const { createAttention } = await import('../src/index.js');
    const eye = { shape: [2, 2], data: new Float32Array([1, 0, 0, 1]) };
    const weights = { wq: eye, wk: eye, wv: eye, wo: eye };
    const config = { dModel: 2, numHeads: 1, bias: false };
    await expect(createAttention(config, weights, { registry, backend: 'absentgl' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringContaining('npm install @qkv/backend-absentgl'),
    });
    const attn = await createAttention(config, weights, { registry });
    expect(attn.backend).toBe('cpu');
    expect(attn.selection.skipped[0]).toEqual({
      name: 'absentgl',
      reason: `unavailable: not installed: ${installHint(absent)}`,
    });
    await attn.dispose();
  });

  it('an installed package is loaded by the stand-in and answers as the real factory does', async () => {
    for (const real of [webglBackend, webgpuBackend]) {
      const standIn = builtinBackends().find((f) => f.name === real.name);
      expect(standIn).toBeDefined();
      expect(await standIn?.isAvailable()).toEqual(await real.isAvailable());
    }
  });

  it('a package without the named export is refused, not run', async () => {
    const wrong = optionalBackendFactory({
      ...absent,
      name: 'webgl',
      packageName: '@qkv/backend-webgl',
      exportName: 'nope',
    });
    expect(await wrong.isAvailable()).toEqual({
      available: false,
      reason: '@qkv/backend-webgl does not export a "webgl" backend factory as nope',
    });
  });
});
