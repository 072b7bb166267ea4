import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { transform } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { consumers, node } from '../setup/apps.js';
import { workspaceRoot } from '../setup/packages.js';

/**
 * The README examples, run against the packed tarballs: every ```js / ```ts block of README.md
 * and of each package's README is a program, run with Node in the app that has every package
 * installed. `ts continued` runs after the block before it (same file); `fragment` marks a
 * snippet that cannot run alone in Node (browser-only, or a vitest file), which the bundler and
 * browser cases cover instead.
 */
interface Block {
  readonly file: string;
  readonly line: number;
  readonly code: string;
}

const LANGS = new Set(['js', 'ts', 'javascript', 'typescript']);

function blocks(file: string): { runnable: Block[]; fragments: number } {
  const text = readFileSync(join(workspaceRoot, file), 'utf8');
  const runnable: Block[] = [];
  let fragments = 0;
  let previous: Block | null = null;
  for (const m of text.matchAll(/^```([^\n]*)\n([\s\S]*?)^```/gm)) {
    const [lang, ...flags] = (m[1] as string).trim().split(/\s+/);
    if (!LANGS.has(lang as string)) continue;
    if (flags.includes('fragment')) {
      fragments++;
      continue;
    }
    const line = text.slice(0, m.index).split('\n').length;
    let code = m[2] as string;
    if (flags.includes('continued')) {
      if (!previous) throw new Error(`${file}:${line}: a "continued" block with no block before it`);
      runnable.pop();
      code = `${previous.code}\n${code}`;
    }
    previous = { file, line, code };
    runnable.push(previous);
  }
  return { runnable, fragments };
}

const files = [
  'README.md',
  ...readdirSync(join(workspaceRoot, 'packages'))
    .map((p) => `packages/${p}/README.md`)
    .filter((f) => {
      try {
        readFileSync(join(workspaceRoot, f));
        return true;
      } catch {
        return false;
      }
    }),
];

describe('README examples run against the tarballs', () => {
  for (const file of files) {
    const { runnable } = blocks(file);
    if (file === 'README.md' || file === 'packages/qkv/README.md') {
      it(`${file} has runnable examples`, () => expect(runnable.length).toBeGreaterThan(0));
    }
    for (const b of runnable) {
      it(`${b.file}:${b.line}`, async () => {
        const app = consumers().full;
        const { code } = await transform(b.code, { loader: 'ts', format: 'esm', target: 'es2022' });
        const name = `readme-${b.file.replace(/[^a-z0-9]+/gi, '-')}-${b.line}.mjs`;
        writeFileSync(join(app, name), code);
        await node(app, [name]);
      });
    }
  }
});
