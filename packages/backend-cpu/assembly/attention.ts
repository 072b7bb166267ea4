// Flash attention on the micro-kernel of gemm.ts, with its base-2 exponential.
import { madd } from './madd';
import { exp2NonPositive } from './exp2';
import { micro4x8 } from './gemm';

/** Query rows per block: S[BQ, BK] (32 KiB) and the Q block stay close while a key block streams. */
const BQ: i32 = 32;
/** Keys per block (a multiple of 8, the panel width): pass 4's k loop runs over them. */
const BK: i32 = 256;
/** Each row's running max over a plain block's tiles (pass 1), one f32x4 per row. */
const rowMax = memory.data(BQ << 4, 16);

/**
 * Flash attention for one (batch, head) and a chunk of its query rows, never holding more than a
 * BQ × BK block of scores (online softmax: Milakov & Gimelshein 2018; Dao et al. 2022).
 *
 *   q   [nq4, hdp]     query rows iStart … iStart+nq−1 (nq4 = nq rounded up to 4, zero rows past nq)
 *   kp  Kᵀ packed      packTransposed(K [Lk, hd]) → [Lkp/8][hdp][8]
 *   vp  V packed       packPanels(V [Lkp, hd]) → [hdp/8][Lkp][8]
 *   keyBias [Lkp]      0 for a visible key, −∞ for a padded key and for j ≥ Lk
 *   vNonFinite         V holds NaN or ±∞ somewhere: pass 4 skips p = 0 instead of multiplying
 *   am  [nq, amStride] additive attnMask rows for these queries, or 0
 *   o   [nq4, hdp]     output; m, l [nq4] running max and sum; s [BQ, BK] scratch
 *
 * Causal (bottom-right aligned as in the reference: query i sees keys j ≤ i + causalOffset) skips
 * every key block entirely in a query block's future, so causal runs do about half the work, and
 * masks element-wise only on the blocks the diagonal crosses.
 *
 * Per query block, per key block, four passes:
 *   1. s = Q_blk · K_blkᵀ                     (micro-kernel; on a plain block also each row's max)
 *   2. s = s·scale + keyBias (+ am); −∞ past each row's causal end; row max m'
 *      (only on a block with an attnMask, a hidden key or the causal diagonal)
 *   3. p = exp(s − m'), row sum; rescale the row's running l and O by exp(m − m')
 *   4. O_blk += P · V_blk                      (micro-kernel, accumulating)
 * and finally O /= l (0 for a row that saw no key).
 */
export function attention(
  q: usize,
  nq: i32,
  hdp: i32,
  kp: usize,
  vp: usize,
  Lkp: i32,
  keyBias: usize,
  am: usize,
  amStride: i32,
  o: usize,
  m: usize,
  l: usize,
  s: usize,
  scale: f32,
  causal: bool,
  iStart: i32,
  causalOffset: i32,
  vNonFinite: bool,
): void {
  const nq4 = (nq + 3) & ~3;
  const negInf = f32x4.splat(-Infinity);
  // Base 2 throughout: s' = s·log₂e, so e^(s − m) = 2^(s' − m'); l and O are unchanged by it.
  const vScale = f32x4.splat(scale * <f32>1.4426950408889634);
  const vLog2e = f32x4.splat(<f32>1.4426950408889634);
  const hPanels = hdp >> 3;
  for (let r = 0; r < nq4; r++) {
    store<f32>(m + (<usize>r << 2), -Infinity);
    store<f32>(l + (<usize>r << 2), 0);
  }
  memory.fill(o, 0, (<usize>nq4 * hdp) << 2);
  // Fold scale·log₂e into Q once (nq4 · hdp multiplies) instead of into every score (nq · Lk):
  // (q·c)·k differs from (q·k)·c by rounding only.
  for (let e: usize = 0; e < (<usize>nq4 * hdp) << 2; e += 16) v128.store(q + e, f32x4.mul(v128.load(q + e), vScale));
  const lanes = i32x4(0, 1, 2, 3);

  for (let qb = 0; qb < nq4; qb += BQ) {
    const rows = min(BQ, nq4 - qb);
    // Causal: the block's last row sees keys < lastEnd; later key blocks are all −∞ for it.
    const lastEnd = causal ? min(Lkp, max(0, iStart + qb + rows - 1 + causalOffset + 1)) : Lkp;
    const firstEnd = causal ? max(0, iStart + qb + causalOffset + 1) : Lkp;
    const qBlk = q + ((<usize>qb * hdp) << 2);
    for (let kb = 0; kb < lastEnd; kb += BK) {
      const cols = min(BK, Lkp - kb);
      const diagonal = causal && kb + cols > firstEnd;
      // Whether any key of this block is hidden (padding, or past Lk): only then is keyBias read.
      let hiddenV = v128.splat<i32>(0);
      for (let j = 0; j < cols; j += 4) hiddenV = v128.or(hiddenV, f32x4.eq(v128.load(keyBias + ((<usize>(kb + j)) << 2)), negInf));
      const hidden = v128.any_true(hiddenV);
      // The common block (no attnMask, no hidden key, off the diagonal) needs nothing of pass 2
      // but the row max: pass 1 takes it from the tiles while they are still in registers.
      const plain = am == 0 && !hidden && !diagonal;
      if (plain) for (let r = 0; r < rows; r++) v128.store(rowMax + (<usize>r << 4), negInf);
      // On a block the diagonal crosses, a row quad sees keys < quadEnd(r) only (its last row's
      // causal end, relative to kb): panels past it are skipped in pass 1 (pass 2 cuts those
      // columns to −∞ whatever S holds there) and keys past it in pass 4 (their p is 0). That
      // halves the diagonal blocks' work, ~6% of a causal run at L = 1024.
      // Pass 1: raw scores (already scaled, through Q), and on a plain block each row's max.
      for (let p = 0; p < cols >> 3; p++) {
        const panel = kp + ((<usize>((kb >> 3) + p) * hdp) << 5);
        for (let r = 0; r < rows; r += 4) {
          if (diagonal && (p << 3) >= iStart + qb + r + 3 + causalOffset + 1 - kb) continue;
          const c = s + ((<usize>(r * BK + (p << 3))) << 2);
          micro4x8(qBlk + ((<usize>r * hdp) << 2), hdp, panel, hdp, c, BK, false, plain ? rowMax + (<usize>r << 4) : 0);
        }
      }
      for (let r = 0; r < rows; r++) {
        const row = s + ((<usize>r * BK) << 2);
        const gr = qb + r;
        let vmax = negInf;
        if (plain) vmax = v128.load(rowMax + (<usize>r << 4));
        else {
          // Pass 2: additive mask, hidden keys, causal cut (each only where present), row max.
          const amRow = am != 0 && gr < nq ? am + ((<usize>gr * amStride + kb) << 2) : 0;
          // First hidden column of this row on the diagonal (cols: nothing cut).
          const end = i32x4.splat(diagonal ? iStart + gr + causalOffset + 1 - kb : cols);
          for (let j = 0; j < cols; j += 4) {
            let x = v128.load(row + (<usize>j << 2));
            if (amRow) {
              // The mask row is only Lk wide; lanes past it are padding keys, already −∞.
              const jj = kb + j;
              if (jj + 4 <= amStride) x = f32x4.add(x, f32x4.mul(v128.load(amRow + (<usize>j << 2)), vLog2e));
              else {
                // The row's last, partial vector: add lane by lane through memory (once per row).
                const tmp = row + (<usize>j << 2);
                v128.store(tmp, x);
                for (let t = 0; t < 4; t++) {
                  const at = tmp + (<usize>t << 2);
                  if (jj + t < amStride) store<f32>(at, load<f32>(at) + load<f32>(amRow + ((<usize>(j + t)) << 2)) * <f32>1.4426950408889634);
                }
                x = v128.load(tmp);
              }
            }
            // A hidden key is −∞ whatever its score (select, not add: a NaN key must not leak).
            const cut = v128.or(
              f32x4.eq(v128.load(keyBias + ((<usize>(kb + j)) << 2)), negInf),
              i32x4.ge_s(i32x4.add(lanes, i32x4.splat(j)), end),
            );
            x = v128.bitselect(negInf, x, cut);
            v128.store(row + (<usize>j << 2), x);
            vmax = f32x4.pmax(vmax, x);
          }
        }
        const bmax = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)), max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
        const mOld = load<f32>(m + (<usize>gr << 2));
        let mNew = max(mOld, bmax);
        if (mNew == -Infinity) {
          // The max skipped NaNs (pmax); a row of nothing but −∞ and NaN lands here. With a NaN
          // the row must come out NaN, as in the reference: m' = NaN makes every p NaN.
          let nan = v128.splat<i32>(0);
          for (let j = 0; j < cols; j += 4) {
            const x = v128.load(row + (<usize>j << 2));
            nan = v128.or(nan, f32x4.ne(x, x));
          }
          if (!v128.any_true(nan)) {
            // Nothing visible yet in this row: p = 0 everywhere (exp(−∞ − −∞) would be NaN).
            memory.fill(row, 0, <usize>cols << 2);
            continue;
          }
          mNew = NaN;
        }
        // Pass 3: p = 2^(s − m') (base 2, see vScale), the row sum, and the rescale of what came before.
        const vm = f32x4.splat(mNew);
        let vsum = f32x4.splat(0);
        for (let j = 0; j < cols; j += 4) {
          const pv = exp2NonPositive(f32x4.sub(v128.load(row + (<usize>j << 2)), vm));
          v128.store(row + (<usize>j << 2), pv);
          vsum = f32x4.add(vsum, pv);
        }
        const bsum = f32x4.extract_lane(vsum, 0) + f32x4.extract_lane(vsum, 1) + f32x4.extract_lane(vsum, 2) + f32x4.extract_lane(vsum, 3);
        const corr = f32x4.extract_lane(exp2NonPositive(f32x4.splat(mOld - mNew)), 0);
        store<f32>(m + (<usize>gr << 2), mNew);
        store<f32>(l + (<usize>gr << 2), load<f32>(l + (<usize>gr << 2)) * corr + bsum);
        if (corr != 1) {
          const vc = f32x4.splat(corr);
          const oRow = o + ((<usize>gr * hdp) << 2);
          for (let c = 0; c < hdp; c += 4) v128.store(oRow + (<usize>c << 2), f32x4.mul(v128.load(oRow + (<usize>c << 2)), vc));
        }
      }
      // Pass 4: O += P · V over this key block.
      if (vNonFinite) {
        // Some V row holds NaN/±∞: skip p = 0 (hidden keys) instead of adding 0 · NaN, so a
        // hidden key never poisons a row, exactly as the reference skips hidden keys.
        for (let r = 0; r < rows; r++) {
          const oRow = o + ((<usize>(qb + r) * hdp) << 2);
          for (let j = 0; j < cols; j++) {
            const pAt = s + ((<usize>(r * BK + j)) << 2);
            if (load<f32>(pAt) == 0) continue;
            const vpj = v128.load32_splat(pAt);
            for (let p = 0; p < hPanels; p++) {
              const vrow = vp + ((<usize>(p * Lkp + kb + j)) << 5);
              const oc = oRow + (<usize>p << 5);
              v128.store(oc, f32x4.add(v128.load(oc), f32x4.mul(vpj, v128.load(vrow))));
              v128.store(oc, f32x4.add(v128.load(oc, 16), f32x4.mul(vpj, v128.load(vrow, 16))), 16);
            }
          }
        }
        continue;
      }
      for (let p = 0; p < hPanels; p++) {
        const panel = vp + ((<usize>(p * Lkp + kb)) << 5);
        for (let r = 0; r < rows; r += 4) {
          const keys = diagonal ? min(cols, max(0, iStart + qb + r + 3 + causalOffset + 1 - kb)) : cols;
          micro4x8(s + ((<usize>r * BK) << 2), BK, panel, keys, o + ((<usize>((qb + r) * hdp + (p << 3))) << 2), hdp, true);
        }
      }
    }
  }
  // O /= l; a row that saw no key (l = 0) is 0, and NaN stays NaN.
  for (let r = 0; r < nq4; r++) {
    const lr = load<f32>(l + (<usize>r << 2));
    const oRow = o + ((<usize>r * hdp) << 2);
    const inv = f32x4.splat(lr > 0 ? 1 / lr : lr != lr ? NaN : 0);
    for (let c = 0; c < hdp; c += 4) v128.store(oRow + (<usize>c << 2), f32x4.mul(v128.load(oRow + (<usize>c << 2)), inv));
  }
}
