import type { RingLayout } from './graph.js';

/**
 * A window session's cache (config.window w, optional sinkTokens s): the s sink rows, then a
 * ring of w rows, min(maxLength, s + w) rows per batch however long the session runs. Position
 * p < s is row p; p ≥ s is row s + ((p − s) mod w), so until the session holds s + w tokens the
 * rows are in position order, and from then on each token overwrites the one w positions back,
 * which no later query sees. Nothing is ever moved: a step writes only its own rows.
 *
 * Once the ring is full (wrapped), its rows read in position order form two contiguous segments,
 * the newer rows [s, split) and the older [split, s + w): the kernels get that as
 * `ScoreModifiers.keyRing`. A query at position p needs p − w + 1 … p, all w of which the ring
 * holds after its own token is written, and nothing else of the ring: so a wrapped step takes one
 * token at a time (t ≥ 2 queries would need w + t − 1 positions), and sees every row.
 */
export class WindowRing {
  readonly sinks: number;
  readonly w: number;
  /** Rows per batch: min(maxLength, s + w). */
  readonly capacity: number;

  constructor(sinks: number, w: number, maxLength: number) {
    this.sinks = sinks;
    this.w = w;
    this.capacity = Math.min(maxLength, sinks + w);
  }

  /** The row that holds position p. */
  row(p: number): number {
    return p < this.sinks ? p : this.sinks + ((p - this.sinks) % this.w);
  }

  /** How many of t new tokens after `length` the next piece takes: up to full, then one at a time. */
  piece(length: number, t: number): number {
    return length < this.capacity ? Math.min(t, this.capacity - length) : 1;
  }

  /**
   * A piece of n tokens after `length`: the key rows it reads (Lk) and, once wrapped, where its
   * token goes and which rows hold which positions.
   */
  layout(length: number, n: number): { Lk: number; ring?: RingLayout } {
    if (length + n <= this.capacity) return { Lk: length + n };
    const writeRow = this.row(length);
    // Rows s … writeRow hold length − (writeRow − j), the rows after it w positions earlier.
    return {
      Lk: this.capacity,
      ring: { writeRow, split: writeRow + 1, size: this.w, keyOffset: length - writeRow - this.w },
    };
  }

  /** The position row j holds after a piece laid out as `ring` (j itself before wrapping). */
  positionOf(j: number, ring: RingLayout | undefined): number {
    if (!ring || j < this.sinks) return j;
    return j + ring.keyOffset + (j < ring.split ? ring.size : 0);
  }

  /**
   * Whether a session of `length` tokens can drop back to n: the next query (position n) needs
   * positions max(s, n − w + 1) … n − 1, and a wrapped ring holds only length − w … length − 1
   * (besides the sinks). So: anything before wrapping; afterwards n ≥ length − 1 or n ≤ s.
   */
  canTruncate(length: number, n: number): boolean {
    return length <= this.capacity || n <= this.sinks || n >= length - 1;
  }
}
