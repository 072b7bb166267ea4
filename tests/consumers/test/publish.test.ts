import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { describe, expect, it } from 'vitest';
import { consumers } from '../setup/apps.js';
import { workspaceRoot } from '../setup/packages.js';

const changeset = `${workspaceRoot}node_modules/.bin/changeset`;
const attw = fileURLToPath(new URL('../node_modules/@arethetypeswrong/cli/dist/index.js', import.meta.url));
const rootLicense = readFileSync(`${workspaceRoot}LICENSE`, 'utf8');

/** `name` → the text of `file` inside the tarball (tar prints it), or null when it is not there. */
function fromTarball(tarball: string, file: string): string | null {
  try {
    return execFileSync('tar', ['-xOzf', tarball, `package/${file}`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return null;
  }
}

describe('every published tarball', () => {
  const { tarballs } = consumers();
  for (const [name, tarball] of Object.entries(tarballs)) {
    describe(name, () => {
      it('carries README.md, LICENSE (MIT, the root one) and the registry metadata', () => {
        const readme = fromTarball(tarball, 'README.md');
        expect(readme, `${name}: README.md`).toMatch(new RegExp(`^# ${name.replace('/', '\\/')}\\b`));
        expect(fromTarball(tarball, 'LICENSE')).toBe(rootLicense);
        const pkg = JSON.parse(fromTarball(tarball, 'package.json') as string);
        expect(pkg).toMatchObject({
          license: 'MIT',
          repository: { type: 'git', url: expect.stringMatching(/^git\+https:\/\//) },
          homepage: expect.stringMatching(/^https:\/\//),
          bugs: { url: expect.stringMatching(/^https:\/\//) },
          engines: { node: '>=20.19' },
        });
        expect(pkg.keywords.length).toBeGreaterThan(2);
        // pnpm pack turned every workspace: range into a version.
        expect(JSON.stringify(pkg)).not.toContain('workspace:');
      });

      it('publint finds nothing (suggestions included)', async () => {
        const buf = readFileSync(tarball);
        const { messages, pkg } = await publint({
          pack: { tarball: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) },
          level: 'suggestion',
          strict: true,
        });
        expect(messages.map((m) => `${m.type}: ${formatMessage(m, pkg, { color: false })}`)).toEqual([]);
      });

      it('are-the-types-wrong passes (node16 profile; CommonJS require() of ESM is Node ≥ 20.19 require(esm))', () => {
        // attw exits non-zero on any problem left after the profile and the ignored rule.
        try {
          execFileSync(
            process.execPath,
            [attw, tarball, '--profile', 'node16', '--ignore-rules', 'cjs-resolves-to-esm', '--no-color'],
            { encoding: 'utf8' },
          );
        } catch (e) {
          throw new Error(`attw ${name}: ${(e as { stdout?: string }).stdout ?? String(e)}`);
        }
      });
    });
  }
});

describe('the release flow', () => {
  it('`changeset version` (in a temporary copy) writes a CHANGELOG.md for every published package', () => {
    const copy = mkdtempSync(`${tmpdir()}/qkv-changeset-`);
    try {
      // What changesets reads: the workspace layout, every package.json and the pending changesets.
      for (const f of ['package.json', 'pnpm-workspace.yaml', '.changeset']) {
        cpSync(`${workspaceRoot}${f}`, `${copy}/${f}`, { recursive: true });
      }
      for (const group of ['packages', 'apps', 'tooling', 'tests']) {
        for (const dir of readdirSync(`${workspaceRoot}${group}`)) {
          const pkg = `${workspaceRoot}${group}/${dir}/package.json`;
          if (existsSync(pkg)) cpSync(pkg, `${copy}/${group}/${dir}/package.json`);
        }
      }
      cpSync(`${workspaceRoot}bench/package.json`, `${copy}/bench/package.json`);
      const pending = readdirSync(`${copy}/.changeset`).filter((f) => f.endsWith('.md') && f !== 'README.md');
      expect(pending.length).toBeGreaterThan(0);
      execFileSync(changeset, ['version'], { cwd: copy, stdio: 'pipe' });
      for (const name of Object.keys(consumers().tarballs)) {
        const dir = name === 'qkv' ? 'qkv' : name.replace('@qkv/', '');
        const log = readFileSync(`${copy}/packages/${dir}/CHANGELOG.md`, 'utf8');
        expect(log, `${name}: CHANGELOG.md`).toMatch(
          new RegExp(`^# ${name.replace('/', '\\/')}\\n\\n## \\d+\\.\\d+\\.\\d+`),
        );
      }
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('`pnpm -r publish --dry-run` is clean', () => {
    const out = execFileSync('pnpm', ['-r', 'publish', '--dry-run', '--no-git-checks'], {
      cwd: workspaceRoot,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const name of Object.keys(consumers().tarballs)) expect(out).toContain(`Skip publishing ${name}@`);
  });
});
