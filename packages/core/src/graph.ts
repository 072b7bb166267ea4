import type { AttentionDims, OpAttrs, OpName } from './ops.js';
import { formatShape } from './tensor.js';

/**
 * The abstract attention graph: plain, serialisable data with one node per step of the seed.
 * Backends never see the graph; the executor walks it and calls one kernel per node.
 *
 * Dimension names, used in every shape comment and in `GraphNode.dims`:
 *   B      batch
 *   Lq, Lk query / key sequence lengths (equal in self-attention)
 *   dModel width of the residual stream (C in nanoGPT)
 *   H      query heads (nh), KVH key/value heads, hd head width (hs)
 *   t      tokens fed to one KV-cache session step (Lq = t, Lk = cache length after the step)
 *   maxLength  rows allocated per batch in a KV cache
 *
 * Positions: in run() query i and key j sit at positions i and j; in a session step query i
 * sits at (cache length before the step) + i. RoPE, ALiBi, window and maskMod/scoreMod all use
 * positions, so token-by-token decoding reproduces the full causal run.
 */

/** The public step names, in the seed's order. `capture` and the demo use them. */
export const STEP_NAMES = [
  'input',
  'positionalEncoding',
  'x',
  'q',
  'k',
  'v',
  'scores',
  'scaled',
  'masked',
  'weights',
  'heads',
  'attention',
  'residual',
] as const;
export type StepName = (typeof STEP_NAMES)[number];

/** Data nodes that are fed rather than computed. */
export const FEED_NAMES = ['key', 'value', 'keyPaddingMask', 'attnMask', 'sequenceIds'] as const;
export const PARAM_NAMES = ['wq', 'bq', 'wk', 'bk', 'wv', 'bv', 'wo', 'bo'] as const;
export type ParamName = (typeof PARAM_NAMES)[number];

/** One step of the graph; `attrs` is typed by `op` (see `OpAttrs`). */
export interface GraphNodeOf<K extends OpName> {
  readonly name: string;
  readonly op: K;
  /** Input node names by position; `null` marks an absent optional input (a bias, a mask). */
  readonly inputs: readonly (string | null)[];
  readonly shape: readonly number[];
  /** Symbolic names of the dimensions, e.g. ['B', 'Lq', 'dModel']. */
  readonly dims: readonly string[];
  readonly attrs: OpAttrs[K];
  /** The seed's words for this step. */
  readonly doc: string;
}
/** A node of any op (a union discriminated by `op`), or of the ops in K. */
export type GraphNode<K extends OpName = OpName> = { [P in K]: GraphNodeOf<P> }[K];

/** A graph's dimensions: the attention dims plus the residual width. */
export type GraphDims = AttentionDims & {
  readonly dModel: number;
  /** Widths of cross-attention's key and value inputs (dModel unless config.keyDim / valueDim). */
  readonly keyDim: number;
  readonly valueDim: number;
  /**
   * K and V are projected from x (no key/value inputs are fed). A KV-cache step is always
   * self-attention: its graph feeds only the new tokens, however long the cache (Lk) is.
   */
  readonly selfAttention: boolean;
};

export interface AttentionGraph {
  readonly dims: GraphDims;
  readonly selfAttention: boolean;
  readonly nodes: readonly GraphNode[];
}

export interface GraphShape {
  batch: number;
  queryLength: number;
  keyLength: number;
  selfAttention: boolean;
  hasKeyPaddingMask: boolean;
  hasAttnMask: boolean;
  /** A `sequenceIds` input [B, Lk] (packed sequences) is fed. */
  hasSequenceIds?: boolean;
  /** Position of the first query token (KV-cache sessions). */
  positionOffset?: number;
  /** Explicit positions of the query tokens [B·Lq] (`positionIds`); replaces offset + row. */
  positionIds?: readonly number[];
  /**
   * A KV-cache session step: the k/v nodes project only the t = Lq new tokens, which are
   * appended to a cache of `capacity` rows per batch; Lk = positionOffset + Lq.
   * 'device': the cache is a backend tensor (params `kCache`, `vCache`) written by `writeRows`.
   * 'host': core keeps the cache and feeds all Lk rows as inputs `kAll`, `vAll` each step.
   * `ring`: a window session's cache once it has wrapped (Lk = capacity; with hasAttnMask, a ring
   * of w + r rows whose attnMask carries each query's visibility, and the causal rule is off).
   */
  cache?: { readonly capacity: number; readonly mode: 'device' | 'host'; readonly ring?: RingLayout };
}

/**
 * A wrapped window ring of `size` = w + r rows after the sink rows (core/src/session-ring.ts): the
 * step's tokens are written from `writeRow` on; rows sinkTokens ≤ j < split hold positions
 * j + keyOffset + size, rows from split on j + keyOffset (`ScoreModifiers.keyRing`).
 */
export interface RingLayout {
  readonly writeRow: number;
  readonly split: number;
  readonly size: number;
  readonly keyOffset: number;
}

/** Values of the weights that reach kernels as attrs (plain numbers, uploaded nowhere). */
export interface GraphConstants {
  /** `weights.sinks` [H] when config.sinks. */
  readonly sinks?: readonly number[];
}

/** The node `name`, checked to be an `op` node (the executor reads attrs across nodes). */
export function nodeOf<K extends OpName>(graph: AttentionGraph, name: string, op: K): GraphNodeOf<K> {
  const n = graph.nodes.find((x) => x.name === name);
  if (n === undefined || n.op !== op) {
    throw new Error(`qkv graph: expected node "${name}" of op ${op}, found ${n ? `op ${n.op}` : 'none'}`);
  }
  return n as GraphNodeOf<K>;
}

/** One line per node: name, op, inputs, shape with its symbolic dims, and the seed's formula. */
export function formatGraph(graph: AttentionGraph): string {
  const rows = graph.nodes.map((n) => {
    const ins = n.inputs.filter((i): i is string => i !== null).join(', ');
    const dims = n.dims.map((d, i) => `${d}=${n.shape[i]}`).join(' ');
    return [n.name, n.op, ins ? `(${ins})` : '', formatShape(n.shape), dims, `# ${n.doc}`];
  });
  const widths = [0, 1, 2, 3, 4].map((c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c < 5 ? cell.padEnd(widths[c] as number) : cell))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
