import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumLaunchOptions, chromiumPath } from '@qkv/chromium';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { type StaticServer, serveStatic } from './server';

/**
 * What every end-to-end test of the page shares: a fresh production build served with COOP/COEP,
 * Debian's headless Chromium on it, console errors collected, screenshots under test-results/.
 */

const here = dirname(fileURLToPath(import.meta.url));
const appRoot = resolve(here, '../..');
export const shots = join(appRoot, 'test-results');

/**
 * Why the suite cannot run here, or null. A missing browser is a missing capability of the
 * machine and the skip says so; in CI (where scripts/setup.sh installs Debian's chromium) nothing
 * is skipped: a missing browser fails.
 */
export const missingChromium = existsSync(chromiumPath) || process.env.CI ? null : `no Chromium at ${chromiumPath}`;

export function suiteName(name: string): string {
  return missingChromium
    ? `${name} (skipped: this machine has ${missingChromium}; apt-get install chromium or set QKV_CHROMIUM)`
    : name;
}

export interface DemoPage {
  readonly page: Page;
  readonly url: string;
  /** Console errors and uncaught page errors, in order. */
  readonly errors: string[];
  close(): Promise<void>;
}

/** Builds the page fresh (never a stale dist/), serves it and opens it in headless Chromium. */
export async function openDemo(): Promise<DemoPage> {
  await mkdir(shots, { recursive: true });
  const outDir = await mkdtemp(join(tmpdir(), 'qkv-demo-build-'));
  await build({
    root: appRoot,
    configFile: join(appRoot, 'vite.config.ts'),
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true },
  });
  const server: StaticServer = await serveStatic(outDir);
  const profile = await mkdtemp(join(tmpdir(), 'qkv-demo-chromium-'));
  const context: BrowserContext = await chromium.launchPersistentContext(profile, {
    // WebGPU on: the demo offers webgpu like every other backend (SwiftShader without a GPU).
    ...chromiumLaunchOptions({ webgpu: true }),
    headless: true,
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(server.url);
  await page.waitForFunction(() => document.body.dataset.status === 'ready', null, { timeout: 30_000 });
  return {
    page,
    url: server.url,
    errors,
    async close() {
      await context.close();
      await server.close();
      await rm(profile, { recursive: true, force: true });
      await rm(outDir, { recursive: true, force: true });
    },
  };
}
