/**
 * The workspace's publishable packages (every package.json under packages/ without "private"),
 * packed with `pnpm pack` exactly as `pnpm publish` would (workspace: ranges become versions).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const workspaceRoot = fileURLToPath(new URL('../../../', import.meta.url));

export interface Publishable {
  readonly name: string;
  readonly version: string;
  readonly dir: string;
}

export function publishablePackages(): Publishable[] {
  const root = join(workspaceRoot, 'packages');
  const out: Publishable[] = [];
  for (const entry of readdirSync(root).sort()) {
    let pkg: { name: string; version: string; private?: boolean };
    try {
      pkg = JSON.parse(readFileSync(join(root, entry, 'package.json'), 'utf8'));
    } catch {
      continue;
    }
    if (pkg.private) continue;
    out.push({ name: pkg.name, version: pkg.version, dir: join(root, entry) });
  }
  return out;
}

/** Packs `p` into `dest`; returns the tarball's path. */
export function pack(p: Publishable, dest: string): string {
  const out = execFileSync('pnpm', ['pack', '--json', '--pack-destination', dest], {
    cwd: p.dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const parsed = JSON.parse(out.slice(out.indexOf('{'))) as { filename: string };
  return parsed.filename;
}
