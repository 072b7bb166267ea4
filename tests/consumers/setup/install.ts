/**
 * Vitest global setup: pack every publishable package and npm-install the tarballs into two
 * throwaway apps in os.tmpdir() (never workspace links), measuring what `npm install` costs:
 *  - `minimal`: what `npm install qkv` brings (qkv and the packages it depends on);
 *  - `full`: the same plus the optional `@qkv/backend-webgl` (and `@qkv/conformance`, whose
 *    checkpoints the README examples read), installed with `--omit=optional`
 *    so that gpu.js's optional `gl` (headless-gl, a several-minute native build) is left out:
 *    webgl then runs in the browser apps and reports itself unavailable in Node.
 * Every test file reuses these installs; the bundler apps live in folders of `full`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { pack, publishablePackages } from './packages.js';

export interface InstallStats {
  readonly app: string;
  readonly seconds: number;
  readonly megabytes: number;
  /** Compiled native addons (`*.node` under a build/ folder) and packages that ran install scripts. */
  readonly nativeBuilds: readonly string[];
  readonly packages: number;
}

export interface Consumers {
  readonly root: string;
  /** Package name → tarball path. */
  readonly tarballs: Record<string, string>;
  readonly minimal: string;
  readonly full: string;
  readonly stats: readonly InstallStats[];
}

declare module 'vitest' {
  export interface ProvidedContext {
    consumers: Consumers;
  }
}

function bytesUnder(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += bytesUnder(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

function nativeBuilds(dir: string, found: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) nativeBuilds(p, found);
    else if (e.name.endsWith('.node') && p.includes(`${'/'}build${'/'}`)) found.push(p);
  }
  return found;
}

function npmInstall(app: string, tarballs: string[], extra: string[]): InstallStats {
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true }, null, 2)}\n`);
  const started = Date.now();
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...extra, ...tarballs], {
    cwd: app,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
  const modules = join(app, 'node_modules');
  const count = execFileSync('npm', ['ls', '--all', '--parseable'], { cwd: app, encoding: 'utf8' })
    .split('\n')
    .filter(Boolean).length;
  return {
    app,
    seconds: (Date.now() - started) / 1000,
    megabytes: bytesUnder(modules) / 2 ** 20,
    nativeBuilds: nativeBuilds(modules).map((p) => p.slice(modules.length + 1)),
    packages: count - 1,
  };
}

export default function setup(project: TestProject): () => void {
  const root = mkdtempSync(join(tmpdir(), 'qkv-consumers-'));
  const tgz = join(root, 'tarballs');
  mkdirSync(tgz);
  const tarballs: Record<string, string> = {};
  for (const p of publishablePackages()) tarballs[p.name] = pack(p, tgz);
  const need = (name: string) => {
    const t = tarballs[name];
    if (!t) throw new Error(`consumers: no tarball for ${name}; packed: ${Object.keys(tarballs).join(', ')}`);
    return t;
  };
  const qkvSet = ['@qkv/core', '@qkv/backend-cpu', '@qkv/backend-workers', 'qkv'].map(need);
  const minimal = join(root, 'minimal');
  const full = join(root, 'full');
  const stats = [
    npmInstall(minimal, qkvSet, []),
    // conformance too: the README's checkpoint examples read the files it ships.
    npmInstall(full, [...qkvSet, need('@qkv/backend-webgl'), need('@qkv/conformance')], ['--omit=optional']),
  ];
  project.provide('consumers', { root, tarballs, minimal, full, stats });
  return () => {
    if (!process.env.QKV_KEEP_CONSUMERS) rmSync(root, { recursive: true, force: true });
  };
}
