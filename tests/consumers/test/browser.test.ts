import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';
import { build as viteBuild, createServer as viteServer } from 'vite';
import { afterAll, describe, expect, it } from 'vitest';
import webpack from 'webpack';
import { addCheck, consumers, expectAllMatchCpu } from '../setup/apps.js';
import { closeBrowser, isolation, type PageResult, runPage, serve } from '../setup/browser.js';

/**
 * The browser apps: one source (apps/browser/main.js) built by each bundler with its defaults,
 * inside the `full` install, then run in headless Chromium on a cross-origin isolated page.
 * Every available backend must equal cpu within 1e-5; workers and webgl must be among them.
 */
const source = (f: string) => fileURLToPath(new URL(`../apps/browser/${f}`, import.meta.url));

function app(name: string): string {
  const dir = join(consumers().full, name);
  addCheck(dir);
  copyFileSync(source('main.js'), join(dir, 'main.js'));
  copyFileSync(source('index.html'), join(dir, 'index.html'));
  return dir;
}

const table: Record<string, string>[] = [];

function record(bundler: string, r: PageResult): void {
  const row: Record<string, string> = { app: bundler };
  for (const b of r.backends ?? []) {
    const res = r.results?.[b.name];
    row[b.name] = !b.available
      ? `unavailable`
      : res?.error
        ? `${res.error.code}`
        : `max|Δ| ${res?.maxAbsDiff?.toExponential(1)}`;
  }
  row.auto = r.auto?.backend ?? `error ${r.auto?.error?.code}`;
  table.push(row);
}

/** Every backend ran and matched cpu, workers and webgl included, and nothing was thrown uncaught. */
function expectEveryBackend(bundler: string, r: PageResult): void {
  record(bundler, r);
  if (!r.ok) throw new Error(`${bundler}: the app failed: ${r.error}`);
  expect(r.pageErrors).toEqual([]);
  expect(r.isolated).toBe(true);
  const ran = expectAllMatchCpu(r);
  expect(ran).toEqual(expect.arrayContaining(['cpu', 'workers', 'webgl']));
  expect(r.auto.maxAbsDiff).toBeLessThanOrEqual(1e-5);
}

afterAll(async () => {
  await closeBrowser();
  console.table(table);
});

describe('browser apps built from the tarballs', () => {
  it('Vite: vite build with a default config (headers only)', async () => {
    const dir = app('vite-build');
    writeFileSync(
      join(dir, 'vite.config.mjs'),
      `export default { server: { headers: ${JSON.stringify(isolation)} }, preview: { headers: ${JSON.stringify(isolation)} } };\n`,
    );
    await viteBuild({ root: dir, logLevel: 'warn' });
    const server = await serve(join(dir, 'dist'));
    try {
      expectEveryBackend('vite build', await runPage(server.url));
    } finally {
      await server.close();
    }
  });

  it('Vite: vite dev server with a default config (headers only)', async () => {
    const dir = app('vite-dev');
    writeFileSync(
      join(dir, 'vite.config.mjs'),
      `export default { server: { headers: ${JSON.stringify(isolation)} } };\n`,
    );
    const server = await viteServer({ root: dir, logLevel: 'warn', server: { port: 0, host: '127.0.0.1' } });
    await server.listen();
    try {
      const url = server.resolvedUrls?.local[0] as string;
      expectEveryBackend('vite dev', await runPage(url));
    } finally {
      await server.close();
    }
  });

  it('webpack 5: production build, default settings', async () => {
    const dir = app('webpack');
    const stats = await new Promise<webpack.Stats>((resolve, reject) =>
      webpack(
        { mode: 'production', context: dir, entry: './main.js', output: { path: join(dir, 'dist') } },
        (err, s) => (err || !s ? reject(err) : resolve(s)),
      ),
    );
    expect(stats.hasErrors(), stats.toString('errors-only')).toBe(false);
    writeFileSync(
      join(dir, 'dist', 'index.html'),
      '<!doctype html><meta charset="utf-8"><script src="./main.js"></script>\n',
    );
    const server = await serve(join(dir, 'dist'));
    try {
      expectEveryBackend('webpack', await runPage(server.url));
    } finally {
      await server.close();
    }
  });

  describe('esbuild (does not follow new URL(…, import.meta.url))', () => {
    let dir = '';
    const built = async (): Promise<string> => {
      if (dir) return dir;
      dir = app('esbuild');
      const out = join(dir, 'out');
      mkdirSync(out, { recursive: true });
      await esbuild({
        entryPoints: [join(dir, 'main.js')],
        bundle: true,
        format: 'esm',
        platform: 'browser',
        outfile: join(out, 'main.js'),
        logLevel: 'warning',
      });
      copyFileSync(join(dir, 'index.html'), join(out, 'index.html'));
      // What the README tells esbuild users to do: serve the worker entry and name it.
      const worker = createRequire(join(dir, 'package.json')).resolve('@qkv/backend-workers/worker');
      copyFileSync(worker, join(out, 'qkv-worker.js'));
      return dir;
    };

    it('with backendOptions.workerUrl, every backend runs', async () => {
      const server = await serve(join(await built(), 'out'));
      try {
        expectEveryBackend('esbuild + workerUrl', await runPage(`${server.url}?workerUrl=/qkv-worker.js`));
      } finally {
        await server.close();
      }
    });

    it('without it, workers rejects with WORKER_FAILED within seconds and auto still runs', async () => {
      const server = await serve(join(await built(), 'out'));
      try {
        const r = await runPage(`${server.url}?webgl=off`);
        record('esbuild, no workerUrl', r);
        if (!r.ok) throw new Error(`the app failed: ${r.error}`);
        expect(r.pageErrors).toEqual([]);
        const workers = r.results.workers?.error;
        expect(workers).toMatchObject({ code: 'WORKER_FAILED' });
        expect(workers?.message).toContain('workerUrl');
        expect(workers?.message).toContain('Cross-Origin-Embedder-Policy');
        expect(workers?.ms).toBeLessThan(6000);
        expect(r.auto.backend).toBe('cpu');
        expect(r.auto.maxAbsDiff).toBe(0);
        expect(r.auto.skipped?.find((s) => s.name === 'workers')?.reason).toMatch(/^failed to initialise: .*workerUrl/);
      } finally {
        await server.close();
      }
    });
  });
});
