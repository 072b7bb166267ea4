/**
 * out[i] = a[i] + b[i mod |b|] for i in [from, to): b broadcasts over a's leading dims
 * (PE [Lq, dModel] onto E [B, Lq, dModel]; X [B, Lq, dModel] onto ΔE of the same shape).
 */
export function add(a: Float32Array, b: Float32Array, out: Float32Array, from = 0, to = a.length): void {
  const n = b.length;
  if (n === a.length) {
    // Same shape (the residual X + ΔE): no wrap to test per element.
    for (let i = from; i < to; i++) out[i] = (a[i] as number) + (b[i] as number);
    return;
  }
  let j = from % n;
  for (let i = from; i < to; i++) {
    out[i] = (a[i] as number) + (b[j] as number);
    if (++j === n) j = 0;
  }
}
