import type { ResolvedConfig } from './config.js';
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
export const FEED_NAMES = ['key', 'value', 'keyPaddingMask', 'attnMask'] as const;
export const PARAM_NAMES = ['wq', 'bq', 'wk', 'bk', 'wv', 'bv', 'wo', 'bo'] as const;
export type ParamName = (typeof PARAM_NAMES)[number];

/** One op, one name: graph op = kernel name = kernel file = kernel test. */
export type KernelOp =
  | 'positionalEncoding'
  | 'add'
  | 'linear'
  | 'scores'
  | 'scale'
  | 'mask'
  | 'softmax'
  | 'weightedSum';
export type OpName = 'input' | 'param' | 'identity' | KernelOp;

export interface AttentionDims {
  readonly batch: number;
  readonly numHeads: number;
  readonly numKVHeads: number;
  readonly queryLength: number;
  readonly keyLength: number;
  readonly headDim: number;
}

export interface PositionalEncodingAttrs {
  readonly kind: 'sinusoidal';
  readonly length: number;
  readonly dModel: number;
  /** First position (non-zero inside a KV-cache session). */
  readonly offset: number;
}
export interface LinearAttrs {
  readonly rows: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
}
export interface ScaleAttrs {
  readonly scale: number;
}
export interface MaskAttrs extends AttentionDims {
  readonly causal: boolean;
}
export interface SoftmaxAttrs {
  readonly rows: number;
  readonly cols: number;
}
export type ScoresAttrs = AttentionDims;
export type WeightedSumAttrs = AttentionDims;
/** scores → scale → mask → softmax → weightedSum in one kernel, never holding [Lq, Lk]. */
export interface FusedAttentionAttrs extends AttentionDims {
  readonly scale: number;
  readonly causal: boolean;
}

export type NodeAttrs = Readonly<Record<string, string | number | boolean>>;

export interface GraphNode {
  readonly name: string;
  readonly op: OpName;
  /** Input node names by position; `null` marks an absent optional input (a bias, a mask). */
  readonly inputs: readonly (string | null)[];
  readonly shape: readonly number[];
  /** Symbolic names of the dimensions, e.g. ['B', 'Lq', 'dModel']. */
  readonly dims: readonly string[];
  readonly attrs: NodeAttrs;
  /** The seed's words for this step. */
  readonly doc: string;
}

export interface AttentionGraph {
  readonly dims: AttentionDims & { readonly dModel: number };
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
  /** Position of the first query token (KV-cache sessions). */
  positionOffset?: number;
}

/** Builds the graph for one call's shapes. Cheap; the handle caches graphs per shape. */
export function buildGraph(config: ResolvedConfig, shape: GraphShape): AttentionGraph {
  const { dModel, numHeads: H, numKVHeads: KVH, headDim: hd, bias } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk } = shape;
  const dims = {
    batch: B,
    numHeads: H,
    numKVHeads: KVH,
    queryLength: Lq,
    keyLength: Lk,
    headDim: hd,
    dModel,
  };
  const att: AttentionDims = {
    batch: B,
    numHeads: H,
    numKVHeads: KVH,
    queryLength: Lq,
    keyLength: Lk,
    headDim: hd,
  };
  const nodes: GraphNode[] = [];
  const node = (n: GraphNode) => nodes.push(n);
  const b = (name: string) => (bias ? name : null);

  node({
    name: 'input',
    op: 'input',
    inputs: [],
    shape: [B, Lq, dModel],
    dims: ['B', 'Lq', 'dModel'],
    attrs: {},
    doc: 'E: the token embeddings',
  });
  if (config.positionalEncoding === 'sinusoidal') {
    node({
      name: 'positionalEncoding',
      op: 'positionalEncoding',
      inputs: [],
      shape: [Lq, dModel],
      dims: ['Lq', 'dModel'],
      attrs: { kind: 'sinusoidal', length: Lq, dModel, offset: shape.positionOffset ?? 0 },
      doc: 'PE[pos, 2i] = sin(pos/10000^(2i/dModel)), PE[pos, 2i+1] = cos(…)',
    });
    node({
      name: 'x',
      op: 'add',
      inputs: ['input', 'positionalEncoding'],
      shape: [B, Lq, dModel],
      dims: ['B', 'Lq', 'dModel'],
      attrs: {},
      doc: 'X = E + Positional Encoding',
    });
  } else {
    node({
      name: 'x',
      op: 'identity',
      inputs: ['input'],
      shape: [B, Lq, dModel],
      dims: ['B', 'Lq', 'dModel'],
      attrs: {},
      doc: 'X = E (no positional encoding)',
    });
  }
  if (!shape.selfAttention) {
    node({
      name: 'key',
      op: 'input',
      inputs: [],
      shape: [B, Lk, dModel],
      dims: ['B', 'Lk', 'dModel'],
      attrs: {},
      doc: 'the sequence the queries look at',
    });
    node({
      name: 'value',
      op: 'input',
      inputs: [],
      shape: [B, Lk, dModel],
      dims: ['B', 'Lk', 'dModel'],
      attrs: {},
      doc: 'the sequence the values come from',
    });
  }
  if (shape.hasKeyPaddingMask) {
    node({
      name: 'keyPaddingMask',
      op: 'input',
      inputs: [],
      shape: [B, Lk],
      dims: ['B', 'Lk'],
      attrs: {},
      doc: 'nonzero = padding key, hidden from every query',
    });
  }
  if (shape.hasAttnMask) {
    node({
      name: 'attnMask',
      op: 'input',
      inputs: [],
      shape: [Lq, Lk],
      dims: ['Lq', 'Lk'],
      attrs: {},
      doc: 'additive bias on the scaled scores; -Infinity hides a key',
    });
  }
  const qOut = H * hd;
  const kvOut = KVH * hd;
  const params: [string, number[], string[]][] = [
    ['wq', [dModel, qOut], ['dModel', 'H·hd']],
    ['bq', [qOut], ['H·hd']],
    ['wk', [dModel, kvOut], ['dModel', 'KVH·hd']],
    ['bk', [kvOut], ['KVH·hd']],
    ['wv', [dModel, kvOut], ['dModel', 'KVH·hd']],
    ['bv', [kvOut], ['KVH·hd']],
    ['wo', [qOut, dModel], ['H·hd', 'dModel']],
    ['bo', [dModel], ['dModel']],
  ];
  for (const [name, pshape, pdims] of params) {
    if (!bias && name.startsWith('b')) continue;
    node({
      name,
      op: 'param',
      inputs: [],
      shape: pshape,
      dims: pdims,
      attrs: {},
      doc: 'learned weights, fixed at run time',
    });
  }
  const kvSource = shape.selfAttention ? ['x', 'x'] : ['key', 'value'];
  node({
    name: 'q',
    op: 'linear',
    inputs: ['x', 'wq', b('bq')],
    shape: [B, Lq, qOut],
    dims: ['B', 'Lq', 'H·hd'],
    attrs: { rows: B * Lq, inFeatures: dModel, outFeatures: qOut },
    doc: 'Q = X·Wq + bq',
  });
  node({
    name: 'k',
    op: 'linear',
    inputs: [kvSource[0] as string, 'wk', b('bk')],
    shape: [B, Lk, kvOut],
    dims: ['B', 'Lk', 'KVH·hd'],
    attrs: { rows: B * Lk, inFeatures: dModel, outFeatures: kvOut },
    doc: 'K = X·Wk + bk',
  });
  node({
    name: 'v',
    op: 'linear',
    inputs: [kvSource[1] as string, 'wv', b('bv')],
    shape: [B, Lk, kvOut],
    dims: ['B', 'Lk', 'KVH·hd'],
    attrs: { rows: B * Lk, inFeatures: dModel, outFeatures: kvOut },
    doc: 'V = X·Wv + bv',
  });
  const sdims = ['B', 'H', 'Lq', 'Lk'];
  const sshape = [B, H, Lq, Lk];
  node({
    name: 'scores',
    op: 'scores',
    inputs: ['q', 'k'],
    shape: sshape,
    dims: sdims,
    attrs: { ...att },
    doc: 'raw_score[i, j] = Q_i · K_j per head',
  });
  node({
    name: 'scaled',
    op: 'scale',
    inputs: ['scores'],
    shape: sshape,
    dims: sdims,
    attrs: { scale: config.scale },
    doc: 'scaled_score = raw_score · scale (1/√dk by default)',
  });
  node({
    name: 'masked',
    op: 'mask',
    inputs: ['scaled', shape.hasKeyPaddingMask ? 'keyPaddingMask' : null, shape.hasAttnMask ? 'attnMask' : null],
    shape: sshape,
    dims: sdims,
    attrs: { ...att, causal: config.causal },
    doc: 'hidden keys (later tokens when causal, padding) set to -∞; attnMask added',
  });
  node({
    name: 'weights',
    op: 'softmax',
    inputs: ['masked'],
    shape: sshape,
    dims: sdims,
    attrs: { rows: B * H * Lq, cols: Lk },
    doc: 'attention weights W_a = softmax over keys; rows with no visible key are 0',
  });
  node({
    name: 'heads',
    op: 'weightedSum',
    inputs: ['weights', 'v'],
    shape: [B, Lq, qOut],
    dims: ['B', 'Lq', 'H·hd'],
    attrs: { ...att },
    doc: 'ΔE_i(h) = Σ_j W_a[i, j] · V_j per head, heads side by side (concat)',
  });
  node({
    name: 'attention',
    op: 'linear',
    inputs: ['heads', 'wo', b('bo')],
    shape: [B, Lq, dModel],
    dims: ['B', 'Lq', 'dModel'],
    attrs: { rows: B * Lq, inFeatures: qOut, outFeatures: dModel },
    doc: 'ΔE = concat(heads)·Wo + bo',
  });
  node({
    name: 'residual',
    op: 'add',
    inputs: ['x', 'attention'],
    shape: [B, Lq, dModel],
    dims: ['B', 'Lq', 'dModel'],
    attrs: {},
    doc: "E' = X + ΔE",
  });
  return { dims, selfAttention: shape.selfAttention, nodes };
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
