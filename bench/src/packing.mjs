// Packed sequences (issue #18): one row of sequences of mixed lengths, and the same tokens as a
// padded batch and as one row with the block-diagonal attnMask, for the serving benches of every
// backend (bench/src/serving.mjs, packages/backend-*/bench/serving.mjs).

/**
 * x [L·D] holds the sequences of `lengths` back to back (L = Σ lengths). Returns the three runs'
 * inputs: `padded` (batch [B, maxLen] with keyPaddingMask, row b = sequence b then padding),
 * `packed` (one row with sequenceIds), `masked` (one row with the same mask as an attnMask: every
 * score computed, then masked), and `ids` [L], `maxLen`.
 */
export function packedInputs(x, lengths, D) {
  const L = lengths.reduce((a, b) => a + b, 0);
  const maxLen = Math.max(...lengths);
  const B = lengths.length;
  const padded = new Float32Array(B * maxLen * D);
  const pad = new Float32Array(B * maxLen).fill(1);
  const ids = new Float32Array(L);
  let at = 0;
  lengths.forEach((n, b) => {
    padded.set(x.subarray(at * D, (at + n) * D), b * maxLen * D);
    pad.fill(0, b * maxLen, b * maxLen + n);
    ids.fill(b, at, at + n);
    at += n;
  });
  const am = new Float32Array(L * L);
  for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) if (ids[i] !== ids[j]) am[i * L + j] = -Infinity;
  const query = { shape: [1, L, D], data: x };
  return {
    padded: { query: { shape: [B, maxLen, D], data: padded }, keyPaddingMask: { shape: [B, maxLen], data: pad } },
    packed: { query, sequenceIds: { shape: [1, L], data: ids } },
    masked: { query, attnMask: { shape: [L, L], data: am } },
    ids,
    maxLen,
  };
}
