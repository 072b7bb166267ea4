import type { Backend } from './backend.js';
import { buildGraph } from './build-graph.js';
import type { ResolvedConfig } from './config.js';
import { type ExecutionPlan, planFor, type Step, type StepOp } from './executor.js';
import type { GraphConstants, GraphShape } from './graph.js';

/**
 * A session step's execution plan, kept from one step to the next. Two steps of a session with
 * the same structure (batch, tokens, inputs fed, outputs) differ only in where they sit: the
 * cache length before the step (positionOffset) and after it (Lk). Building the graph and
 * planning it afresh for every token is ~10% of a cold d = 512 decode step at a short cache
 * (bench/README.md), nearly all of it allocation, so the first step of a structure plans from
 * `buildGraph` and every later one moves that plan's few position-dependent values:
 *
 *   writeRows           offset = Lk − t (the rows written), shape [B, Lk, KVH·hd]
 *   fusedAttention(Lse) keyLength = Lk, queryOffset = the step's first position
 *   rotary              offset
 *   positionalEncoding  offset (the sinusoidal kernel; a learned table's rows are fed by core)
 *   input sequenceIds   shape [B, Lk]
 *
 * These are every value of a step's graph that depends on its position while the cache has not
 * wrapped (build-graph.ts); a plan holding any other op (the unfused score chain, a host cache's
 * kAll/vAll inputs) or a wrapped window ring (whose layout moves every step) is planned afresh
 * each time. A moved plan equals the fresh one exactly (test/session-plan.test.ts).
 */
export class StepPlans {
  readonly #config: ResolvedConfig;
  readonly #constants: GraphConstants;
  readonly #backend: Backend;
  /** The last movable plan, what it was planned for, and which of its steps move. */
  #last: { shape: GraphShape; outputs: readonly string[]; plan: ExecutionPlan; moving: readonly number[] } | null =
    null;

  constructor(config: ResolvedConfig, constants: GraphConstants, backend: Backend) {
    this.#config = config;
    this.#constants = constants;
    this.#backend = backend;
  }

  /** The plan of the step `shape` (a session step: shape.cache set) for `outputs`. */
  plan(shape: GraphShape, outputs: readonly string[]): ExecutionPlan {
    const last = this.#last;
    if (last !== null && sameStructure(last.shape, shape) && sameList(last.outputs, outputs)) {
      const offset = shape.positionOffset ?? 0;
      const Lk = shape.keyLength;
      const steps = last.plan.steps.slice();
      for (const i of last.moving) steps[i] = moveStep(steps[i] as Step, offset, Lk);
      const plan = { ...last.plan, steps, dims: { ...last.plan.dims, keyLength: Lk } };
      this.#last = { ...last, shape, plan };
      return plan;
    }
    const plan = planFor(buildGraph(this.#config, shape, this.#constants), outputs, this.#backend);
    const movable = reusable(shape) && plan.steps.every((s) => MOVABLE.has(s.op));
    this.#last = null;
    if (movable) {
      const steps = plan.steps.map(stepOnly);
      const moving = steps.flatMap((s, i) => (moves(s) ? [i] : []));
      this.#last = { shape, outputs: [...outputs], plan: { ...plan, steps }, moving };
    }
    return plan;
  }
}

/** Ops whose step is the same at every position, or whose position-dependent values moveStep moves. */
const MOVABLE: ReadonlySet<StepOp> = new Set<StepOp>([
  'input',
  'param',
  'identity',
  'add',
  'linear',
  'rotary',
  'positionalEncoding',
  'writeRows',
  'fusedAttention',
  'fusedAttentionLse',
  'fusedLse',
]);

/** A step whose plan is ever reused: a device cache that has not wrapped, positions by offset. */
function reusable(shape: GraphShape): boolean {
  const { cache } = shape;
  return cache?.mode === 'device' && cache.ring === undefined && shape.positionIds === undefined;
}

/**
 * Whether `b` has the structure `a` (a reusable step's) was planned for: everything but its
 * position, which counts only as zero / non-zero (queryOffset is set only when it is not 0).
 */
function sameStructure(a: GraphShape, b: GraphShape): boolean {
  return (
    reusable(b) &&
    a.batch === b.batch &&
    a.queryLength === b.queryLength &&
    a.cache?.capacity === b.cache?.capacity &&
    a.selfAttention === b.selfAttention &&
    a.hasKeyPaddingMask === b.hasKeyPaddingMask &&
    a.hasAttnMask === b.hasAttnMask &&
    (a.hasSequenceIds === true) === (b.hasSequenceIds === true) &&
    ((a.positionOffset ?? 0) === 0) === ((b.positionOffset ?? 0) === 0)
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether moveStep changes this step. */
function moves(s: Step): boolean {
  switch (s.op) {
    case 'writeRows':
    case 'fusedAttention':
    case 'fusedAttentionLse':
    case 'rotary':
    case 'positionalEncoding':
      return true;
    case 'input':
      return s.name === 'sequenceIds' || s.attrs.kind === 'learned';
    default:
      return false;
  }
}

/** The step without the graph node's other fields (doc): what a moved plan carries. */
function stepOnly(s: Step): Step {
  const { name, shape, dims, op, inputs, attrs } = s;
  return { name, shape, dims, op, inputs, attrs } as Step;
}

function moveStep(s: Step, offset: number, Lk: number): Step {
  switch (s.op) {
    case 'writeRows':
      // shape [B, Lk, KVH·hd]; the t new rows go after the Lk − t held ones.
      return {
        ...s,
        shape: [s.shape[0] as number, Lk, s.shape[2] as number],
        attrs: { ...s.attrs, offset: Lk - s.attrs.rows },
      };
    case 'fusedAttention':
    case 'fusedAttentionLse':
      return { ...s, attrs: { ...s.attrs, keyLength: Lk, ...(offset !== 0 ? { queryOffset: offset } : {}) } };
    case 'rotary':
      return { ...s, attrs: { ...s.attrs, offset } };
    case 'positionalEncoding':
      return { ...s, attrs: { ...s.attrs, offset } };
    case 'input':
      if (s.name === 'sequenceIds') return { ...s, shape: [s.shape[0] as number, Lk] };
      if (s.attrs.kind === 'learned') return { ...s, attrs: { ...s.attrs, offset } };
      return s;
    default:
      return s;
  }
}
