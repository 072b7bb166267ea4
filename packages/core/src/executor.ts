import type { Backend, BackendTensor } from './backend.js';
import { QkvError } from './errors.js';
import type {
  AttentionGraph,
  FusedAttentionAttrs,
  GraphNode,
  LinearAttrs,
  MaskAttrs,
  PositionalEncodingAttrs,
  RotaryAttrs,
  ScaleAttrs,
  ScoresAttrs,
  SoftmaxAttrs,
  WeightedSumAttrs,
  WriteRowsAttrs,
} from './graph.js';
import { formatShape, sizeOf, type Tensor } from './tensor.js';

/** The score-shaped nodes a fused kernel never materialises. */
export const SCORE_NODES: ReadonlySet<string> = new Set(['scores', 'scaled', 'masked', 'weights']);

/** Default ceiling on one materialised tensor (elements); a backend may lower it. 2^29 floats = 2 GiB. */
export const DEFAULT_MAX_TENSOR_ELEMENTS = 2 ** 29;

export interface ExecuteRequest {
  readonly graph: AttentionGraph;
  readonly backend: Backend;
  /** Uploaded once per handle (and a session's KV caches); the executor never disposes them. */
  readonly params: ReadonlyMap<string, BackendTensor>;
  /** Host tensors for the graph's `input` nodes (input, key, value, masks). */
  readonly feeds: ReadonlyMap<string, Tensor>;
  /** Node names to download. */
  readonly outputs: readonly string[];
  /** Called between nodes; throws to abandon the run (e.g. the handle was disposed). */
  readonly checkpoint?: () => void;
  /** Run the unfused chain even where the backend has a fused path. */
  readonly unfused?: boolean;
  readonly maxTensorElements?: number;
}

export interface ExecuteResult {
  readonly tensors: Map<string, Tensor>;
  /** Whether scores→softmax→sum ran as one fused kernel. */
  readonly fused: boolean;
}

/** Plans which nodes a request needs and whether the fused path applies. */
export function planExecution(
  graph: AttentionGraph,
  outputs: readonly string[],
  backendHasFused: boolean,
): { needed: Set<string>; fused: boolean; deps: Map<string, readonly (string | null)[]> } {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  for (const o of outputs) {
    if (!byName.has(o))
      throw new QkvError(
        'INVALID_CAPTURE',
        `capture: "${o}" is not a node of this graph; nodes: ${[...byName.keys()].join(', ')}`,
      );
  }
  const fused = backendHasFused && !outputs.some((o) => SCORE_NODES.has(o));
  const deps = new Map<string, readonly (string | null)[]>();
  for (const n of graph.nodes) deps.set(n.name, n.inputs);
  if (fused) {
    const masked = byName.get('masked') as GraphNode;
    // The keys and values the unfused chain reads: k, v, or a session's whole cache (kAll, vAll).
    const keys = (byName.get('scores') as GraphNode).inputs[1] ?? 'k';
    const values = (byName.get('heads') as GraphNode).inputs[1] ?? 'v';
    deps.set('heads', ['q', keys, values, masked.inputs[1] ?? null, masked.inputs[2] ?? null]);
  }
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    needed.add(name);
    for (const d of deps.get(name) ?? []) if (d !== null) visit(d);
  };
  for (const o of outputs) visit(o);
  return { needed, fused: fused && needed.has('heads'), deps };
}

/**
 * Walks the graph in order, calling one kernel per needed node. Every intermediate handle is
 * reference-counted and disposed as soon as its last consumer has run, so a run holds at most
 * the live frontier of the graph; on any failure everything it allocated is released.
 */
export async function execute(req: ExecuteRequest): Promise<ExecuteResult> {
  const { graph, backend, params, feeds, outputs } = req;
  const { needed, fused, deps } = planExecution(graph, outputs, !req.unfused && backend.fused !== undefined);
  const limit = req.maxTensorElements ?? DEFAULT_MAX_TENSOR_ELEMENTS;
  for (const n of graph.nodes) {
    if (!needed.has(n.name) || n.op === 'param') continue;
    if (sizeOf(n.shape) > limit) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `${n.name}: ${formatShape(n.shape)} (${n.dims.join(' × ')}) has ${sizeOf(n.shape)} elements, over the ${backend.name} backend's limit of ${limit} per tensor${SCORE_NODES.has(n.name) ? '; drop returnWeights/capture of score nodes so the fused path can run' : ''}`,
      );
    }
  }
  backend.checkLimits?.({ ...graph.dims }, fused);

  // How many later nodes read each node's value, plus one hold for each requested output.
  const readers = new Map<string, number>();
  for (const n of graph.nodes) {
    if (!needed.has(n.name)) continue;
    for (const d of deps.get(n.name) ?? []) if (d !== null) readers.set(d, (readers.get(d) ?? 0) + 1);
  }
  for (const o of outputs) readers.set(o, (readers.get(o) ?? 0) + 1);

  const values = new Map<string, BackendTensor>();
  const holds = new Map<BackendTensor, number>();
  const persistent = new Set<BackendTensor>(params.values());
  const hold = (h: BackendTensor, n: number) => holds.set(h, (holds.get(h) ?? 0) + n);
  const release = (h: BackendTensor) => {
    const left = (holds.get(h) ?? 0) - 1;
    if (left > 0) {
      holds.set(h, left);
      return;
    }
    holds.delete(h);
    if (!persistent.has(h)) backend.dispose(h);
  };
  const get = (name: string | null | undefined): BackendTensor | null => {
    if (name === null || name === undefined) return null;
    const v = values.get(name);
    if (!v) throw new Error(`qkv executor: "${name}" used before it was computed`);
    return v;
  };

  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  // The fused kernel gets the scores' dims (keyCapacity included) and every mask attr
  // (causal and the optional ScoreModifiers), exactly what the unfused chain would see.
  const {
    batch: _b,
    numHeads: _h,
    numKVHeads: _kvh,
    queryLength: _lq,
    keyLength: _lk,
    headDim: _hd,
    ...maskExtras
  } = (byName.get('masked')?.attrs ?? {}) as unknown as MaskAttrs;
  const fusedAttrs: FusedAttentionAttrs = {
    ...(byName.get('scores')?.attrs as unknown as ScoresAttrs),
    ...maskExtras,
    scale: byName.get('scaled')?.attrs.scale as number,
  };

  // This run's kernels form one queue on a backend that batches them (Backend.useQueue).
  const queue = {};
  try {
    for (const node of graph.nodes) {
      if (!needed.has(node.name)) continue;
      req.checkpoint?.();
      const ins = (deps.get(node.name) ?? []).map(get);
      backend.useQueue?.(queue);
      // evaluate() calls the kernel before its first await, so the token is current for it.
      const pending = evaluate(backend, node, ins, fused ? fusedAttrs : null, feeds, params);
      backend.useQueue?.(null);
      const out = await pending;
      values.set(node.name, out);
      hold(out, readers.get(node.name) ?? 0);
      for (const h of ins) if (h !== null) release(h);
      if ((readers.get(node.name) ?? 0) === 0) release(out);
    }
    req.checkpoint?.();
    const tensors = new Map<string, Tensor>();
    for (const o of outputs) {
      const h = get(o) as BackendTensor;
      const t = await backend.download(h);
      tensors.set(o, t);
    }
    for (const o of outputs) release(get(o) as BackendTensor);
    return { tensors, fused };
  } catch (e) {
    for (const h of holds.keys()) if (!persistent.has(h)) backend.dispose(h);
    throw e;
  }
}

async function evaluate(
  backend: Backend,
  node: GraphNode,
  ins: (BackendTensor | null)[],
  fused: FusedAttentionAttrs | null,
  feeds: ReadonlyMap<string, Tensor>,
  params: ReadonlyMap<string, BackendTensor>,
): Promise<BackendTensor> {
  const k = backend.kernels;
  const a = node.attrs;
  const in0 = ins[0] as BackendTensor;
  const in1 = ins[1] as BackendTensor;
  switch (node.op) {
    case 'input': {
      const t = feeds.get(node.name);
      if (!t) throw new Error(`qkv executor: no feed for input "${node.name}"`);
      return backend.upload(t);
    }
    case 'param': {
      const p = params.get(node.name);
      if (!p) throw new Error(`qkv executor: parameter "${node.name}" was not uploaded`);
      return p;
    }
    case 'identity':
      return in0;
    case 'positionalEncoding':
      return k.positionalEncoding(a as unknown as PositionalEncodingAttrs);
    case 'add':
      return k.add(in0, in1);
    case 'linear':
      return k.linear(in0, in1, ins[2] ?? null, a as unknown as LinearAttrs);
    case 'scores':
      return k.scores(in0, in1, a as unknown as ScoresAttrs);
    case 'scale':
      return k.scale(in0, a as unknown as ScaleAttrs);
    case 'mask': {
      const m = a as unknown as MaskAttrs;
      // Nothing to hide or bias: masked = scaled, no kernel, no copy.
      const modifies =
        m.window !== undefined || m.alibiSlopes !== undefined || m.maskMod !== undefined || m.scoreMod !== undefined;
      if (!m.causal && !modifies && ins[1] === null && ins[2] === null) return in0;
      return k.mask(in0, ins[1] ?? null, ins[2] ?? null, m);
    }
    case 'rotary': {
      if (!k.rotary) throw new QkvError('CAPABILITY', `backend "${backend.name}" has no rotary kernel`);
      return k.rotary(in0, a as unknown as RotaryAttrs);
    }
    case 'writeRows': {
      if (!k.writeRows) throw new QkvError('CAPABILITY', `backend "${backend.name}" has no writeRows kernel`);
      return k.writeRows(in0, in1, a as unknown as WriteRowsAttrs);
    }
    case 'softmax':
      return k.softmax(in0, a as unknown as SoftmaxAttrs);
    case 'weightedSum': {
      if (fused && backend.fused) {
        return backend.fused.fusedAttention(in0, in1, ins[2] as BackendTensor, ins[3] ?? null, ins[4] ?? null, fused);
      }
      return k.weightedSum(in0, in1, a as unknown as WeightedSumAttrs);
    }
  }
}
