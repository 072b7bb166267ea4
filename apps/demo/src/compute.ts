import type { Tensor } from 'qkv';
import type { App, View } from './app';
import { readSettings, showMessage } from './controls';
import { CPU, resultDiff } from './engine';
import { attentionConfig, buildWeights, describeHeads, embed, validateSettings, validateTokens } from './model/model';
import { tokenize, tokenLabels } from './model/tokenize';
import { render } from './render';

let weightsCache: { key: string; weights: ReturnType<typeof buildWeights> } | null = null;

/**
 * One recompute: the controls → one run on the chosen backend (every step captured, plus the CPU
 * reference for the diff) → a new `View` → every chapter redrawn. Returns early, drawing nothing,
 * when a newer input is already waiting.
 */
export async function recompute(app: App): Promise<void> {
  const { state, engine, scheduler } = app;
  const settings = readSettings();
  const tokens = tokenize(state.text);
  const problem = validateSettings(settings) ?? validateTokens(tokens);
  if (problem) {
    showMessage(problem, 'warning');
    document.body.dataset.status = 'invalid';
    document.getElementById('steps')?.classList.add('stale');
    return;
  }
  state.settings = settings;
  const modelKey = JSON.stringify(settings);
  if (weightsCache?.key !== modelKey) weightsCache = { key: modelKey, weights: buildWeights(settings) };
  const weights = weightsCache.weights;
  const config = attentionConfig(settings);
  const input = embed(tokens, settings.dModel);
  const options = { returnWeights: true, capture: 'all' as const };
  document.body.dataset.status = 'busy';
  const run = await engine.run(state.backend, modelKey, config, weights, input, options);
  let diff: View['diff'] = null;
  if (state.backend !== CPU) {
    const reference = await engine.run(CPU, modelKey, config, weights, input, options, 0);
    diff = resultDiff(run.result, reference.result);
  }
  if (scheduler.dirty) return; // a newer input is waiting; don't draw this one
  // PyTorch's average_attn_weights, computed by qkv on the same handle: one extra run.
  const averagedRun = await run.attention.run({ query: input }, { returnWeights: 'averaged' });
  const averaged = averagedRun.weights as Tensor;
  if (scheduler.dirty) return;
  app.view = {
    tokens,
    labels: tokenLabels(tokens),
    settings,
    heads: describeHeads(settings),
    run,
    weights,
    diff,
    averaged: { shape: averaged.shape.slice(-2), data: averaged.data },
  };
  state.head = Math.min(state.head, settings.numHeads - 1);
  showMessage(null);
  render(app);
  document.getElementById('steps')?.classList.remove('stale');
  document.body.dataset.status = 'ready';
  document.body.dataset.backend = run.backend;
}
