// What the NUMERIC_OVERFLOW check costs a run, on qkv-cpu, in interleaved pairs:
//   A = attn.run(inputs)                                (the check runs once, inside run)
//   B = checkOverflow(same inputs), timed, + attn.run(inputs)
// The check is a host step before any kernel, so A without it would take A − check: the cost is
// the median over pairs of check / A. median(B / A) − 1 estimates the same from whole runs, but a
// loaded machine's run-to-run spread swamps it (reported for reference).
// Usage: node src/overflow.mjs [--pairs 15] [--configs 128,512,2048]
import { cpuBackend } from '@qkv/backend-cpu';
import {
  BackendRegistry,
  checkOverflow,
  createAttention,
  prepareInputs,
  resolveConfig,
  validateWeights,
  weightNorms,
} from '@qkv/core';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const pairs = Number(arg('pairs', 15));
const lengths = arg('configs', '128,512,2048').split(',').map(Number);

let seed = 1;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
const tensor = (shape, amp = 1) => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => random() * amp),
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const registry = new BackendRegistry().register(cpuBackend);
console.log('L     d    causal  run (ms)  check (ms)  median(check / run)  median(B/A) − 1');
for (const L of lengths) {
  for (const causal of [false, true]) {
    const d = 768;
    const config = { dModel: d, numHeads: 12, causal };
    const a = 1 / Math.sqrt(d);
    const weights = {
      wq: tensor([d, d], a),
      wk: tensor([d, d], a),
      wv: tensor([d, d], a),
      wo: tensor([d, d], a),
      bq: tensor([d], 0.1),
      bk: tensor([d], 0.1),
      bv: tensor([d], 0.1),
      bo: tensor([d], 0.1),
    };
    const inputs = { query: tensor([1, L, d]) };
    const attn = await createAttention(config, weights, { backend: 'cpu', registry });
    const resolved = resolveConfig(config);
    const norms = weightNorms(resolved, validateWeights(resolved, weights));
    const extraCheck = () => {
      const { feeds, shape } = prepareInputs(resolved, inputs);
      checkOverflow(resolved, norms, feeds, shape);
    };
    await attn.run(inputs); // warm-up
    const ratios = [];
    const runs = [];
    const checks = [];
    const shares = [];
    for (let p = 0; p < pairs; p++) {
      let t = performance.now();
      await attn.run(inputs);
      const tA = performance.now() - t;
      t = performance.now();
      extraCheck();
      const tCheck = performance.now() - t;
      await attn.run(inputs);
      const tB = performance.now() - t;
      ratios.push(tB / tA);
      runs.push(tA);
      checks.push(tCheck);
      shares.push(tCheck / tA);
    }
    await attn.dispose();
    const cost = median(ratios) - 1;
    console.log(
      `${String(L).padEnd(5)} ${d}  ${String(causal).padEnd(6)}  ${median(runs).toFixed(1).padStart(8)}  ${median(checks).toFixed(3).padStart(10)}  ${(median(shares) * 100).toFixed(2).padStart(17)} %  ${(cost * 100).toFixed(2).padStart(13)} %`,
    );
  }
}
