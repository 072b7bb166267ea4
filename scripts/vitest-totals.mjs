// Sums vitest's "Tests  N failed | M passed | K skipped (T)" summaries in a log (one per vitest
// run, i.e. per package and project) and prints one plain closing line: "N passed, N failed".
import { readFileSync } from 'node:fs';

// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the ANSI colour codes stripped here
const log = readFileSync(process.argv[2] ?? 0, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
let passed = 0;
let failed = 0;
let skipped = 0;
let runs = 0;
for (const line of log.split('\n')) {
  const m = line.match(/^\S*\s*Tests\s+(.*)\(\d+\)\s*$/);
  if (!m) continue;
  runs++;
  for (const part of (m[1] ?? '').split('|')) {
    const n = part.trim().match(/^(\d+) (passed|failed|skipped|todo)/);
    if (!n) continue;
    const count = Number(n[1]);
    if (n[2] === 'passed') passed += count;
    else if (n[2] === 'failed') failed += count;
    else skipped += count;
  }
}
console.log(`vitest summaries found: ${runs}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
