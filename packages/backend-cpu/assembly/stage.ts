// Staging for flash attention: moving one head's columns between the caller's row-major layout
// and the kernel's operands inside the module, so the TypeScript side copies each operand in
// (and the heads out) with one large copy instead of one small copy per row and head.
//
// Shapes as in attention.ts: a source holds rows of `ld` floats (Q [Lq, H·hd], K, V
// [Lk, KVH·hd], heads [Lq, H·hd]); one head is `cols` = hd consecutive floats of each row,
// starting at the pointer passed. hdp is hd rounded up to 8 (the panel width).

/** d[0 … cols) = s[0 … cols): four floats at a time, then the tail one by one (nothing past cols written). */
// @ts-ignore: decorator
@inline
function copyRow(s: usize, d: usize, cols: i32): void {
  const cols4 = cols & ~3;
  let c = 0;
  for (; c < cols4; c += 4) v128.store(d + (<usize>c << 2), v128.load(s + (<usize>c << 2)));
  for (; c < cols; c++) store<f32>(d + (<usize>c << 2), load<f32>(s + (<usize>c << 2)));
}

/**
 * dst [rowsPadded, ldd] = src [rows, cols] (row stride ld), zero in columns cols … ldd − 1 and in
 * rows rows … rowsPadded − 1: one head's query rows as the attention kernel reads them
 * (q [nq4, hdp]).
 */
export function gatherRows(src: usize, ld: i32, rows: i32, cols: i32, dst: usize, ldd: i32, rowsPadded: i32): void {
  for (let r = 0; r < rows; r++) {
    const d = dst + ((<usize>r * ldd) << 2);
    copyRow(src + ((<usize>r * ld) << 2), d, cols);
    if (cols < ldd) memory.fill(d + (<usize>cols << 2), 0, <usize>(ldd - cols) << 2);
  }
  if (rows < rowsPadded) memory.fill(dst + ((<usize>rows * ldd) << 2), 0, (<usize>(rowsPadded - rows) * ldd) << 2);
}

/**
 * dst[r·ld + c] = src[r·lds + c] for r < rows, c < cols, and nothing else written: the kernel's
 * output rows (o [nq4, hdp]) into one head's columns of heads [Lq, H·hd].
 */
export function scatterRows(src: usize, lds: i32, rows: i32, cols: i32, dst: usize, ld: i32): void {
  for (let r = 0; r < rows; r++) copyRow(src + ((<usize>r * lds) << 2), dst + ((<usize>r * ld) << 2), cols);
}

/**
 * Packs one head of V, src [rows, cols] (row stride ld), into 8-column panels of `panelRows`
 * rows each: out [ceil(cols/8)][panelRows][8], the layout packPanels gives V [panelRows, hd];
 * zero past cols and in rows rows … panelRows − 1 (padded keys: their p is 0, and 0 · garbage
 * could be NaN). Returns 1 when any value read is NaN or ±∞ (x − x is +0 for every finite x, NaN
 * otherwise), which switches the attention kernel to its exact-skip path for this head, else 0.
 * Row by row, so the strided source is read once, sequentially within each row.
 */
export function packValues(src: usize, ld: i32, rows: i32, cols: i32, panelRows: i32, out: usize): i32 {
  const panels = (cols + 7) >> 3;
  const full = cols >> 3;
  const panelB = <usize>panelRows << 5;
  let bad = v128.splat<i32>(0);
  for (let r = 0; r < rows; r++) {
    const s = src + ((<usize>r * ld) << 2);
    const d = out + (<usize>r << 5);
    for (let p = 0; p < full; p++) {
      const x0 = v128.load(s + (<usize>p << 5));
      const x1 = v128.load(s + (<usize>p << 5), 16);
      bad = v128.or(bad, v128.or(f32x4.sub(x0, x0), f32x4.sub(x1, x1)));
      v128.store(d + <usize>p * panelB, x0);
      v128.store(d + <usize>p * panelB, x1, 16);
    }
    if (full < panels) {
      // The last, partial panel: lanes past cols are zero.
      const dp = d + <usize>full * panelB;
      for (let t = 0; t < 8; t++) {
        const c = (full << 3) + t;
        const x: f32 = c < cols ? load<f32>(s + (<usize>c << 2)) : 0;
        if (x - x != 0) bad = v128.splat<i32>(-1);
        store<f32>(dp + (<usize>t << 2), x);
      }
    }
  }
  if (rows < panelRows) {
    for (let p = 0; p < panels; p++) memory.fill(out + <usize>p * panelB + (<usize>rows << 5), 0, <usize>(panelRows - rows) << 5);
  }
  return v128.any_true(bad) ? 1 : 0;
}

/**
 * Packs the transpose of one head of K, src [rows, cols] (row stride ld), into 8-column panels
 * of Kᵀ: out [rowsPadded/8][colsPadded][8] with out[p][c][t] = K[8p + t][c], zero past rows
 * and cols (the layout packTransposed gives). Full panels of eight keys go four columns at a
 * time: eight row loads, two 4 × 4 shuffle transposes, eight stores; the rest element by element.
 */
export function packKeys(src: usize, ld: i32, rows: i32, cols: i32, rowsPadded: i32, colsPadded: i32, out: usize): void {
  const panels = rowsPadded >> 3;
  const cols4 = cols & ~3;
  const ldB = <usize>ld << 2;
  for (let p = 0; p < panels; p++) {
    const dst = out + ((<usize>p * colsPadded) << 5);
    const r0 = p << 3;
    let c = 0;
    if (r0 + 8 <= rows) {
      const s = src + <usize>r0 * ldB;
      for (; c < cols4; c += 4) {
        const sc = s + (<usize>c << 2);
        const a0 = v128.load(sc), a1 = v128.load(sc + ldB), a2 = v128.load(sc + 2 * ldB), a3 = v128.load(sc + 3 * ldB);
        const b0 = v128.load(sc + 4 * ldB), b1 = v128.load(sc + 5 * ldB), b2 = v128.load(sc + 6 * ldB), b3 = v128.load(sc + 7 * ldB);
        // Keys 0–3 of the panel: column u of the 4 × 4 block lands in lanes 0–3 of out[p][c + u].
        const ta0 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), ta1 = v128.shuffle<f32>(a0, a1, 2, 6, 3, 7);
        const ta2 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), ta3 = v128.shuffle<f32>(a2, a3, 2, 6, 3, 7);
        // Keys 4–7: lanes 4–7.
        const tb0 = v128.shuffle<f32>(b0, b1, 0, 4, 1, 5), tb1 = v128.shuffle<f32>(b0, b1, 2, 6, 3, 7);
        const tb2 = v128.shuffle<f32>(b2, b3, 0, 4, 1, 5), tb3 = v128.shuffle<f32>(b2, b3, 2, 6, 3, 7);
        const d = dst + (<usize>c << 5);
        v128.store(d, v128.shuffle<f32>(ta0, ta2, 0, 1, 4, 5));
        v128.store(d, v128.shuffle<f32>(tb0, tb2, 0, 1, 4, 5), 16);
        v128.store(d, v128.shuffle<f32>(ta0, ta2, 2, 3, 6, 7), 32);
        v128.store(d, v128.shuffle<f32>(tb0, tb2, 2, 3, 6, 7), 48);
        v128.store(d, v128.shuffle<f32>(ta1, ta3, 0, 1, 4, 5), 64);
        v128.store(d, v128.shuffle<f32>(tb1, tb3, 0, 1, 4, 5), 80);
        v128.store(d, v128.shuffle<f32>(ta1, ta3, 2, 3, 6, 7), 96);
        v128.store(d, v128.shuffle<f32>(tb1, tb3, 2, 3, 6, 7), 112);
      }
    }
    // Columns left over (cols mod 4, or every column of a partial panel), then the zero columns.
    for (; c < cols; c++) {
      const d = dst + (<usize>c << 5);
      for (let t = 0; t < 8; t++) {
        const r = r0 + t;
        store<f32>(d + (<usize>t << 2), r < rows ? load<f32>(src + <usize>r * ldB + (<usize>c << 2)) : 0);
      }
    }
    if (cols < colsPadded) memory.fill(dst + (<usize>cols << 5), 0, <usize>(colsPadded - cols) << 5);
  }
}
