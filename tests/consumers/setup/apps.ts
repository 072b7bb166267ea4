/** Helpers for the test files: the provided installs, app sources, and running Node in an app. */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';

export const consumers = () => inject('consumers');

/** The shared check (apps/check.js), copied into an app folder as check.mjs (an ES module anywhere). */
export function addCheck(dir: string): void {
  mkdirSync(dir, { recursive: true });
  copyFileSync(fileURLToPath(new URL('../apps/check.js', import.meta.url)), join(dir, 'check.mjs'));
}

export interface Backends {
  backends: { name: string; available: boolean; reason?: string }[];
  results: Record<string, { maxAbsDiff?: number; error?: { code: string | null; message: string; ms: number } }>;
  auto: {
    backend?: string;
    skipped?: { name: string; reason: string }[];
    maxAbsDiff?: number;
    error?: { code: string | null; message: string };
  };
}

/** Runs `file` with this process's Node (the one the suite runs on) in `cwd`; resolves with stdout. */
export function node(cwd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node ${args.join(' ')} in ${cwd} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The last line of a script's output, which the app scripts print as JSON. */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] as string) as T;
}

/** Every available backend equals cpu within `tol`, and none failed. */
export function expectAllMatchCpu(r: Backends, tol = 1e-5): string[] {
  const ran: string[] = [];
  for (const [name, res] of Object.entries(r.results)) {
    if (res.error) throw new Error(`${name} failed: ${res.error.code}: ${res.error.message}`);
    if (!(typeof res.maxAbsDiff === 'number' && res.maxAbsDiff <= tol)) {
      throw new Error(`${name} differs from cpu by ${res.maxAbsDiff} (> ${tol})`);
    }
    ran.push(name);
  }
  return ran;
}
