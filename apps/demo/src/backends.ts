import type { AttentionResult, BackendInfo } from 'qkv';
import type { App } from './app';
import { readSettings, showMessage } from './controls';
import { CPU, resultDiff } from './engine';
import { resultsTable } from './figures';
import { formatDiff, formatMs } from './model/format';
import { generateTokens } from './model/longtext';
import { attentionConfig, buildWeights, embed, validateSettings, validateTokens } from './model/model';
import { tokenize } from './model/tokenize';
import { byId, fill, h, yieldToBrowser } from './ui/dom';

/** Backends: the picker, the status line, compare-all and the long-sequence mode. */

/** The backend radio list; `onSwitch` also hears of a switch (chapters with their own runs). */
export function renderBackendPicker(app: App, onSwitch: (name: string) => void = () => {}): void {
  const { state } = app;
  const list = byId('backend-list');
  fill(
    list,
    ...app.backends.map((b) => {
      const input = h('input', {
        type: 'radio',
        name: 'backend',
        value: b.name,
        disabled: !b.available,
        checked: b.name === state.backend,
      });
      input.addEventListener('change', () => {
        if (input.checked) {
          switchBackend(app, b.name);
          onSwitch(b.name);
        }
      });
      return h(
        'label',
        {
          class: `backend-option${b.available ? '' : ' unavailable'}`,
          'data-backend': b.name,
          title: b.description ?? '',
        },
        input,
        h('span', { class: 'backend-name' }, b.name),
        h(
          'span',
          { class: 'backend-availability' },
          b.available ? 'available' : `unavailable: ${b.reason ?? 'no reason given'}`,
        ),
      );
    }),
  );
}

function switchBackend(app: App, name: string): void {
  app.state.backend = name;
  const url = new URL(location.href);
  url.searchParams.set('backend', name);
  history.replaceState(null, '', url);
  app.scheduler.schedule();
}

export function renderBackendStatus(app: App): void {
  if (!app.view) return;
  const { run, diff } = app.view;
  const t = run.timing;
  fill(
    byId('backend-status'),
    'Running on ',
    h('b', { 'data-testid': 'active-backend' }, run.backend),
    ` (${run.attention.selection.reason}) · createAttention ${formatMs(t.createMs)} · first run ${formatMs(t.firstMs)} · steady ${formatMs(t.steadyMs)} (median of ${t.steadyRuns}) · max |Δ| vs cpu: `,
    h(
      'b',
      { 'data-testid': 'max-diff' },
      diff ? `${formatDiff(diff.max)}${diff.max > 0 ? ` (in ${diff.where})` : ''}` : '0 (this is the cpu reference)',
    ),
  );
}

/**
 * The rows of a backend comparison table (compare-all, long sequences): cpu first, as the
 * reference every later backend's result is diffed against.
 */
class Comparison {
  readonly rows: HTMLElement[] = [];
  #reference: AttentionResult | null = null;

  /** cpu first, then the others in the registry's order. */
  static order(infos: readonly BackendInfo[]): BackendInfo[] {
    return [...infos].sort((a, b) => Number(b.name === CPU) - Number(a.name === CPU));
  }

  /** A measured backend: its name, `cells`, and max |Δ| vs cpu. */
  add(name: string, result: AttentionResult, cells: readonly string[]): void {
    if (name === CPU) this.#reference = result;
    const diff = this.#reference ? resultDiff(result, this.#reference) : null;
    this.rows.push(
      h(
        'tr',
        { 'data-backend': name },
        h('td', {}, name),
        ...cells.map((c) => h('td', {}, c)),
        h('td', { 'data-testid': 'diff' }, diff ? formatDiff(diff.max) : '—'),
      ),
    );
  }

  /** A backend that did not run: why, across the measurement columns. */
  skip(name: string, kind: 'unavailable' | 'failed', text: string, columns: number): void {
    this.rows.push(
      h('tr', { class: kind, 'data-backend': name }, h('td', {}, name), h('td', { colspan: columns }, text)),
    );
  }
}

export async function compareAll(app: App): Promise<void> {
  const button = byId<HTMLButtonElement>('compare-all');
  const table = byId('compare-table');
  const settings = readSettings();
  const tokens = tokenize(app.state.text);
  const problem = validateSettings(settings) ?? validateTokens(tokens);
  if (problem) {
    showMessage(problem, 'warning');
    return;
  }
  button.disabled = true;
  document.body.dataset.compare = 'running';
  const weights = buildWeights(settings);
  const config = attentionConfig(settings);
  const input = embed(tokens, settings.dModel);
  const options = { returnWeights: true, capture: 'all' as const };
  const comparison = new Comparison();
  for (const b of Comparison.order(app.backends)) {
    if (!b.available) {
      comparison.skip(b.name, 'unavailable', `unavailable: ${b.reason ?? ''}`, 4);
      continue;
    }
    fill(table, h('p', {}, `running ${b.name}…`));
    await yieldToBrowser();
    try {
      const { result, timing } = await app.engine.measure(b.name, config, weights, input, options, 5);
      comparison.add(b.name, result, [formatMs(timing.firstMs), formatMs(timing.steadyMs), formatMs(timing.createMs)]);
    } catch (e) {
      comparison.skip(b.name, 'failed', `failed: ${e instanceof Error ? e.message : String(e)}`, 4);
    }
  }
  fill(
    table,
    resultsTable(
      'compare-results',
      `${tokens.length} tokens, dModel ${settings.dModel}, ${settings.numHeads} heads, every step captured; steady = median of 5 runs`,
      ['backend', 'first run', 'steady', 'createAttention', 'max |Δ| vs cpu'],
      comparison.rows,
    ),
  );
  button.disabled = false;
  document.body.dataset.compare = 'done';
}

export async function runLong(app: App): Promise<void> {
  if (app.busyLong) return;
  const settings = readSettings();
  const problem = validateSettings(settings);
  if (problem) {
    showMessage(problem, 'warning');
    return;
  }
  app.busyLong = true;
  document.body.dataset.long = 'running';
  const button = byId<HTMLButtonElement>('long-run');
  const progress = byId<HTMLProgressElement>('long-progress');
  const status = byId('long-status');
  button.disabled = true;
  const length = Number.parseInt(byId<HTMLSelectElement>('long-length').value, 10);
  const tokens = generateTokens(length);
  fill(byId('long-preview'), h('b', {}, 'Text: '), `${tokens.slice(0, 40).join(' ')} … (${length} tokens)`);
  const available = Comparison.order(app.backends.filter((b) => b.available));
  const steadyRuns = 2;
  // Progress counts runs: per backend one first run plus the steady ones.
  const total = available.length * (1 + steadyRuns);
  let done = 0;
  progress.hidden = false;
  progress.max = total;
  progress.value = 0;
  const comparison = new Comparison();
  try {
    const weights = buildWeights(settings);
    const config = attentionConfig(settings);
    const input = embed(tokens, settings.dModel);
    for (const b of available) {
      let step = 0;
      const { result, timing } = await app.engine.measure(b.name, config, weights, input, {}, steadyRuns, async () => {
        if (step++ > 0) done++;
        progress.value = done;
        status.textContent = `${b.name}: run ${step} of ${1 + steadyRuns} (${done}/${total})`;
        await yieldToBrowser();
      });
      done++;
      progress.value = done;
      comparison.add(b.name, result, [
        String(length),
        formatMs(timing.firstMs),
        formatMs(timing.steadyMs),
        `${Math.round(length / (timing.steadyMs / 1000)).toLocaleString('en-US')}`,
        result.fused ? 'fused' : 'step by step',
      ]);
      fill(
        byId('long-table'),
        resultsTable(
          'long-results',
          `${length} generated tokens, dModel ${settings.dModel}, ${settings.numHeads} heads, causal ${settings.causal ? 'on' : 'off'}; steady = median of ${steadyRuns} runs`,
          ['backend', 'tokens', 'first run', 'steady', 'tokens / s', 'path', "max |Δ| vs cpu (E')"],
          comparison.rows,
        ),
      );
      await yieldToBrowser();
    }
    status.textContent = `done: ${available.length} backend${available.length === 1 ? '' : 's'} × ${1 + steadyRuns} runs`;
  } catch (e) {
    status.textContent = `failed: ${e instanceof Error ? e.message : String(e)}`;
  } finally {
    progress.value = progress.max;
    button.disabled = false;
    app.busyLong = false;
    document.body.dataset.long = 'done';
  }
}
