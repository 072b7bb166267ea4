/** Serving a built app with cross-origin isolation and reading its result in headless Chromium. */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { chromiumLaunchOptions } from '@qkv/chromium';
import { type Browser, chromium } from 'playwright-core';
import type { Backends } from './apps.js';

/** The headers the workers backend needs in browsers (SharedArrayBuffer). */
export const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.map': 'application/json',
  '.css': 'text/css',
};

/** A static server for `dir` with the isolation headers; 404 for anything missing. */
export async function serve(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(
      /^(\.\.[/\\])+/,
      '',
    );
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    try {
      const body = await readFile(file);
      res.writeHead(200, { ...isolation, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404, isolation);
      res.end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

let browser: Browser | null = null;

export async function launch(): Promise<Browser> {
  browser ??= await chromium.launch(chromiumLaunchOptions());
  return browser;
}

export async function closeBrowser(): Promise<void> {
  await browser?.close();
  browser = null;
}

export type PageResult = Backends & { ok: boolean; isolated: boolean; error?: string; pageErrors: string[] };

/** Opens `url`, waits for the app's `window.__qkv` (at most `ms`), and returns it with uncaught page errors. */
export async function runPage(url: string, ms = 120_000): Promise<PageResult> {
  const page = await (await launch()).newPage();
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('requestfailed', (r) => consoleErrors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  try {
    await page.goto(url);
    await page
      .waitForFunction(() => (window as { __qkv?: unknown }).__qkv !== undefined, null, { timeout: ms })
      .catch((e: unknown) => {
        throw new Error(
          `${url}: the app never started (${String(e)}); page errors: ${pageErrors.join(' | ') || 'none'}; console errors: ${consoleErrors.join(' | ') || 'none'}`,
        );
      });
    const result = await page.evaluate(
      (limit) =>
        Promise.race([
          (window as unknown as { __qkv: Promise<unknown> }).__qkv,
          new Promise((r) => setTimeout(() => r({ ok: false, error: `no result within ${limit} ms` }), limit)),
        ]),
      ms,
    );
    return { ...(result as PageResult), pageErrors };
  } finally {
    await page.close();
  }
}
