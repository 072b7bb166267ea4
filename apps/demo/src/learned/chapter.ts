import type { Tensor } from 'qkv';
import { formatNumber } from '../model/format';
import { tokenLabels } from '../model/tokenize';
import { byId, fill, h } from '../ui/dom';
import './learned.css';
import { heatmap } from '../ui/heatmap';
import { Scheduler } from '../ui/scheduler';
import {
  headWeights,
  inductionExample,
  inductionStory,
  type Prediction,
  percent,
  previousTokenStory,
  topPredictions,
} from './explain';
import { type LearnedModel, loadLearnedModel } from './model';
import { type LayerHeadScores, LearnedRunner } from './runner';
import { SCORE_COUNT, SCORE_HALF } from './scores';
import { checkSentence, encodeText, generateRepeat, withStart } from './vocabulary';

/**
 * The "learned heads" chapter: the trained model of train/train.py, run through qkv layer by
 * layer on the page's backend, each head's weights beside its measured score and its job in the
 * seed's words. Owns its elements in index.html (#step-learned) and nothing else; the page tells
 * it the backend.
 */

export interface LearnedSnapshot {
  readonly backend: string;
  readonly words: readonly string[];
  readonly scores: readonly LayerHeadScores[];
  readonly predictions: readonly Prediction[];
}

export interface LearnedChapter {
  /** Recomputes on this backend (scores are measured once per backend). */
  setBackend(name: string): void;
  /** Resolves once no recompute is pending or running. */
  idle(): Promise<void>;
  /** What the page shows now, for the e2e test; null before the first result. */
  snapshot(): LearnedSnapshot | null;
  dispose(): Promise<void>;
}

/** Where the build puts public/learned/ (the page's base is './'). */
const MODEL_URL = './learned/model.safetensors';
const CONFIG_URL = './learned/config.json';

const JOBS = ['previous-token head', 'induction head'] as const;

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  return r;
}

export function mountLearnedChapter(initialBackend: string): LearnedChapter {
  const input = byId<HTMLInputElement>('learned-sentence');
  const status = byId('learned-status');
  let backend = initialBackend;
  let runner: LearnedRunner | null = null;
  let loading: Promise<LearnedRunner> | null = null;
  const scoreCache = new Map<string, LayerHeadScores[]>();
  let snap: LearnedSnapshot | null = null;
  let generated = 0;

  const load = (): Promise<LearnedRunner> => {
    loading ??= (async () => {
      const [config, weights] = await Promise.all([fetchOk(CONFIG_URL).then((r) => r.json()), fetchOk(MODEL_URL)]);
      const model = await loadLearnedModel(weights, config);
      runner = new LearnedRunner(model);
      return runner;
    })().catch((e) => {
      loading = null; // the next input tries again
      throw e;
    });
    return loading;
  };

  async function recompute(): Promise<void> {
    const r = await load();
    const { model } = r;
    const typed = encodeText(input.value, model.words);
    const problem = checkSentence(typed.words, model.maxLength - 1, model.words);
    if (problem) {
      status.className = 'message warning';
      status.textContent = problem;
      return;
    }
    const encoded = withStart(typed, model.bos);
    const on = backend;
    let scores = scoreCache.get(on);
    if (!scores) {
      scores = await r.scores(on);
      scoreCache.set(on, scores);
    }
    const run = await r.run(on, [encoded.ids], ['scaled']);
    if (scheduler.dirty) return; // a newer input or backend is waiting
    const [layer1, layer2] = run.layers.map((l) => l.weights as Tensor) as [Tensor, Tensor];
    const scaled2 = run.layers[1]?.captured.scaled as Tensor;
    const last = encoded.words.length - 1;
    const predictions = topPredictions(r.nextToken(run, 0, last), encoded.wordOf);
    render(encoded.words, encoded.ids, [layer1, layer2], scaled2, scores, predictions, on, model);
    snap = { backend: on, words: encoded.words, scores, predictions };
    status.className = 'learned-status';
    status.textContent = `Computed by qkv on ${on}: E → layer 1 → E′ → layer 2 → E″ → next-token prediction.`;
  }

  const scheduler = new Scheduler(
    recompute,
    (e) => {
      status.className = 'message error';
      status.textContent = `The learned model could not run: ${e instanceof Error ? e.message : String(e)}`;
    },
    {
      onStart: () => {
        document.body.dataset.learned = 'busy';
      },
      onEnd: () => {
        document.body.dataset.learned = 'ready';
      },
    },
  );
  const schedule = scheduler.schedule;

  input.addEventListener('input', schedule);
  byId('learned-generate').addEventListener('click', () => {
    input.value = generateRepeat(++generated).join(' ');
    schedule();
  });
  schedule();

  return {
    setBackend(name) {
      backend = name;
      schedule();
    },
    idle: () => scheduler.idle(),
    snapshot: () => snap,
    async dispose() {
      await loading?.catch(() => null);
      await runner?.dispose();
    },
  };
}

function render(
  words: readonly string[],
  ids: readonly number[],
  weights: readonly [Tensor, Tensor],
  scaled2: Tensor,
  scores: readonly LayerHeadScores[],
  predictions: readonly Prediction[],
  backend: string,
  model: LearnedModel,
): void {
  const labels = tokenLabels(words);
  const [layer1, layer2] = weights;
  const example = inductionExample(ids);
  const top = predictions[0] as Prediction;
  const stories = [previousTokenStory(words, layer1), inductionStory(words, example, layer1, layer2, scaled2, top)];
  const width = Math.min(520, document.documentElement.clientWidth - 64);
  fill(
    byId('learned-layers'),
    ...weights.map((w, layer) => {
      const s = scores.find((x) => x.layer === layer + 1 && x.head === 1) as LayerHeadScores;
      const score =
        layer === 0
          ? { label: 'mean weight on the previous token', value: s.previousToken, other: s.induction }
          : { label: 'mean weight on the induction target', value: s.induction, other: s.previousToken };
      return h(
        'div',
        { class: 'panel learned-layer', 'data-layer': layer + 1 },
        h('h3', {}, `Layer ${layer + 1}, head 1: the ${JOBS[layer]}`),
        h(
          'p',
          { class: 'learned-score' },
          `${score.label}: `,
          h('b', { 'data-testid': `learned-score-${layer + 1}` }, score.value.toFixed(4)),
          ` (${layer === 0 ? 'induction' : 'previous-token'} score ${score.other.toFixed(4)}) · measured by qkv on ${backend} over ${SCORE_COUNT} repeated random sequences of 2 × ${SCORE_HALF} tokens`,
        ),
        heatmap({
          name: `learned-weights-${layer + 1}`,
          rows: words.length,
          cols: words.length,
          data: headWeights(w, 0).data,
          rowLabels: labels.map((l) => `${l} →`),
          colLabels: labels,
          rowAxis: 'query i (focus word)',
          colAxis: 'key j (other word)',
          palette: 'weights',
          maxCell: 28,
          maxWidth: width,
          describe: (i, j, v) => `W_a(layer ${layer + 1})[${labels[i]} → ${labels[j]}] = ${formatNumber(v, 4)}`,
        }),
        h('p', { class: 'note' }, stories[layer] as string),
      );
    }),
  );
  fill(
    byId('learned-prediction'),
    h('h3', {}, `After “${words[words.length - 1]}”, the model predicts`),
    h(
      'ol',
      { class: 'learned-predictions' },
      predictions.map((p) =>
        h(
          'li',
          { 'data-testid': 'learned-prediction' },
          h('b', {}, p.word ? `“${p.word}”` : `token #${p.id}`),
          ` ${percent(p.probability)}`,
          p.word ? '' : h('span', { class: 'aside' }, ' (no word of your sentence has this id)'),
        ),
      ),
    ),
    h(
      'p',
      { class: 'caption' },
      `logits = E″ · lm_headᵀ, softmax over the model’s ${model.vocab} token ids · weights trained by apps/demo/train/train.py, seed ${model.hf.training.seed}`,
    ),
  );
}
