// The key quads of the decode kernel (decode.ts): quad i of a range of n keys is keys i, i + Q,
// i + 2Q, i + 3Q (Q = n4 / 4), four sequential streams through the range.

/** [Σ a, Σ b, Σ c, Σ d]: four horizontal sums as one transpose-and-add (one store, not four). */
// @ts-ignore: decorator
@inline
export function sum4(a: v128, b: v128, c: v128, d: v128): v128 {
  // ab = [a0+a2, b0+b2, a1+a3, b1+b3], cd likewise; then the two halves of each added.
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

/** Byte offset of quad i's key of stream t, i + t·Q, clamped to the range's last key. */
// @ts-ignore: decorator
@inline
export function keyAt(i: i32, t: i32, Q: i32, n: i32, stride: usize): usize {
  return <usize>min(i + t * Q, n - 1) * stride;
}

/** Scores of quad i (lane t: key i + t·Q) into a row in key order. */
// @ts-ignore: decorator
@inline
export function storeQuad(row: usize, i: i32, Q: i32, x: v128): void {
  const at = row + (<usize>i << 2);
  const q4 = <usize>Q << 2;
  v128.store32_lane(at, x, 0);
  v128.store32_lane(at + q4, x, 1);
  v128.store32_lane(at + 2 * q4, x, 2);
  v128.store32_lane(at + 3 * q4, x, 3);
}
