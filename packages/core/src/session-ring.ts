import type { RingLayout } from './graph.js';
import type { Tensor } from './tensor.js';

/**
 * A window session's cache (config.window w, optional sinkTokens s, session option rollback r):
 * the s sink rows, then a ring of R = w + r rows, min(maxLength, s + R) rows per batch however
 * long the session runs. Position p < s is row p; p ≥ s is row s + ((p − s) mod R), so until the
 * session holds s + R tokens the rows are in position order, and from then on each token
 * overwrites the one R positions back, which no later query sees. Nothing is ever moved: a step
 * writes only its own rows.
 *
 * Once the ring is full (wrapped), its rows read in position order form two contiguous segments,
 * the newer rows [s, split) and the older [split, s + R): the kernels get that as
 * `ScoreModifiers.keyRing`. A query at position p needs p − w + 1 … p; after a piece of n tokens
 * after `length` is written the ring holds length + n − R … length + n − 1, so a wrapped piece
 * takes up to r + 1 tokens (n ≤ r + 1 keeps its first query's window), and never crosses the
 * ring's last row (its rows are written contiguously).
 *
 * With r = 0 the one query of a wrapped piece sees every row. With r > 0 the ring also holds
 * positions outside each query's window, and the new rows sit mid-ring: neither the causal rule
 * (by row index) nor the window fits, so the piece carries its visibility as an attnMask
 * [n, Lk] computed here from the rows' positions (`mask`).
 */
export class WindowRing {
  readonly sinks: number;
  readonly w: number;
  /** Extra ring rows kept for rollback (the session option `rollback`). */
  readonly r: number;
  /** Ring rows past the sinks: w + r. */
  readonly size: number;
  /** Rows per batch: min(maxLength, s + w + r). */
  readonly capacity: number;

  constructor(sinks: number, w: number, r: number, maxLength: number) {
    this.sinks = sinks;
    this.w = w;
    this.r = r;
    this.size = w + r;
    this.capacity = Math.min(maxLength, sinks + this.size);
  }

  /** The row that holds position p. */
  row(p: number): number {
    return p < this.sinks ? p : this.sinks + ((p - this.sinks) % this.size);
  }

  /**
   * How many of t new tokens after `length` the next piece takes: up to full, then up to r + 1
   * up to the ring's last row (one at a time in a packed session, whose wrapped pieces hide other
   * sequences by the one query's id).
   */
  piece(length: number, t: number, packed: boolean): number {
    if (length < this.capacity) return Math.min(t, this.capacity - length);
    if (packed) return 1;
    return Math.min(t, this.r + 1, this.capacity - this.row(length));
  }

  /**
   * A piece of n tokens after `length`: the key rows it reads (Lk) and, once wrapped, where its
   * tokens go and which rows hold which positions.
   */
  layout(length: number, n: number): { Lk: number; ring?: RingLayout } {
    if (length + n <= this.capacity) return { Lk: length + n };
    const writeRow = this.row(length);
    const split = writeRow + n;
    // Rows s … split − 1 hold length + n − (split − j), the rows after it R positions earlier.
    return {
      Lk: this.capacity,
      ring: { writeRow, split, size: this.size, keyOffset: length + n - split - this.size },
    };
  }

  /** The position row j holds after a piece laid out as `ring` (j itself before wrapping). */
  positionOf(j: number, ring: RingLayout | undefined): number {
    if (!ring || j < this.sinks) return j;
    return j + ring.keyOffset + (j < ring.split ? ring.size : 0);
  }

  /** Whether a wrapped piece needs its visibility as an attnMask (the ring holds more than w). */
  masked(ring: RingLayout | undefined): boolean {
    return ring !== undefined && this.r > 0;
  }

  /**
   * attnMask [n, Lk] of a wrapped piece of n tokens after `length`: query i (position length + i)
   * sees the sinks and the rows at positions length + i − w + 1 … length + i; −∞ elsewhere.
   */
  mask(length: number, n: number, ring: RingLayout): Tensor {
    const Lk = this.capacity;
    const out = new Float32Array(n * Lk).fill(Number.NEGATIVE_INFINITY);
    for (let i = 0; i < n; i++) {
      const p = length + i;
      for (let j = 0; j < Lk; j++) {
        const pj = this.positionOf(j, ring);
        if (j < this.sinks || (pj <= p && pj > p - this.w)) out[i * Lk + j] = 0;
      }
    }
    return { shape: [n, Lk], data: out };
  }

  /**
   * Whether a session of `length` tokens can drop back to n: the next query (position n) needs
   * positions max(s, n − w + 1) … n − 1, and a wrapped ring holds only length − R … length − 1
   * (besides the sinks). So: anything before wrapping; afterwards n ≥ length − r − 1 or n ≤ s.
   */
  canTruncate(length: number, n: number): boolean {
    return length <= this.capacity || n <= this.sinks || n >= length - this.r - 1;
  }
}
