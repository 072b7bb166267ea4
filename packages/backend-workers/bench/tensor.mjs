// The benches' seeded inputs: a tensor of small values (±0.1) from a 32-bit LCG, so every run of a
// bench sees the same numbers without a dependency.

/** { shape, data } with `data` deterministic in `seed`. */
export function tensor(shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  let s = seed >>> 0;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32 - 0.5) * 0.2;
  }
  return { shape, data };
}
