import { webglBackend } from '@qkv/backend-webgl';
import { webgpuBackend } from '@qkv/backend-webgpu';
import {
  type Attention,
  type AttentionConfig,
  type AttentionResult,
  type AttentionWeights,
  type BackendInfo,
  createAttention,
  listBackends,
  maxAbsDiff,
  type RunOptions,
  registerBackend,
  type Tensor,
} from 'qkv';
import { median } from './model/format';

/**
 * Runs the demo's model on any backend and measures it. One attention handle per backend is kept
 * for the current model (weights upload once); a change of model disposes them and starts fresh,
 * which is also when "first run" is measured — the run that pays for warm-up (shader compilation,
 * worker start-up), as opposed to the steady runs after it.
 */

export interface Timing {
  /** createAttention: backend start-up and weight upload. */
  readonly createMs: number;
  /** The first run on a fresh handle. */
  readonly firstMs: number;
  /** Median of the steady runs after it. */
  readonly steadyMs: number;
  readonly steadyRuns: number;
}

export interface BackendRun {
  readonly backend: string;
  readonly result: AttentionResult;
  readonly timing: Timing;
  /** The handle, for `graph()`; owned by the engine. */
  readonly attention: Attention;
}

export const CPU = 'cpu';

interface Slot {
  readonly modelKey: string;
  readonly attention: Attention;
  readonly createMs: number;
  firstMs: number | null;
}

const now = () => performance.now();

export class Engine {
  readonly #slots = new Map<string, Slot>();
  #backends: BackendInfo[] | null = null;

  /** Every registered backend with availability and reason, probed once. */
  async backends(): Promise<BackendInfo[]> {
    // webgl and webgpu are optional packages of qkv: a bundled app registers them itself.
    registerBackend(webglBackend);
    registerBackend(webgpuBackend);
    this.#backends ??= await listBackends();
    return this.#backends;
  }

  async available(): Promise<string[]> {
    return (await this.backends()).filter((b) => b.available).map((b) => b.name);
  }

  async #slot(backend: string, modelKey: string, config: AttentionConfig, weights: AttentionWeights): Promise<Slot> {
    const old = this.#slots.get(backend);
    if (old && old.modelKey === modelKey && !old.attention.disposed) return old;
    // A new model makes every handle of the old one useless; free them all now (GPU memory,
    // worker threads) rather than when each backend happens to be used again.
    for (const [name, slot] of [...this.#slots]) {
      if (slot.modelKey === modelKey && name !== backend) continue;
      this.#slots.delete(name);
      await slot.attention.dispose();
    }
    const t0 = now();
    const attention = await createAttention(config, weights, { backend });
    const slot: Slot = { modelKey, attention, createMs: now() - t0, firstMs: null };
    this.#slots.set(backend, slot);
    return slot;
  }

  /**
   * Runs `input` on `backend`; on a fresh handle the first run is timed separately. `steadyRuns`
   * more runs give the steady time; the last result is returned.
   */
  async run(
    backend: string,
    modelKey: string,
    config: AttentionConfig,
    weights: AttentionWeights,
    input: Tensor,
    options: RunOptions,
    steadyRuns = 3,
  ): Promise<BackendRun> {
    const slot = await this.#slot(backend, modelKey, config, weights);
    let result: AttentionResult | null = null;
    if (slot.firstMs === null) {
      const t0 = now();
      result = await slot.attention.run({ query: input }, options);
      slot.firstMs = now() - t0;
    }
    const times: number[] = [];
    for (let r = 0; r < steadyRuns; r++) {
      const t0 = now();
      result = await slot.attention.run({ query: input }, options);
      times.push(now() - t0);
    }
    if (!result) result = await slot.attention.run({ query: input }, options);
    return {
      backend,
      result,
      attention: slot.attention,
      timing: { createMs: slot.createMs, firstMs: slot.firstMs, steadyMs: median(times), steadyRuns: times.length },
    };
  }

  /**
   * A one-off measurement on a fresh handle that is disposed afterwards (compare-all, long
   * sequences), so it never disturbs the handles the step-by-step view uses.
   */
  async measure(
    backend: string,
    config: AttentionConfig,
    weights: AttentionWeights,
    input: Tensor,
    options: RunOptions,
    steadyRuns: number,
    onStep?: () => Promise<void>,
  ): Promise<{ result: AttentionResult; timing: Timing }> {
    const t0 = now();
    const attention = await createAttention(config, weights, { backend });
    const createMs = now() - t0;
    try {
      await onStep?.();
      const t1 = now();
      let result = await attention.run({ query: input }, options);
      const firstMs = now() - t1;
      const times: number[] = [];
      for (let r = 0; r < steadyRuns; r++) {
        await onStep?.();
        const t2 = now();
        result = await attention.run({ query: input }, options);
        times.push(now() - t2);
      }
      return { result, timing: { createMs, firstMs, steadyMs: median(times), steadyRuns } };
    } finally {
      await attention.dispose();
    }
  }

  async dispose(): Promise<void> {
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    await Promise.allSettled(slots.map((s) => s.attention.dispose()));
  }
}

/** Largest |a − b| over every output and captured step the two results share. */
export function resultDiff(a: AttentionResult, b: AttentionResult): { max: number; where: string } {
  const pairs: [string, Tensor | undefined, Tensor | undefined][] = [
    ['residual', a.residual, b.residual],
    ['attention', a.attention, b.attention],
    ['weights', a.weights, b.weights],
  ];
  for (const [name, t] of Object.entries(a.captured))
    pairs.push([name, t, b.captured[name as keyof typeof b.captured]]);
  let max = 0;
  let where = 'residual';
  for (const [name, x, y] of pairs) {
    if (!x || !y) continue;
    const d = maxAbsDiff(x.data, y.data);
    if (Number.isNaN(d)) return { max: Number.NaN, where: name };
    if (d > max) {
      max = d;
      where = name;
    }
  }
  return { max, where };
}
