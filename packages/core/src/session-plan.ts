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
  /** The last movable plan and what it was planned for. */
  #key = '';
  #plan: ExecutionPlan | null = null;

  constructor(config: ResolvedConfig, constants: GraphConstants, backend: Backend) {
    this.#config = config;
    this.#constants = constants;
    this.#backend = backend;
  }

  /** The plan of the step `shape` (a session step: shape.cache set) for `outputs`. */
  plan(shape: GraphShape, outputs: readonly string[]): ExecutionPlan {
    const key = structureKey(shape, outputs);
    const offset = shape.positionOffset ?? 0;
    if (key !== null && key === this.#key && this.#plan !== null) {
      this.#plan = movePlan(this.#plan, offset, shape.keyLength);
      return this.#plan;
    }
    const plan = planFor(buildGraph(this.#config, shape, this.#constants), outputs, this.#backend);
    const movable = key !== null && plan.steps.every((s) => MOVABLE.has(s.op));
    this.#key = movable ? key : '';
    this.#plan = movable ? { ...plan, steps: plan.steps.map(stepOnly) } : null;
    return plan;
  }
}

/** Ops whose step is the same at every position, or whose position-dependent values movePlan moves. */
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

/**
 * What a step's plan depends on besides its position, or null where it is never reused: a host
 * cache, a wrapped ring, explicit positions. The first position is in it as zero / non-zero
 * (queryOffset is set only when it is not 0).
 */
function structureKey(shape: GraphShape, outputs: readonly string[]): string | null {
  const { cache } = shape;
  if (cache?.mode !== 'device' || cache.ring !== undefined || shape.positionIds !== undefined) return null;
  const flags = [shape.hasKeyPaddingMask, shape.hasAttnMask, shape.hasSequenceIds === true, shape.selfAttention];
  const first = (shape.positionOffset ?? 0) === 0;
  return `${shape.batch} ${shape.queryLength} ${cache.capacity} ${first} ${flags.join(' ')} ${outputs.join(',')}`;
}

/** The step without the graph node's other fields (doc): what a moved plan carries. */
function stepOnly(s: Step): Step {
  const { name, shape, dims, op, inputs, attrs } = s;
  return { name, shape, dims, op, inputs, attrs } as Step;
}

/** `plan` at first position `offset` and Lk keys (same structure: see StepPlans). */
function movePlan(plan: ExecutionPlan, offset: number, Lk: number): ExecutionPlan {
  return { ...plan, steps: plan.steps.map((s) => moveStep(s, offset, Lk)), dims: { ...plan.dims, keyLength: Lk } };
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
