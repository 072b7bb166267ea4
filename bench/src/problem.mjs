// The seeded inputs every implementation gets, and the FLOP count the GFLOP/s figures use.

/** mulberry32: uniform [−1, 1), deterministic per seed. */
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

/** { L, dModel, H, causal, x [L·D], weights, shapes }: weights scaled 1/√D like a trained layer's. */
export function makeProblem({ L, d, h, causal }, seed = 1) {
  const r = rng(seed * 7919 + L);
  const D = d;
  const fill = (n, a) => Float32Array.from({ length: n }, () => r() * a);
  const weights = {
    wq: fill(D * D, 1 / Math.sqrt(D)),
    bq: fill(D, 0.1),
    wk: fill(D * D, 1 / Math.sqrt(D)),
    bk: fill(D, 0.1),
    wv: fill(D * D, 1 / Math.sqrt(D)),
    bv: fill(D, 0.1),
    wo: fill(D * D, 1 / Math.sqrt(D)),
    bo: fill(D, 0.1),
  };
  const shapes = { wq: [D, D], wk: [D, D], wv: [D, D], wo: [D, D], bq: [D], bk: [D], bv: [D], bo: [D] };
  return { L, dModel: D, H: h, causal, x: fill(L * D, 1), weights, shapes };
}

/**
 * FLOPs of one forward pass as the issue counts them: 8·L·d² (four projections) + 4·L²·d
 * (Q·Kᵀ and P·V), causal or not — so a causal run that skips masked blocks shows up as higher
 * effective GFLOP/s.
 */
export const flopsOf = ({ L, d }) => 8 * L * d * d + 4 * L * L * d;
