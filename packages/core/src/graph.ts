import type { MaskMod, ResolvedConfig, RotaryPairing, ScoreMod } from './config.js';
import { alibiSlopes } from './positional.js';
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
  | 'weightedSum'
  | 'rotary'
  | 'writeRows';
export type OpName = 'input' | 'param' | 'identity' | KernelOp;

export interface AttentionDims {
  readonly batch: number;
  readonly numHeads: number;
  readonly numKVHeads: number;
  readonly queryLength: number;
  readonly keyLength: number;
  readonly headDim: number;
  /**
   * Rows allocated per batch in k and v when they are a KV cache ([B, maxLength, KVH·hd] of which
   * the first Lk rows are valid): batch b starts at row b·keyCapacity. Absent: Lk (dense).
   */
  readonly keyCapacity?: number;
}

/**
 * Optional score modifiers, shared by `mask` and `fusedAttention`. Every field absent = the base
 * behaviour, so kernels written before them stay correct for configs that do not use them (and
 * a backend only gets them once its `supports()` says yes).
 * Per visible key, in this order:  s = scaled − slope_h·|p − j|  (ALiBi)
 *                                  s = scoreMod(s, b, h, p, j)
 *                                  s = s + attnMask[i, j]
 * and the key is hidden (−∞) when causal/padding hide it, when outside the window, or when
 * maskMod(b, h, p, j) is false; p = queryOffset + i is query row i's position.
 */
export interface ScoreModifiers {
  /** Position of query row 0: 0 in run(), the cache length before the step in a session. */
  readonly queryOffset?: number;
  /** Sliding window w: causal → keys p−w+1 … p; otherwise |p − j| < w. */
  readonly window?: number;
  /** ALiBi slope per query head, [H]. */
  readonly alibiSlopes?: readonly number[];
  readonly maskMod?: MaskMod;
  readonly scoreMod?: ScoreMod;
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
export interface MaskAttrs extends AttentionDims, ScoreModifiers {
  readonly causal: boolean;
}
export interface SoftmaxAttrs {
  readonly rows: number;
  readonly cols: number;
}
export type ScoresAttrs = AttentionDims;
export type WeightedSumAttrs = AttentionDims;
/** scores → scale → mask → softmax → weightedSum in one kernel, never holding [Lq, Lk]. */
export interface FusedAttentionAttrs extends AttentionDims, ScoreModifiers {
  readonly scale: number;
  readonly causal: boolean;
}
/**
 * RoPE (Su et al. 2021) on x [B, L, heads·hd], each head's channels rotated in pairs (x1, x2):
 *   x1' = x1·cos(p·θ_c) − x2·sin(p·θ_c),  x2' = x2·cos(p·θ_c) + x1·sin(p·θ_c),
 *   θ_c = base^(−2c/hd), c = 0 … hd/2 − 1, p = offset + row position.
 * 'half' pairs channel c with c + hd/2; 'interleaved' pairs 2c with 2c + 1.
 */
export interface RotaryAttrs {
  readonly batch: number;
  readonly length: number;
  /** Heads in this tensor: H for q, KVH for k. */
  readonly heads: number;
  readonly headDim: number;
  readonly offset: number;
  readonly base: number;
  readonly pairing: RotaryPairing;
}
/**
 * Copies rows [B, t, width] into a KV cache [B, maxLength, width] at rows offset … offset+t−1 of
 * every batch, in place, and returns the cache (the one kernel that writes into an input).
 */
export interface WriteRowsAttrs {
  readonly batch: number;
  readonly rows: number;
  readonly capacity: number;
  readonly offset: number;
  readonly width: number;
}

/**
 * Plain values, plus number arrays (ALiBi slopes) and the user's own maskMod/scoreMod functions,
 * which JSON drops (`describe()` and the docs show them as present or not).
 */
export type NodeAttrs = Readonly<
  Record<string, string | number | boolean | readonly number[] | MaskMod | ScoreMod | undefined>
>;

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

/** A graph's dimensions: the attention dims plus the residual width. */
export type GraphDims = AttentionDims & { readonly dModel: number };

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
  /** Position of the first query token (KV-cache sessions). */
  positionOffset?: number;
  /**
   * A KV-cache session step: the k/v nodes project only the t = Lq new tokens, which are
   * appended to a cache of `capacity` rows per batch; Lk = positionOffset + Lq.
   * 'device': the cache is a backend tensor (params `kCache`, `vCache`) written by `writeRows`.
   * 'host': core keeps the cache and feeds all Lk rows as inputs `kAll`, `vAll` each step.
   */
  cache?: { readonly capacity: number; readonly mode: 'device' | 'host' };
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
  const offset = shape.positionOffset ?? 0;
  if (config.positionalEncoding === 'learned') {
    node({
      name: 'positionalEncoding',
      op: 'input',
      inputs: [],
      shape: [Lq, dModel],
      dims: ['Lq', 'dModel'],
      attrs: { kind: 'learned', offset },
      doc: `PE = positionalEmbedding[${offset} … ${offset + Lq - 1}, :] (rows of the learned table, sliced by core)`,
    });
  }
  if (config.positionalEncoding === 'sinusoidal') {
    node({
      name: 'positionalEncoding',
      op: 'positionalEncoding',
      inputs: [],
      shape: [Lq, dModel],
      dims: ['Lq', 'dModel'],
      attrs: { kind: 'sinusoidal', length: Lq, dModel, offset },
      doc: 'PE[pos, 2i] = sin(pos/10000^(2i/dModel)), PE[pos, 2i+1] = cos(…)',
    });
  }
  if (config.positionalEncoding === 'sinusoidal' || config.positionalEncoding === 'learned') {
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
  const cache = shape.cache;
  // In a session step k and v hold only the t = Lq new rows; the cache holds all Lk.
  const Lnew = cache ? Lq : Lk;
  const rotary = config.positionalEncoding === 'rotary';
  node({
    name: rotary ? 'qProj' : 'q',
    op: 'linear',
    inputs: ['x', 'wq', b('bq')],
    shape: [B, Lq, qOut],
    dims: ['B', 'Lq', 'H·hd'],
    attrs: { rows: B * Lq, inFeatures: dModel, outFeatures: qOut },
    doc: 'Q = X·Wq + bq',
  });
  const LnewName = cache ? 't' : 'Lk';
  node({
    name: rotary ? 'kProj' : 'k',
    op: 'linear',
    inputs: [kvSource[0] as string, 'wk', b('bk')],
    shape: [B, Lnew, kvOut],
    dims: ['B', LnewName, 'KVH·hd'],
    attrs: { rows: B * Lnew, inFeatures: dModel, outFeatures: kvOut },
    doc: 'K = X·Wk + bk',
  });
  node({
    name: 'v',
    op: 'linear',
    inputs: [kvSource[1] as string, 'wv', b('bv')],
    shape: [B, Lnew, kvOut],
    dims: ['B', LnewName, 'KVH·hd'],
    attrs: { rows: B * Lnew, inFeatures: dModel, outFeatures: kvOut },
    doc: 'V = X·Wv + bv',
  });
  if (rotary) {
    const rope = { offset, base: config.rotaryBase, pairing: config.rotaryPairing, headDim: hd, batch: B };
    const formula = `${config.rotaryPairing === 'half' ? 'rotate_half' : 'interleaved'} pairs, θ_c = ${config.rotaryBase}^(−2c/hd)`;
    node({
      name: 'q',
      op: 'rotary',
      inputs: ['qProj'],
      shape: [B, Lq, qOut],
      dims: ['B', 'Lq', 'H·hd'],
      attrs: { ...rope, length: Lq, heads: H },
      doc: `Q = RoPE(X·Wq + bq) per head at positions ${offset}…: ${formula}`,
    });
    node({
      name: 'k',
      op: 'rotary',
      inputs: ['kProj'],
      shape: [B, Lnew, kvOut],
      dims: ['B', LnewName, 'KVH·hd'],
      attrs: { ...rope, length: Lnew, heads: KVH },
      doc: `K = RoPE(X·Wk + bk) per head at positions ${offset}…: ${formula}`,
    });
  }
  // The keys and values the scores read: k and v themselves, or the whole KV cache.
  let keys = 'k';
  let values = 'v';
  if (cache) {
    keys = 'kAll';
    values = 'vAll';
    for (const [src, name] of [
      ['k', 'kAll'],
      ['v', 'vAll'],
    ] as const) {
      const cacheName = src === 'k' ? 'kCache' : 'vCache';
      if (cache.mode === 'device') {
        node({
          name: cacheName,
          op: 'param',
          inputs: [],
          shape: [B, cache.capacity, kvOut],
          dims: ['B', 'maxLength', 'KVH·hd'],
          attrs: {},
          doc: `the session's ${src.toUpperCase()} cache, held by the backend`,
        });
        node({
          name,
          op: 'writeRows',
          inputs: [cacheName, src],
          shape: [B, Lk, kvOut],
          dims: ['B', 'Lk', 'KVH·hd'],
          attrs: { batch: B, rows: Lq, capacity: cache.capacity, offset, width: kvOut },
          doc: `${cacheName}[:, ${offset} … ${offset + Lq - 1}, :] = ${src} (append in place); Lk = ${Lk} rows valid`,
        });
      } else {
        node({
          name,
          op: 'input',
          inputs: [],
          shape: [B, Lk, kvOut],
          dims: ['B', 'Lk', 'KVH·hd'],
          attrs: {},
          doc: `all ${Lk} cached ${src.toUpperCase()} rows, kept on the host and uploaded each step`,
        });
      }
    }
  }
  // A device cache keeps its rows at stride maxLength per batch.
  const kv = cache?.mode === 'device' ? { ...att, keyCapacity: cache.capacity } : att;
  const mods: Record<string, number | readonly number[] | MaskMod | ScoreMod> = {};
  if (offset !== 0) mods.queryOffset = offset;
  if (config.window !== null) mods.window = config.window;
  if (config.positionalEncoding === 'alibi') mods.alibiSlopes = alibiSlopes(H);
  if (config.maskMod !== null) mods.maskMod = config.maskMod;
  if (config.scoreMod !== null) mods.scoreMod = config.scoreMod;
  const modDoc = [
    mods.alibiSlopes ? 'ALiBi −m_h·|p − j| added' : '',
    config.scoreMod ? 'scoreMod applied' : '',
    config.window !== null ? `keys outside the window of ${config.window} hidden` : '',
    config.maskMod ? 'maskMod false → −∞' : '',
  ].filter((x) => x !== '');
  const sdims = ['B', 'H', 'Lq', 'Lk'];
  const sshape = [B, H, Lq, Lk];
  node({
    name: 'scores',
    op: 'scores',
    inputs: ['q', keys],
    shape: sshape,
    dims: sdims,
    attrs: { ...kv },
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
    attrs: { ...att, causal: config.causal, ...mods },
    doc: `hidden keys (later tokens when causal, padding) set to -∞; attnMask added${modDoc.length ? `; ${modDoc.join('; ')}` : ''}`,
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
    inputs: ['weights', values],
    shape: [B, Lq, qOut],
    dims: ['B', 'Lq', 'H·hd'],
    attrs: { ...kv },
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
