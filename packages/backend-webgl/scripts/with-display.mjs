#!/usr/bin/env node
// Runs a command (the package's `vitest run`) with an X display: headless-gl needs one in Node.
// With DISPLAY set it runs the command as is; without, under `xvfb-run -a` (a free display number,
// so parallel runs do not collide). Exits with the command's status.
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
if (args.length === 0) {
  console.error('usage: with-display.mjs <command> [args…]');
  process.exit(2);
}
const useXvfb = !process.env.DISPLAY;
if (useXvfb && spawnSync('xvfb-run', ['--help'], { stdio: 'ignore' }).error) {
  console.error('with-display: DISPLAY is unset and xvfb-run is not installed (apt-get install xvfb xauth)');
  process.exit(1);
}
const [cmd, ...rest] = useXvfb ? ['xvfb-run', '-a', '-s', '-screen 0 1280x1024x24', ...args] : args;
const r = spawnSync(cmd, rest, { stdio: 'inherit', shell: false });
if (r.error) {
  console.error(`with-display: could not start ${cmd}: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
