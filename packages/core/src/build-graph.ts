import type { ResolvedConfig } from './config.js';
import type { AttentionGraph, GraphConstants, GraphNode, GraphShape, ParamName, RingLayout } from './graph.js';
import type { AttentionDims, ScoreModifiers } from './ops.js';
import { alibiSlopes } from './positional.js';

/**
 * buildGraph: the seed's steps as graph nodes for one call's shapes, section by section (inputs,
 * weights, projections and KV cache, attention). Dimension names as in graph.ts.
 */

/** Builds the graph for one call's shapes. Cheap; the handle caches graphs per shape. */
export function buildGraph(config: ResolvedConfig, shape: GraphShape, constants: GraphConstants = {}): AttentionGraph {
  const { dModel, numHeads: H, numKVHeads: KVH, headDim: hd } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk } = shape;
  const att: AttentionDims = { batch: B, numHeads: H, numKVHeads: KVH, queryLength: Lq, keyLength: Lk, headDim: hd };
  const g: Builder = { config, shape, att, offset: shape.positionOffset ?? 0, constants, nodes: [] };
  inputNodes(g);
  paramNodes(g);
  const { keys, values } = projectionNodes(g);
  attentionNodes(g, keys, values);
  const { keyDim, valueDim } = config;
  // A device cache holds `capacity` rows per batch: backends size its buffers by keyCapacity.
  const capacity = shape.cache?.mode === 'device' ? { keyCapacity: shape.cache.capacity } : {};
  const selfAttention = shape.selfAttention;
  return { dims: { ...att, ...capacity, dModel, keyDim, valueDim, selfAttention }, selfAttention, nodes: g.nodes };
}

/** What the node builders below share: the call's config, shapes and the nodes so far. */
interface Builder {
  readonly config: ResolvedConfig;
  readonly shape: GraphShape;
  readonly att: AttentionDims;
  /** Position of query row 0. */
  readonly offset: number;
  readonly constants: GraphConstants;
  readonly nodes: GraphNode[];
}

/** E, PE, X = E + PE, and the fed key/value/mask inputs. */
function inputNodes({ config, shape, offset, nodes }: Builder): void {
  const { dModel } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk } = shape;
  const bld = ['B', 'Lq', 'dModel'];
  const feed = (name: string, shape: number[], dims: string[], doc: string) =>
    nodes.push({ name, op: 'input', inputs: [], shape, dims, attrs: {}, doc });
  feed('input', [B, Lq, dModel], bld, 'E: the token embeddings');
  const pe = config.positionalEncoding;
  if ((pe === 'learned' || pe === 'sinusoidal') && shape.positionIds) {
    nodes.push({
      name: 'positionalEncoding',
      op: 'input',
      inputs: [],
      shape: [B, Lq, dModel],
      dims: bld,
      attrs: { kind: 'positionIds' },
      doc: `PE at positionIds [B, Lq] (${pe === 'learned' ? 'rows of the learned table' : 'sinusoidal at each position'}, gathered by core)`,
    });
  } else if (pe === 'learned') {
    nodes.push({
      name: 'positionalEncoding',
      op: 'input',
      inputs: [],
      shape: [Lq, dModel],
      dims: ['Lq', 'dModel'],
      attrs: { kind: 'learned', offset },
      doc: `PE = positionalEmbedding[${offset} … ${offset + Lq - 1}, :] (rows of the learned table, sliced by core)`,
    });
  }
  if (pe === 'sinusoidal' && !shape.positionIds) {
    nodes.push({
      name: 'positionalEncoding',
      op: 'positionalEncoding',
      inputs: [],
      shape: [Lq, dModel],
      dims: ['Lq', 'dModel'],
      attrs: { kind: 'sinusoidal', length: Lq, dModel, offset },
      doc: 'PE[pos, 2i] = sin(pos/10000^(2i/dModel)), PE[pos, 2i+1] = cos(…)',
    });
  }
  if (pe === 'sinusoidal' || pe === 'learned') {
    const inputs = ['input', 'positionalEncoding'];
    nodes.push({
      name: 'x',
      op: 'add',
      inputs,
      shape: [B, Lq, dModel],
      dims: bld,
      attrs: {},
      doc: 'X = E + Positional Encoding',
    });
  } else {
    const doc = 'X = E (no positional encoding)';
    nodes.push({ name: 'x', op: 'identity', inputs: ['input'], shape: [B, Lq, dModel], dims: bld, attrs: {}, doc });
  }
  if (!shape.selfAttention) {
    const { keyDim, valueDim } = config;
    feed('key', [B, Lk, keyDim], ['B', 'Lk', widthName(config, 'keyDim')], 'the sequence the queries look at');
    feed('value', [B, Lk, valueDim], ['B', 'Lk', widthName(config, 'valueDim')], 'the sequence the values come from');
  }
  if (shape.hasKeyPaddingMask) {
    feed('keyPaddingMask', [B, Lk], ['B', 'Lk'], 'nonzero = padding key, hidden from every query');
  }
  if (shape.hasAttnMask) {
    feed('attnMask', [Lq, Lk], ['Lq', 'Lk'], 'additive bias on the scaled scores; -Infinity hides a key');
  }
  if (shape.hasSequenceIds) {
    feed('sequenceIds', [B, Lk], ['B', 'Lk'], 'packed sequences: query i sees key j only when their ids are equal');
  }
}

/** 'dModel' where the key/value width is the residual width, else its own name. */
function widthName(config: ResolvedConfig, which: 'keyDim' | 'valueDim'): string {
  return config[which] === config.dModel ? 'dModel' : which;
}

/** A bias that is absent is zero: its linear gets a null input and nothing is uploaded for it. */
function biasInput(config: ResolvedConfig, name: 'bq' | 'bk' | 'bv' | 'bo'): string | null {
  return config.biases.includes(name) ? name : null;
}

/** The learned weights (row-vector: w is [in, out]); the biases config.bias lists. */
function paramNodes({ config, nodes }: Builder): void {
  const { dModel, numHeads: H, numKVHeads: KVH, headDim: hd, keyDim, valueDim } = config;
  const qOut = H * hd;
  const kvOut = KVH * hd;
  const params: [ParamName, number[], string[]][] = [
    ['wq', [dModel, qOut], ['dModel', 'H·hd']],
    ['bq', [qOut], ['H·hd']],
    ['wk', [keyDim, kvOut], [widthName(config, 'keyDim'), 'KVH·hd']],
    ['bk', [kvOut], ['KVH·hd']],
    ['wv', [valueDim, kvOut], [widthName(config, 'valueDim'), 'KVH·hd']],
    ['bv', [kvOut], ['KVH·hd']],
    ['wo', [qOut, dModel], ['H·hd', 'dModel']],
    ['bo', [dModel], ['dModel']],
  ];
  for (const [name, shape, dims] of params) {
    if ((name === 'bq' || name === 'bk' || name === 'bv' || name === 'bo') && biasInput(config, name) === null)
      continue;
    nodes.push({ name, op: 'param', inputs: [], shape, dims, attrs: {}, doc: 'learned weights, fixed at run time' });
  }
}

/**
 * Q, K, V (+ RoPE) and, in a session step, the KV cache they are appended to. Returns the names
 * of the keys and values the scores read: k and v themselves, or the whole cache.
 */
function projectionNodes({ config, shape, offset, nodes }: Builder): { keys: string; values: string } {
  const { dModel, numHeads: H, numKVHeads: KVH, headDim: hd } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk, cache } = shape;
  const qOut = H * hd;
  const kvOut = KVH * hd;
  const b = (name: 'bq' | 'bk' | 'bv') => biasInput(config, name);
  const [kSource, vSource] = shape.selfAttention ? ['x', 'x'] : ['key', 'value'];
  // In a session step k and v hold only the t = Lq new rows; the cache holds all Lk.
  const Lnew = cache ? Lq : Lk;
  const LnewName = cache ? 't' : 'Lk';
  const qDims = ['B', 'Lq', 'H·hd'];
  const kvDims = ['B', LnewName, 'KVH·hd'];
  const rotary = config.positionalEncoding === 'rotary';
  // x [B, L, in] · w [in, out] → [B, L, out]; in = dModel, or keyDim / valueDim for cross-attention
  const linear = (
    name: string,
    inputs: (string | null)[],
    L: number,
    inFeatures: number,
    out: number,
    dims: string[],
    doc: string,
  ) =>
    nodes.push({
      name,
      op: 'linear',
      inputs,
      shape: [B, L, out],
      dims,
      attrs: { rows: B * L, inFeatures, outFeatures: out },
      doc,
    });
  linear(rotary ? 'qProj' : 'q', ['x', 'wq', b('bq')], Lq, dModel, qOut, qDims, 'Q = X·Wq + bq');
  linear(rotary ? 'kProj' : 'k', [kSource, 'wk', b('bk')], Lnew, config.keyDim, kvOut, kvDims, 'K = X·Wk + bk');
  linear('v', [vSource, 'wv', b('bv')], Lnew, config.valueDim, kvOut, kvDims, 'V = X·Wv + bv');
  if (rotary) {
    // positionIds give every query row its position; self-attention keys are the same tokens.
    const ids = shape.positionIds;
    const rope = {
      offset,
      base: config.rotaryBase,
      pairing: config.rotaryPairing,
      headDim: hd,
      batch: B,
      ...(ids ? { positions: ids } : {}),
    };
    const formula = `${config.rotaryPairing === 'half' ? 'rotate_half' : 'interleaved'} pairs, θ_c = ${config.rotaryBase}^(−2c/hd)`;
    const at = `per head at positions ${ids ? 'positionIds' : `${offset}…`}: ${formula}`;
    nodes.push({
      name: 'q',
      op: 'rotary',
      inputs: ['qProj'],
      shape: [B, Lq, qOut],
      dims: qDims,
      attrs: { ...rope, length: Lq, heads: H },
      doc: `Q = RoPE(X·Wq + bq) ${at}`,
    });
    nodes.push({
      name: 'k',
      op: 'rotary',
      inputs: ['kProj'],
      shape: [B, Lnew, kvOut],
      dims: kvDims,
      attrs: { ...rope, length: Lnew, heads: KVH },
      doc: `K = RoPE(X·Wk + bk) ${at}`,
    });
  }
  if (!cache) return { keys: 'k', values: 'v' };
  // The new rows go after the held ones, or into their slot of a wrapped window ring.
  const at = cache.ring?.writeRow ?? Lk - Lq;
  for (const [src, name, cacheName] of [
    ['k', 'kAll', 'kCache'],
    ['v', 'vAll', 'vCache'],
  ] as const) {
    const allDims = ['B', 'Lk', 'KVH·hd'];
    if (cache.mode === 'device') {
      nodes.push({
        name: cacheName,
        op: 'param',
        inputs: [],
        shape: [B, cache.capacity, kvOut],
        dims: ['B', 'maxLength', 'KVH·hd'],
        attrs: {},
        doc: `the session's ${src.toUpperCase()} cache, held by the backend`,
      });
      nodes.push({
        name,
        op: 'writeRows',
        inputs: [cacheName, src],
        shape: [B, Lk, kvOut],
        dims: allDims,
        attrs: { batch: B, rows: Lq, capacity: cache.capacity, offset: at, width: kvOut },
        doc: `${cacheName}[:, ${at} … ${at + Lq - 1}, :] = ${src} (written in place); Lk = ${Lk} rows valid`,
      });
    } else {
      nodes.push({
        name,
        op: 'input',
        inputs: [],
        shape: [B, Lk, kvOut],
        dims: allDims,
        attrs: {},
        doc: `all ${Lk} cached ${src.toUpperCase()} rows, kept on the host and uploaded each step`,
      });
    }
  }
  return { keys: 'kAll', values: 'vAll' };
}

/** The seed's attention: scores → scale → mask → softmax → weighted sum, Wo, residual. */
function attentionNodes({ config, shape, att, offset, constants, nodes }: Builder, keys: string, values: string): void {
  const { dModel, numHeads: H, headDim: hd } = config;
  const { batch: B, queryLength: Lq, keyLength: Lk, cache } = shape;
  const qOut = H * hd;
  // A device cache keeps its rows at stride maxLength per batch.
  const kv: AttentionDims = cache?.mode === 'device' ? { ...att, keyCapacity: cache.capacity } : att;
  const mods: Mutable<ScoreModifiers> = {};
  if (offset !== 0) mods.queryOffset = offset;
  // A wrapped window ring of exactly w rows holds the one query's window: every row is visible.
  // One of w + r rows (a session's rollback r > 0) comes with an attnMask that hides, by the
  // rows' positions, what each query must not see: the causal rule by row index would not fit.
  const ringMasked = cache?.ring !== undefined && shape.hasAttnMask;
  if (config.window !== null && !cache?.ring) mods.window = config.window;
  if (config.positionalEncoding === 'alibi') mods.alibiSlopes = alibiSlopes(H);
  if (config.maskMod !== null) mods.maskMod = config.maskMod;
  if (config.scoreMod !== null) mods.scoreMod = config.scoreMod;
  Object.assign(mods, servingModifiers(config, cache?.ring));
  const modDoc = [
    mods.alibiSlopes ? 'ALiBi −m_h·|p − j| added' : '',
    config.scoreMod ? 'scoreMod applied' : '',
    config.window !== null ? `keys outside the window of ${config.window} hidden` : '',
    config.maskMod ? 'maskMod false → −∞' : '',
    config.softcap !== null ? `softcap ${config.softcap}·tanh(s/${config.softcap}) first` : '',
    config.sinkTokens !== null ? `the first ${config.sinkTokens} tokens stay visible` : '',
    shape.hasSequenceIds ? 'keys of other sequences hidden' : '',
  ].filter((x) => x !== '');
  const sinks = constants.sinks;
  const dims = ['B', 'H', 'Lq', 'Lk'];
  const sshape = [B, H, Lq, Lk];
  const bld = ['B', 'Lq', 'dModel'];
  nodes.push({
    name: 'scores',
    op: 'scores',
    inputs: ['q', keys],
    shape: sshape,
    dims,
    attrs: { ...kv },
    doc: 'raw_score[i, j] = Q_i · K_j per head',
  });
  nodes.push({
    name: 'scaled',
    op: 'scale',
    inputs: ['scores'],
    shape: sshape,
    dims,
    attrs: { scale: config.scale },
    doc: 'scaled_score = raw_score · scale (1/√dk by default)',
  });
  nodes.push({
    name: 'masked',
    op: 'mask',
    inputs: [
      'scaled',
      shape.hasKeyPaddingMask ? 'keyPaddingMask' : null,
      shape.hasAttnMask ? 'attnMask' : null,
      shape.hasSequenceIds ? 'sequenceIds' : null,
    ],
    shape: sshape,
    dims,
    attrs: { ...att, causal: config.causal && !ringMasked, ...mods },
    doc: `hidden keys (later tokens when causal, padding) set to -∞; attnMask added${modDoc.length ? `; ${modDoc.join('; ')}` : ''}`,
  });
  nodes.push({
    name: 'weights',
    op: 'softmax',
    inputs: ['masked'],
    shape: sshape,
    dims,
    attrs: sinks ? { rows: B * H * Lq, cols: Lk, sinks, queryLength: Lq } : { rows: B * H * Lq, cols: Lk },
    doc: `attention weights W_a = softmax over keys; rows with no visible key are 0${sinks ? '; exp(sinks[h]) joins each denominator (rows sum to < 1)' : ''}`,
  });
  nodes.push({
    name: 'heads',
    op: 'weightedSum',
    inputs: ['weights', values],
    shape: [B, Lq, qOut],
    dims: ['B', 'Lq', 'H·hd'],
    attrs: { ...kv },
    doc: 'ΔE_i(h) = Σ_j W_a[i, j] · V_j per head, heads side by side (concat)',
  });
  // Requested only with returnLse; the fused path computes it in the same pass as heads.
  nodes.push({
    name: 'lse',
    op: 'logSumExp',
    inputs: ['masked'],
    shape: [B, H, Lq],
    dims: ['B', 'H', 'Lq'],
    attrs: sinks ? { rows: B * H * Lq, cols: Lk, sinks, queryLength: Lq } : { rows: B * H * Lq, cols: Lk },
    doc: `lse = log Σ_j exp(masked[i, j]) over the visible keys${sinks ? ' + exp(sinks[h])' : ''} (the softmax denominator); −∞ when empty`,
  });
  nodes.push({
    name: 'attention',
    op: 'linear',
    inputs: ['heads', 'wo', biasInput(config, 'bo')],
    shape: [B, Lq, dModel],
    dims: bld,
    attrs: { rows: B * Lq, inFeatures: qOut, outFeatures: dModel },
    doc: 'ΔE = concat(heads)·Wo + bo',
  });
  nodes.push({
    name: 'residual',
    op: 'add',
    inputs: ['x', 'attention'],
    shape: [B, Lq, dModel],
    dims: bld,
    attrs: {},
    doc: "E' = X + ΔE",
  });
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The serving options' score modifiers (softcap, sinkTokens) and a wrapped window ring's key
 * positions, given only where something reads them (ALiBi, maskMod, scoreMod: the other masks
 * see every ring row), so the SIMD kernels keep running ring steps without those.
 */
function servingModifiers(config: ResolvedConfig, ring: RingLayout | undefined): ScoreModifiers {
  const mods: Mutable<ScoreModifiers> = {};
  if (config.softcap !== null) mods.softcap = config.softcap;
  if (config.sinkTokens !== null) mods.sinkTokens = config.sinkTokens;
  const readsPositions = config.positionalEncoding === 'alibi' || config.maskMod !== null || config.scoreMod !== null;
  if (ring && readsPositions) {
    mods.keyOffset = ring.keyOffset;
    mods.keyRing = { split: ring.split, size: ring.size };
  }
  return mods;
}
