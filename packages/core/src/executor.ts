import type { Backend, BackendTensor, MaybePromise } from './backend.js';
import { QkvError } from './errors.js';
import { type AttentionGraph, type GraphDims, nodeOf } from './graph.js';
import type { FusedAttentionAttrs, MaskAttrs, OpAttrs } from './ops.js';
import { formatShape, sizeOf, type Tensor } from './tensor.js';

/** The score-shaped nodes a fused kernel never materialises. */
export const SCORE_NODES: ReadonlySet<string> = new Set(['scores', 'scaled', 'masked', 'weights']);

/** Default ceiling on one materialised tensor (elements); a backend may lower it. 2^29 floats = 2 GiB. */
export const DEFAULT_MAX_TENSOR_ELEMENTS = 2 ** 29;

export interface ExecuteRequest {
  /** What to run: a graph (planned here for `outputs`), or its plan made earlier (planExecution). */
  readonly graph: AttentionGraph | ExecutionPlan;
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

/**
 * The ops a run calls: the graph's, plus the fused kernel that stands in for `heads` (with
 * `returnLse`, its variant that also yields lse, which the `fusedLse` step then hands on).
 */
export interface StepAttrs extends OpAttrs {
  readonly fusedAttention: FusedAttentionAttrs;
  readonly fusedAttentionLse: FusedAttentionAttrs;
  readonly fusedLse: Readonly<Record<string, never>>;
}
export type StepOp = keyof StepAttrs;

/** One call of a run: the node it computes (a graph node is a step), its op and inputs. */
export interface StepOf<K extends StepOp> {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dims: readonly string[];
  readonly op: K;
  readonly inputs: readonly (string | null)[];
  readonly attrs: StepAttrs[K];
}
export type Step<K extends StepOp = StepOp> = { [P in K]: StepOf<P> }[K];

export interface ExecutionPlan {
  /** The needed nodes in graph order, each as the call that computes it. */
  readonly steps: readonly Step[];
  /** Whether `heads` comes from the fused kernel (no score-shaped node is computed). */
  readonly fused: boolean;
  /** The graph's dims (what `backend.checkLimits` is asked about). */
  readonly dims: GraphDims;
  /** The outputs it was planned for, in order. */
  readonly outputs: readonly string[];
  /** How many later steps read each node's value, plus one hold for each output. */
  readonly readers: ReadonlyMap<string, number>;
}

/**
 * Plans which nodes a request needs and whether the fused path applies. `lse` stays fused only
 * where the backend's fused kernel also returns it (`fusedAttentionLse`).
 */
export function planExecution(
  graph: AttentionGraph,
  outputs: readonly string[],
  backendHasFused: boolean,
  backendHasFusedLse = false,
): ExecutionPlan {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  for (const o of outputs) {
    if (!byName.has(o))
      throw new QkvError(
        'INVALID_CAPTURE',
        `capture: "${o}" is not a node of this graph; nodes: ${[...byName.keys()].join(', ')}`,
      );
  }
  const wantsLse = outputs.includes('lse');
  const fused = backendHasFused && !outputs.some((o) => SCORE_NODES.has(o)) && (backendHasFusedLse || !wantsLse);
  const steps = new Map<string, Step>(graph.nodes.map((n) => [n.name, n]));
  if (fused) steps.set('heads', fusedStep(graph, wantsLse));
  if (fused && wantsLse)
    steps.set('lse', { ...nodeOf(graph, 'lse', 'logSumExp'), op: 'fusedLse', inputs: ['heads'], attrs: {} });
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    needed.add(name);
    for (const d of steps.get(name)?.inputs ?? []) if (d !== null) visit(d);
  };
  for (const o of outputs) visit(o);
  const planned = graph.nodes.filter((n) => needed.has(n.name)).map((n) => steps.get(n.name) as Step);
  const readers = new Map<string, number>();
  for (const s of planned) for (const d of s.inputs) if (d !== null) readers.set(d, (readers.get(d) ?? 0) + 1);
  for (const o of outputs) readers.set(o, (readers.get(o) ?? 0) + 1);
  return { steps: planned, fused: fused && needed.has('heads'), dims: graph.dims, outputs: [...outputs], readers };
}

/**
 * `heads` straight from q, the keys and values the unfused chain reads (k, v or a session's
 * whole cache) and the masks, with the scores' dims (keyCapacity included), every mask attr
 * (causal and the optional ScoreModifiers) and the scale: exactly what the chain would see.
 */
function fusedStep(graph: AttentionGraph, withLse: boolean): StepOf<'fusedAttention' | 'fusedAttentionLse'> {
  const scores = nodeOf(graph, 'scores', 'scores');
  const masked = nodeOf(graph, 'masked', 'mask');
  const heads = nodeOf(graph, 'heads', 'weightedSum');
  const sinkLogits = nodeOf(graph, 'weights', 'softmax').attrs.sinks;
  const sinks = sinkLogits ? { sinks: sinkLogits } : {};
  return {
    name: heads.name,
    shape: heads.shape,
    dims: heads.dims,
    op: withLse ? 'fusedAttentionLse' : 'fusedAttention',
    inputs: [
      'q',
      scores.inputs[1] ?? 'k',
      heads.inputs[1] ?? 'v',
      masked.inputs[1] ?? null,
      masked.inputs[2] ?? null,
      masked.inputs[3] ?? null,
    ],
    attrs: { ...masked.attrs, ...scores.attrs, scale: nodeOf(graph, 'scaled', 'scale').attrs.scale, ...sinks },
  };
}

/** The plan `execute` runs for a graph on this backend (`unfused`: the unfused chain even where it has a fused path). */
export function planFor(
  graph: AttentionGraph,
  outputs: readonly string[],
  backend: Backend,
  unfused = false,
): ExecutionPlan {
  return planExecution(
    graph,
    outputs,
    !unfused && backend.fused !== undefined,
    backend.fused?.fusedAttentionLse !== undefined,
  );
}

/**
 * Walks the plan in graph order, calling one kernel per step. Every intermediate handle is
 * reference-counted and disposed as soon as its last consumer has run, so a run holds at most
 * the live frontier of the graph; on any failure everything it allocated is released.
 */
export async function execute(req: ExecuteRequest): Promise<ExecuteResult> {
  const { graph, backend, params, feeds, outputs } = req;
  const plan = 'steps' in graph ? graph : planFor(graph, outputs, backend, req.unfused === true);
  if (plan.outputs.length !== outputs.length || plan.outputs.some((o, i) => o !== outputs[i]))
    throw new Error(`qkv executor: a plan for outputs ${plan.outputs.join(', ')} run for ${outputs.join(', ')}`);
  const { steps, fused } = plan;
  const limit = req.maxTensorElements ?? DEFAULT_MAX_TENSOR_ELEMENTS;
  for (const n of steps) {
    if (n.op === 'param') continue;
    if (sizeOf(n.shape) > limit) {
      throw new QkvError(
        'LIMIT_EXCEEDED',
        `${n.name}: ${formatShape(n.shape)} (${n.dims.join(' × ')}) has ${sizeOf(n.shape)} elements, over the ${backend.name} backend's limit of ${limit} per tensor${SCORE_NODES.has(n.name) ? '; drop returnWeights/capture of score nodes so the fused path can run' : ''}`,
      );
    }
  }
  backend.checkLimits?.({ ...plan.dims }, fused);

  const { readers } = plan;

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
  const get = (name: string | null): BackendTensor | null => {
    if (name === null) return null;
    const v = values.get(name);
    if (!v) throw new Error(`qkv executor: "${name}" used before it was computed`);
    return v;
  };

  const context: CallContext = {
    backend,
    feeds,
    params,
    // The fused kernel's lse, until its `fusedLse` step: held so a failure in between frees it.
    lse: {
      put: (t) => {
        lseHandle = t;
        holds.set(t, holds.get(t) ?? 0);
      },
      take: () => {
        if (!lseHandle) throw new Error('qkv executor: lse used before the fused kernel ran');
        return lseHandle;
      },
    },
  };
  let lseHandle: BackendTensor | null = null;
  // This run's kernels form one queue on a backend that batches them (Backend.useQueue).
  const queue = {};
  try {
    for (const step of steps) {
      req.checkpoint?.();
      const ins = step.inputs.map(get);
      backend.useQueue?.(queue);
      let pending: MaybePromise<BackendTensor>;
      try {
        pending = call(context, step, ins);
      } finally {
        backend.useQueue?.(null);
      }
      const out = await pending;
      const name = step.name;
      values.set(name, out);
      hold(out, readers.get(name) ?? 0);
      for (const h of ins) if (h !== null) release(h);
      if ((readers.get(name) ?? 0) === 0) release(out);
    }
    req.checkpoint?.();
    const tensors = new Map<string, Tensor>();
    for (const o of outputs) tensors.set(o, await backend.download(get(o) as BackendTensor));
    for (const o of outputs) release(get(o) as BackendTensor);
    return { tensors, fused };
  } catch (e) {
    for (const h of holds.keys()) if (!persistent.has(h)) backend.dispose(h);
    throw e;
  }
}

interface CallContext {
  readonly backend: Backend;
  readonly feeds: ReadonlyMap<string, Tensor>;
  readonly params: ReadonlyMap<string, BackendTensor>;
  /** The second output of `fusedAttentionLse`, handed on by the `fusedLse` step. */
  readonly lse: { put(t: BackendTensor): void; take(): BackendTensor };
}
type Inputs = readonly (BackendTensor | null)[];
type Call<K extends StepOp> = (c: CallContext, step: StepOf<K>, ins: Inputs) => MaybePromise<BackendTensor>;

/** A required input (the graph builder guarantees it; absent ones are `null` only where optional). */
function need(t: BackendTensor | null | undefined): BackendTensor {
  if (!t) throw new Error('qkv executor: a required kernel input is missing');
  return t;
}

/** Mask attrs that hide or bias nothing: masked = scaled, no kernel, no copy. */
function masksNothing(m: MaskAttrs, keyPaddingMask: BackendTensor | null, attnMask: BackendTensor | null): boolean {
  const modifies =
    m.window !== undefined ||
    m.alibiSlopes !== undefined ||
    m.maskMod !== undefined ||
    m.scoreMod !== undefined ||
    m.softcap !== undefined;
  return !m.causal && !modifies && keyPaddingMask === null && attnMask === null;
}

function capability(backend: Backend, kernel: string, option?: string): never {
  throw new QkvError('CAPABILITY', `${option ? `${option}: ` : ''}backend "${backend.name}" has no ${kernel} kernel`);
}

/** One entry per op: how a step of that op calls the backend. Adding an op = one entry here. */
const CALLS: { readonly [K in StepOp]: Call<K> } = {
  input: ({ backend, feeds }, { name }) => {
    const t = feeds.get(name);
    if (!t) throw new Error(`qkv executor: no feed for input "${name}"`);
    return backend.upload(t);
  },
  param: ({ params }, { name }) => {
    const p = params.get(name);
    if (!p) throw new Error(`qkv executor: parameter "${name}" was not uploaded`);
    return p;
  },
  identity: (_, __, [x]) => need(x),
  positionalEncoding: ({ backend }, { attrs }) => backend.kernels.positionalEncoding(attrs),
  add: ({ backend }, _, [a, b]) => backend.kernels.add(need(a), need(b)),
  linear: ({ backend }, { attrs }, [x, w, bias]) => backend.kernels.linear(need(x), need(w), bias ?? null, attrs),
  scores: ({ backend }, { attrs }, [q, k]) => backend.kernels.scores(need(q), need(k), attrs),
  scale: ({ backend }, { attrs }, [s]) => backend.kernels.scale(need(s), attrs),
  // The packed-sequence ids go only to backends that declare them (Backend.inputs).
  mask: ({ backend }, { attrs }, [s, pad = null, am = null, ids = null]) =>
    ids !== null
      ? backend.kernels.mask(need(s), pad, am, attrs, ids)
      : masksNothing(attrs, pad, am)
        ? need(s)
        : backend.kernels.mask(need(s), pad, am, attrs),
  softmax: ({ backend }, { attrs }, [s]) => backend.kernels.softmax(need(s), attrs),
  weightedSum: ({ backend }, { attrs }, [w, v]) => backend.kernels.weightedSum(need(w), need(v), attrs),
  rotary: ({ backend }, { attrs }, [x]) =>
    backend.kernels.rotary ? backend.kernels.rotary(need(x), attrs) : capability(backend, 'rotary'),
  writeRows: ({ backend }, { attrs }, [cache, rows]) =>
    backend.kernels.writeRows
      ? backend.kernels.writeRows(need(cache), need(rows), attrs)
      : capability(backend, 'writeRows'),
  logSumExp: ({ backend }, { attrs }, [s]) =>
    backend.kernels.logSumExp
      ? backend.kernels.logSumExp(need(s), attrs)
      : capability(backend, 'logSumExp', 'returnLse'),
  fusedAttention: ({ backend }, { attrs }, [q, k, v, pad = null, am = null, ids = null]) =>
    !backend.fused
      ? capability(backend, 'fusedAttention')
      : ids === null
        ? backend.fused.fusedAttention(need(q), need(k), need(v), pad, am, attrs)
        : backend.fused.fusedAttention(need(q), need(k), need(v), pad, am, attrs, ids),
  fusedAttentionLse: ({ backend, lse }, { attrs }, [q, k, v, pad = null, am = null, ids = null]) => {
    const run = backend.fused?.fusedAttentionLse;
    if (!run) return capability(backend, 'fusedAttentionLse', 'returnLse');
    const pair =
      ids === null
        ? run(need(q), need(k), need(v), pad, am, attrs)
        : run(need(q), need(k), need(v), pad, am, attrs, ids);
    const split = ([heads, l]: readonly [BackendTensor, BackendTensor]) => {
      lse.put(l);
      return heads;
    };
    return pair instanceof Promise ? pair.then(split) : split(pair);
  },
  fusedLse: ({ lse }) => lse.take(),
};

function call<K extends StepOp>(c: CallContext, step: StepOf<K>, ins: Inputs): MaybePromise<BackendTensor> {
  return CALLS[step.op](c, step, ins);
}
