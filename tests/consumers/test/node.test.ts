import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { addCheck, type Backends, consumers, expectAllMatchCpu, lastJson, node } from '../setup/apps.js';

const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));

const esm = `import * as qkv from 'qkv';
import { checkBackends } from './check.mjs';
console.log(JSON.stringify(await checkBackends(qkv)));
`;
// require(esm): Node ≥ 20.19 loads qkv's ES modules from CommonJS (no top-level await in them).
const cjs = `const qkv = require('qkv');
const { checkBackends } = require('./check.mjs');
checkBackends(qkv).then((r) => console.log(JSON.stringify(r)));
`;

function webglReason(r: Backends): string {
  return r.backends.find((b) => b.name === 'webgl')?.reason ?? '(webgl not listed)';
}

describe('npm install qkv (tarballs, outside the workspace)', () => {
  it('is at most 20 MB with no native build', () => {
    const { stats } = consumers();
    console.table(
      stats.map((s) => ({
        app: s.app.split('/').at(-1),
        'seconds (install)': s.seconds.toFixed(1),
        MB: s.megabytes.toFixed(1),
        packages: s.packages,
        'native builds': s.nativeBuilds.length,
      })),
    );
    const minimal = stats.find((s) => s.app === consumers().minimal);
    expect(minimal?.megabytes).toBeLessThanOrEqual(20);
    expect(minimal?.nativeBuilds).toEqual([]);
  });

  it('ESM script: cpu and workers run and equal cpu; webgl says what to install', async () => {
    const app = consumers().minimal;
    addCheck(app);
    writeFileSync(join(app, 'esm.mjs'), esm);
    const r = lastJson<Backends>(await node(app, ['esm.mjs']));
    expect(expectAllMatchCpu(r).sort()).toEqual(['cpu', 'workers']);
    expect(webglReason(r)).toMatch(/^not installed: npm install @qkv\/backend-webgl/);
    expect(r.auto).toMatchObject({ backend: 'workers', maxAbsDiff: expect.any(Number) });
  });

  it("CommonJS script: require('qkv') works (require(esm)) with the same numbers", async () => {
    const app = consumers().minimal;
    addCheck(app);
    writeFileSync(join(app, 'cjs.cjs'), cjs);
    const r = lastJson<Backends>(await node(app, ['cjs.cjs']));
    expect(expectAllMatchCpu(r).sort()).toEqual(['cpu', 'workers']);
  });

  it('with @qkv/backend-webgl installed and no gl, Node finds webgl and it says to install gl', async () => {
    const app = consumers().full;
    addCheck(app);
    writeFileSync(join(app, 'esm.mjs'), esm);
    const r = lastJson<Backends>(await node(app, ['esm.mjs']));
    expect(webglReason(r)).toMatch(/headless-gl .*npm install gl/);
    expect(expectAllMatchCpu(r).sort()).toEqual(['cpu', 'workers']);
  });

  for (const moduleResolution of ['nodenext', 'bundler'] as const) {
    it(`tsc --noEmit, moduleResolution ${moduleResolution}, skipLibCheck false`, async () => {
      const app = join(consumers().full, `ts-${moduleResolution}`);
      addCheck(app);
      writeFileSync(
        join(app, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: moduleResolution === 'nodenext' ? 'nodenext' : 'esnext',
            moduleResolution,
            strict: true,
            skipLibCheck: false,
            noEmit: true,
            lib: ['ES2022', 'DOM'],
            types: [],
          },
          include: ['index.ts'],
        }),
      );
      writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module', private: true }));
      writeFileSync(
        join(app, 'index.ts'),
        `import { webglBackend } from '@qkv/backend-webgl';
import { type Attention, type BackendInfo, createAttention, listBackends, QkvError, registerBackend, type Tensor } from 'qkv';
import { cpuBackend } from '@qkv/backend-cpu';
import { workersBackend, type WorkersBackendOptions } from '@qkv/backend-workers';

registerBackend(webglBackend);
const options: WorkersBackendOptions = { threads: 2, workerUrl: new URL('https://example.test/qkv-worker.js') };
const eye: Tensor = { shape: [2, 2], data: new Float32Array([1, 0, 0, 1]) };
const attn: Attention = await createAttention({ dModel: 2, numHeads: 1 }, { wq: eye, wk: eye, wv: eye, wo: eye }, { backendOptions: { ...options } });
const list: BackendInfo[] = await listBackends();
const names: string[] = [cpuBackend.name, workersBackend.name, ...list.map((b) => b.name)];
const out = await attn.run({ query: { shape: [1, 2, 2], data: new Float32Array(4) } });
const n: number = out.attention.data.length + names.length;
if (n < 0) throw new QkvError('INVALID_DATA', 'unreachable');
`,
      );
      await node(app, [tsc, '-p', 'tsconfig.json']);
    });
  }
});
