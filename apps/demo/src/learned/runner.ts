import { type Attention, type AttentionResult, createAttention, type StepName, type Tensor } from 'qkv';
import { embed, type LearnedModel, logitsAt, softmax } from './model';
import { type HeadScores, headScores, repeatedRandomSequences, type ScoreSet } from './scores';

/**
 * Runs the learned model through qkv, layer by layer, on a named backend: one attention handle
 * per layer and backend (weights upload once), E → layer 1 → E' → layer 2 → E'' → logits.
 */

export interface ModelRun {
  readonly backend: string;
  /** E, [B, L, d]. */
  readonly input: Tensor;
  /** One qkv result per layer: `weights` [B, H, L, L], `residual` the layer's E'. */
  readonly layers: readonly AttentionResult[];
}

export interface LayerHeadScores extends HeadScores {
  /** 1-based, as on the page. */
  readonly layer: number;
  readonly head: number;
}

export class LearnedRunner {
  readonly model: LearnedModel;
  readonly #handles = new Map<string, Promise<Attention[]>>();
  #scoreSet: ScoreSet | null = null;

  constructor(model: LearnedModel) {
    this.model = model;
  }

  #layers(backend: string): Promise<Attention[]> {
    let handles = this.#handles.get(backend);
    if (!handles) {
      handles = (async () => {
        const out: Attention[] = [];
        try {
          for (const layer of this.model.layers)
            out.push(await createAttention(layer.config, layer.weights, { backend }));
        } catch (e) {
          // A layer that cannot start frees the ones that did; the next call tries afresh.
          this.#handles.delete(backend);
          await Promise.all(out.map((a) => a.dispose()));
          throw e;
        }
        return out;
      })();
      this.#handles.set(backend, handles);
    }
    return handles;
  }

  /**
   * The whole model on token ids [B][L]: every layer's weights and residual stream, plus the
   * steps named in `capture` (e.g. 'scaled', the seed's scaled_score) of every layer.
   */
  async run(
    backend: string,
    ids: readonly (readonly number[])[],
    capture: readonly StepName[] = [],
  ): Promise<ModelRun> {
    const input = embed(this.model, ids);
    const handles = await this.#layers(backend);
    const layers: AttentionResult[] = [];
    let x = input;
    for (const attn of handles) {
      const result = await attn.run({ query: x }, { returnWeights: true, capture: [...capture] });
      layers.push(result);
      x = result.residual as Tensor;
    }
    return { backend, input, layers };
  }

  /** Next-token probabilities after position i of sequence b, [V]. */
  nextToken(run: ModelRun, b: number, i: number): Float64Array {
    const last = run.layers[run.layers.length - 1]?.residual as Tensor;
    return softmax(logitsAt(this.model, last, b, i));
  }

  /** Every head's previous-token and induction scores on the repeated random sequences. */
  async scores(backend: string): Promise<LayerHeadScores[]> {
    this.#scoreSet ??= repeatedRandomSequences(this.model.words, this.model.bos);
    const { sequences, half } = this.#scoreSet;
    const run = await this.run(backend, sequences);
    const out: LayerHeadScores[] = [];
    run.layers.forEach((result, layer) => {
      const weights = result.weights as Tensor;
      const H = weights.shape[1] as number;
      for (let head = 0; head < H; head++)
        out.push({ layer: layer + 1, head: head + 1, ...headScores(weights, head, half) });
    });
    return out;
  }

  /** Frees every handle on every backend. */
  async dispose(): Promise<void> {
    const all = [...this.#handles.values()];
    this.#handles.clear();
    for (const handles of all) {
      const list = await handles.catch(() => [] as Attention[]);
      await Promise.all(list.map((a) => a.dispose()));
    }
  }
}
