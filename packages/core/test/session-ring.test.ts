import { describe, expect, it } from 'vitest';
import type { RingLayout } from '../src/graph.js';
import { WindowRing } from '../src/session-ring.js';

// WindowRing with rollback r: a ring of w + r rows. Simulates a session's writes (position →
// row) and checks every layout, mask and truncation rule against what the rows really hold.

/** Feeds `steps` through the ring as the session does; checks each piece against the rows. */
function drive(ring: WindowRing, steps: number[], truncations: Map<number, number> = new Map()) {
  const held = new Array<number>(ring.capacity).fill(-1); // position each row holds
  let length = 0;
  let maxPiece = 0;
  steps.forEach((t, k) => {
    const back = truncations.get(k);
    if (back !== undefined) {
      expect(ring.canTruncate(length, back)).toBe(true);
      length = back;
    }
    for (let at = 0, n = 0; at < t; at += n) {
      n = ring.piece(length, t - at, false);
      expect(n).toBeGreaterThan(0);
      maxPiece = Math.max(maxPiece, n);
      const { Lk, ring: layout } = ring.layout(length, n);
      const first = layout?.writeRow ?? Lk - n;
      for (let i = 0; i < n; i++) {
        expect(ring.row(length + i)).toBe(first + i); // contiguous, inside the cache
        held[first + i] = length + i;
      }
      checkPiece(ring, held, length, n, Lk, layout);
      length += n;
    }
  });
  return maxPiece;
}

function checkPiece(ring: WindowRing, held: number[], length: number, n: number, Lk: number, layout?: RingLayout) {
  expect(Lk).toBeLessThanOrEqual(ring.capacity);
  const mask = layout && ring.masked(layout) ? ring.mask(length, n, layout) : null;
  for (let i = 0; i < n; i++) {
    const p = length + i;
    // Every position query i needs is held, at the row positionOf names.
    const need = new Set<number>();
    for (let q = 0; q < Math.min(ring.sinks, p + 1); q++) need.add(q);
    for (let q = Math.max(0, p - ring.w + 1); q <= p; q++) need.add(q);
    const seen = new Set<number>();
    for (let j = 0; j < Lk; j++) {
      const pj = ring.positionOf(j, layout);
      const visible = mask
        ? mask.data[i * Lk + j] === 0
        : layout
          ? true // r = 0: the one query sees every row
          : pj <= p && (pj > p - ring.w || pj < ring.sinks);
      if (need.has(pj) && held[j] === pj && visible) seen.add(pj);
      if (visible) expect(need.has(pj) && held[j] === pj, `query ${p} sees row ${j} (${held[j]})`).toBe(true);
    }
    expect([...seen].sort((a, b) => a - b)).toEqual([...need].sort((a, b) => a - b));
  }
}

describe('WindowRing with rollback r', () => {
  it('keeps s + w + r rows (at most maxLength)', () => {
    expect(new WindowRing(2, 4, 3, 100).capacity).toBe(9);
    expect(new WindowRing(2, 4, 3, 7).capacity).toBe(7);
    expect(new WindowRing(0, 4, 0, 100).capacity).toBe(4);
  });

  it('each piece of a long session reads exactly the positions its queries need', () => {
    for (const [s, w, r] of [
      [0, 4, 0],
      [2, 4, 0],
      [0, 3, 2],
      [1, 4, 3],
      [3, 2, 5],
      [0, 1, 1],
    ] as const) {
      const ring = new WindowRing(s, w, r, 1000);
      const steps = Array.from({ length: 30 }, (_, k) => 1 + ((k * 7) % 9));
      const maxPiece = drive(ring, steps);
      // Wrapped pieces take up to r + 1 tokens (before wrapping, whatever fits).
      expect(maxPiece).toBeGreaterThanOrEqual(Math.min(r + 1, 9));
    }
  });

  it('a wrapped piece takes up to r + 1 tokens, never past the ring end; packed: one', () => {
    const ring = new WindowRing(1, 4, 3, 1000); // rows: 1 sink + 7
    expect(ring.piece(8, 10, false)).toBe(4); // row(8) = 1: r + 1 = 4
    expect(ring.piece(12, 10, false)).toBe(3); // row(12) = 5: rows 5 … 7 to the ring end
    expect(ring.piece(8, 10, true)).toBe(1);
    expect(ring.piece(3, 10, false)).toBe(5); // before wrapping: what fits
  });

  it('truncate(n) after wrapping: n ≥ length − r − 1 or n ≤ s, and later pieces still see their windows', () => {
    const ring = new WindowRing(2, 4, 3, 1000);
    expect(ring.canTruncate(40, 36)).toBe(true);
    expect(ring.canTruncate(40, 35)).toBe(false);
    expect(ring.canTruncate(40, 2)).toBe(true);
    expect(ring.canTruncate(40, 3)).toBe(false);
    expect(ring.canTruncate(9, 0)).toBe(true); // not wrapped yet
    // Roll back r + 1 tokens (and fewer) again and again, across the ring end and the wrap.
    const steps = Array.from({ length: 40 }, (_, k) => 1 + (k % 5));
    let length = 0;
    const cuts = new Map<number, number>();
    steps.forEach((t, k) => {
      if (k % 3 === 2) {
        const back = Math.max(0, length - 1 - (k % 4));
        cuts.set(k, back);
        length = back;
      }
      length += t;
    });
    drive(ring, steps, cuts);
  });
});
