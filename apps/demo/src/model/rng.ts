/**
 * Deterministic randomness for the demo: the same token text always gets the same embedding and
 * the same settings always get the same random heads, on every machine and every reload.
 */

/** FNV-1a, 32-bit: a tiny, well-spread string hash used to seed `rng` from a token's text. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * mulberry32, the same generator as `@qkv/conformance`'s `rng` (copied rather than imported: the
 * conformance package also references its golden JSON files, which must not end up in the page).
 * Returns uniform numbers in [0, 1).
 */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A generator seeded from a string: `seeded('wq:3')`. */
export function seeded(label: string): () => number {
  return rng(hashString(label));
}
