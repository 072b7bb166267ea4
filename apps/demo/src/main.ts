import type { AttentionResult, BackendInfo, GraphNode, StepName, Tensor } from 'qkv';
import './style.css';
import { type BackendRun, CPU, Engine, resultDiff } from './engine';
import { type LearnedChapter, mountLearnedChapter } from './learned/chapter';
import { formatDiff, formatMs, formatNumber, formatShape } from './model/format';
import { generateTokens } from './model/longtext';
import {
  attentionConfig,
  buildWeights,
  DEFAULT_SETTINGS,
  describeHeads,
  embed,
  type HeadInfo,
  headContributions,
  headDim,
  headGrid,
  rowSums,
  type Settings,
  slice2d,
  validateSettings,
  validateTokens,
} from './model/model';
import { tokenize, tokenLabels } from './model/tokenize';
import { byId, fill, h, yieldToBrowser } from './ui/dom';
import { graphView } from './ui/graphview';
import { heatmap, heatmapData, heatmapNames } from './ui/heatmap';

/**
 * The page: controls → one recompute on the chosen backend (plus the CPU reference) → every step
 * redrawn from the captured tensors. Recomputes never overlap: a change during a run marks the
 * state dirty and one more run follows, so the page always ends showing the latest input.
 */

interface State {
  text: string;
  settings: Settings;
  head: number;
  backend: string;
  graphNode: string;
}

interface View {
  tokens: string[];
  labels: string[];
  settings: Settings;
  heads: HeadInfo[];
  run: BackendRun;
  weights: ReturnType<typeof buildWeights>;
  diff: { max: number; where: string } | null;
  /** The heads' weights averaged by qkv itself (returnWeights: 'averaged'), [Lq, Lk]. */
  averaged: Tensor;
}

const engine = new Engine();
const requestedBackend = new URLSearchParams(location.search).get('backend');
const state: State = {
  text: (byId<HTMLInputElement>('sentence').value || '').trim(),
  settings: { ...DEFAULT_SETTINGS },
  head: 0,
  backend: CPU,
  graphNode: 'weights',
};
let view: View | null = null;
let backendInfos: BackendInfo[] = [];
let busyLong = false;
let learned: LearnedChapter | null = null;

// ---------------------------------------------------------------------------------------------
// Scheduling: latest input wins, runs never overlap.

let running = false;
let dirty = false;
let typingTimer: ReturnType<typeof setTimeout> | null = null;
let updates = 0;

function schedule(): void {
  dirty = true;
  if (!running) void loop();
}

function scheduleSoon(): void {
  if (typingTimer) clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    typingTimer = null;
    schedule();
  }, 150);
}

async function loop(): Promise<void> {
  running = true;
  document.body.dataset.status = 'busy';
  try {
    while (dirty) {
      dirty = false;
      try {
        await recompute();
      } catch (e) {
        showMessage(`Something went wrong: ${e instanceof Error ? e.message : String(e)}`, 'error');
        document.body.dataset.status = 'error';
      }
    }
  } finally {
    running = false;
    updates++;
    document.body.dataset.updates = String(updates);
  }
}

// ---------------------------------------------------------------------------------------------
// Messages and small bindings.

function showMessage(text: string | null, kind: 'error' | 'warning' | 'info' = 'info'): void {
  const el = byId('message');
  if (!text) {
    el.hidden = true;
    el.textContent = '';
    return;
  }
  el.hidden = false;
  el.className = `message ${kind}`;
  el.textContent = text;
}

function bind(name: string, value: string): void {
  for (const el of document.querySelectorAll(`[data-bind="${name}"]`)) el.textContent = value;
}

function readSettings(): Settings {
  const num = (id: string) => Number.parseFloat(byId<HTMLInputElement>(id).value);
  return {
    dModel: num('width'),
    numHeads: num('heads'),
    causal: byId<HTMLInputElement>('causal').checked,
    temperature: num('temperature'),
  };
}

// ---------------------------------------------------------------------------------------------
// The computation.

let weightsCache: { key: string; weights: ReturnType<typeof buildWeights> } | null = null;

async function recompute(): Promise<void> {
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
  if (dirty) return; // a newer input is waiting; don't draw this one
  // PyTorch's average_attn_weights, computed by qkv on the same handle: one extra run.
  const averagedRun = await run.attention.run({ query: input }, { returnWeights: 'averaged' });
  const averaged = averagedRun.weights as Tensor;
  if (dirty) return;
  view = {
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
  render();
  document.getElementById('steps')?.classList.remove('stale');
  document.body.dataset.status = 'ready';
  document.body.dataset.backend = run.backend;
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/** A results table (compare-all, long sequences): caption, one header row, body rows. */
function resultsTable(id: string, caption: string, headers: string[], rows: HTMLElement[]): HTMLElement {
  return h(
    'table',
    { class: 'results', id },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows),
  );
}

const MAX_WIDTH = () => Math.min(1100, document.documentElement.clientWidth - 64);

function captured(name: StepName): Tensor {
  const t = view?.run.result.captured[name];
  if (!t) throw new Error(`demo: step "${name}" was not captured`);
  return t;
}

function tokenMatrix(
  name: string,
  t: Tensor,
  labels: string[],
  what: string,
  opts: { colGroup?: number; maxWidth?: number; small?: boolean } = {},
): HTMLElement {
  const [rows, cols] = t.shape as [number, number];
  // Small multiples (one per head) keep rows tall enough to label while columns get narrow.
  const small = opts.small ? { rowHeight: 12, shortLegend: true } : {};
  return heatmap({
    ...small,
    name,
    rows,
    cols,
    data: t.data,
    rowLabels: labels,
    rowAxis: 'tokens',
    colAxis: `${what} columns`,
    palette: 'diverging',
    maxCell: 22,
    maxWidth: opts.maxWidth ?? MAX_WIDTH(),
    ...(opts.colGroup ? { colGroup: opts.colGroup } : {}),
    describe: (i, j, v) => `${name}[${labels[i]}, ${j}] = ${formatNumber(v)}`,
  });
}

function scoreGrid(
  name: string,
  t: Tensor,
  labels: string[],
  symbol: string,
  palette: 'diverging' | 'weights',
  maxWidth: number,
  compact = false,
): HTMLElement {
  const [L] = t.shape as [number];
  const sums = palette === 'weights' ? rowSums(t) : null;
  return heatmap({
    name,
    rows: L,
    cols: L,
    data: t.data,
    rowLabels: labels.map((l) => `${l} →`),
    colLabels: labels,
    rowAxis: 'query i (focus word)',
    colAxis: 'key j (other word)',
    palette,
    maxCell: compact ? 12 : 40,
    maxWidth,
    compact,
    ...(sums ? { rowNotes: sums.map((s) => `Σ ${s.toFixed(3)}`), rowNotesTitle: 'row sum' } : {}),
    describe: (i, j, v) => {
      const masked = v === Number.NEGATIVE_INFINITY ? ` — masked: “${labels[j]}” comes after “${labels[i]}”` : '';
      const pct = palette === 'weights' ? ` (${(v * 100).toFixed(1)}% of “${labels[i]}”'s attention)` : '';
      return `${symbol}[${labels[i]} → ${labels[j]}] = ${formatNumber(v, 4)}${pct}${masked}`;
    },
  });
}

/** "So “sat” sees “the”, “cat” and itself, but not “on”, “the”, …": the mask on one row. */
function maskExample(labels: readonly string[]): string {
  const i = Math.min(2, labels.length - 1);
  const quote = (l: string) => `“${l}”`;
  const earlier = labels.slice(0, i).map(quote);
  const later = labels.slice(i + 1, i + 4).map(quote);
  const sees = earlier.length ? `${earlier.join(', ')} and itself` : 'only itself';
  const hidden = later.length ? `, but not ${later.join(', ')}${labels.length > i + 4 ? ', …' : ''}` : '';
  return `So ${quote(labels[i] ?? '')} sees ${sees}${hidden}.`;
}

function headLabel(info: HeadInfo): string {
  return `head ${info.index + 1} — ${info.title}`;
}

function render(): void {
  if (!view) return;
  const { tokens, labels, settings, heads, weights } = view;
  const dk = headDim(settings);
  const head = state.head;
  const info = heads[head] as HeadInfo;
  const full = MAX_WIDTH();
  const half = Math.max(320, Math.floor((full - 32) / 2));

  bind('dModel', String(settings.dModel));
  bind('dk', String(dk));
  bind('sqrtDk', formatNumber(Math.sqrt(dk)));
  bind('numHeads', String(settings.numHeads));
  bind('shapeE', formatShape([tokens.length, settings.dModel], ['L', 'dModel']));
  bind(
    'temperatureNote',
    settings.temperature === 1
      ? ''
      : ` (and the temperature T = ${settings.temperature.toFixed(2)} divides once more: scaled_score = raw_score / (T·√dk))`,
  );

  // The head picker follows the number of heads.
  const select = byId<HTMLSelectElement>('head');
  if (select.options.length !== heads.length || select.dataset.key !== JSON.stringify(settings)) {
    fill(select, ...heads.map((hi) => h('option', { value: hi.index, text: headLabel(hi) })));
    select.dataset.key = JSON.stringify(settings);
  }
  select.value = String(head);

  // 1. Tokens, E, PE, E + PE
  fill(
    byId('tokens'),
    ...tokens.map((t, i) =>
      h('span', { class: 'token', title: `position ${i}` }, h('span', { class: 'token-pos' }, String(i)), t),
    ),
  );
  fill(byId('view-E'), tokenMatrix('E', captured('input'), labels, 'dModel'));
  fill(byId('view-PE'), tokenMatrix('PE', captured('positionalEncoding'), labels, 'dModel'));
  fill(byId('view-X'), tokenMatrix('E + PE', captured('x'), labels, 'dModel'));

  // 2. Q and K of the shown head
  const L = tokens.length;
  const q = slice2d(captured('q'), 0, L, head * dk, dk);
  const k = slice2d(captured('k'), 0, L, head * dk, dk);
  const v = slice2d(captured('v'), 0, L, head * dk, dk);
  const headNote = `${headLabel(info)}, [L=${L}, dk=${dk}]`;
  fill(
    byId('view-Q'),
    h('p', { class: 'caption' }, `Q, ${headNote}`),
    tokenMatrix('Q', q, labels, 'dk', { maxWidth: half }),
  );
  fill(
    byId('view-K'),
    h('p', { class: 'caption' }, `K, ${headNote}`),
    tokenMatrix('K', k, labels, 'dk', { maxWidth: half }),
  );
  fill(
    byId('head-explanation'),
    h('b', {}, `Why ${headLabel(info)} looks like this: `),
    info.explanation,
    info.warning ? h('span', { class: 'warning-inline' }, ` ${info.warning}`) : null,
  );

  // 3. Scores and scaled scores
  fill(byId('view-scores'), scoreGrid('scores', headGrid(captured('scores'), head), labels, 'Q·K', 'diverging', half));
  fill(
    byId('view-scaled'),
    scoreGrid('scaled', headGrid(captured('scaled'), head), labels, 'scaled', 'diverging', half),
  );

  // 4. Mask and softmax
  fill(
    byId('mask-direction'),
    settings.causal
      ? h(
          'span',
          {},
          h('b', {}, 'Causal mask on: a token attends only to itself and earlier tokens. '),
          'The note says “we set previous words’ entries of scaled_score into −inf”; seen from the focus word i, those are the entries of the words that come after it: every key j > i, the cells right of the diagonal. ',
          maskExample(labels),
        )
      : h(
          'span',
          {},
          h('b', {}, 'Causal mask off: '),
          'nothing is masked, so every token sees every token, before and after it (as in an encoder like BERT). Switch the mask on to hide the future.',
        ),
  );
  fill(
    byId('view-masked'),
    scoreGrid('masked', headGrid(captured('masked'), head), labels, 'masked', 'diverging', half),
  );
  const weightsGrid = headGrid(view.run.result.weights as Tensor, head);
  fill(byId('view-weights'), scoreGrid('weights', weightsGrid, labels, 'W_a', 'weights', half));
  fill(
    byId('all-heads'),
    ...heads.map((hi) => {
      const fig = h(
        'button',
        { type: 'button', class: `head-thumb${hi.index === head ? ' selected' : ''}`, 'data-head': hi.index },
        h('span', { class: 'head-title' }, headLabel(hi)),
        scoreGrid(
          `weights-head-${hi.index}`,
          headGrid(view?.run.result.weights as Tensor, hi.index),
          labels,
          `W_a(head ${hi.index + 1})`,
          'weights',
          180,
          true,
        ),
      );
      fig.addEventListener('click', () => selectHead(hi.index));
      return fig;
    }),
    h(
      'figure',
      { class: 'head-thumb average', 'data-testid': 'weights-averaged' },
      h('span', { class: 'head-title' }, `average of all ${heads.length} heads`),
      scoreGrid('weights-averaged', view.averaged, labels, 'mean_h W_a(h)', 'weights', 180, true),
      h('figcaption', { class: 'caption' }, "returnWeights: 'averaged' (PyTorch's average_attn_weights)"),
    ),
  );

  // 5. V, the head's ΔE, every head's share, E'
  fill(
    byId('view-V'),
    h('p', { class: 'caption' }, `V, ${headNote}`),
    tokenMatrix('V', v, labels, 'dk', { maxWidth: half }),
  );
  const headsOut = captured('heads');
  fill(
    byId('view-delta-head'),
    h('p', { class: 'caption' }, `Σ_j W_a[i, j] · V_j, ${headNote}`),
    tokenMatrix('ΔE(head)', slice2d(headsOut, 0, L, head * dk, dk), labels, 'dk', { maxWidth: half }),
  );
  const parts = headContributions(headsOut, weights.wo, settings.numHeads);
  // Three cards to a line (with the + and = signs between them).
  const partWidth = settings.numHeads === 1 ? half : Math.floor((full - 120) / 3) - 20;
  const cards: HTMLElement[] = [];
  parts.forEach((part, i) => {
    if (i > 0) cards.push(h('span', { class: 'op-sign' }, '+'));
    cards.push(
      h(
        'div',
        { class: `contribution${i === head ? ' selected' : ''}` },
        h('h4', {}, `ΔE(${i + 1}) · ${heads[i]?.title}`),
        tokenMatrix(`ΔE(${i + 1})`, part, labels, 'dModel', { maxWidth: partWidth, small: true }),
      ),
    );
  });
  cards.push(h('span', { class: 'op-sign' }, '='));
  cards.push(
    h(
      'div',
      { class: 'contribution sum' },
      h('h4', {}, `ΔE = ΔE(1) + … + ΔE(${settings.numHeads})`),
      tokenMatrix('ΔE', captured('attention'), labels, 'dModel', { maxWidth: partWidth, small: true }),
    ),
  );
  fill(byId('contributions'), ...cards);
  fill(byId('view-residual'), tokenMatrix("E'", captured('residual'), labels, 'dModel'));

  renderGraph();
  renderBackendStatus();
}

function selectHead(index: number): void {
  state.head = index;
  render();
}

// ---------------------------------------------------------------------------------------------
// The graph view.

function renderGraph(): void {
  if (!view) return;
  const L = view.tokens.length;
  const graph = view.run.attention.graph({ batch: 1, queryLength: L, keyLength: L });
  const node = graph.nodes.find((n) => n.name === state.graphNode) ?? (graph.nodes[0] as GraphNode);
  fill(
    byId('graph'),
    graphView(graph, node.name, (n) => {
      state.graphNode = n.name;
      renderGraph();
    }),
  );
  fill(byId('graph-detail'), ...graphDetail(node));
}

function graphDetail(node: GraphNode): (HTMLElement | string)[] {
  if (!view) return [];
  const { labels, settings, weights } = view;
  const dk = headDim(settings);
  const head = state.head;
  const out: (HTMLElement | string)[] = [
    h('h3', {}, h('code', {}, node.name), ` · ${node.op}`),
    h('p', { class: 'formula' }, node.doc),
    h(
      'p',
      {},
      'shape ',
      h('code', {}, formatShape(node.shape, node.dims)),
      node.inputs.some((i) => i) ? ` · from ${node.inputs.filter(Boolean).join(', ')}` : '',
    ),
  ];
  const width = Math.min(560, MAX_WIDTH() - 40);
  if (node.op === 'param') {
    const t = weights[node.name as 'wq' | 'wk' | 'wv' | 'wo'];
    if (t) {
      const [rows, cols] = t.shape as [number, number];
      out.push(
        heatmap({
          name: `graph:${node.name}`,
          rows,
          cols,
          data: t.data,
          rowAxis: node.dims[0] ?? 'rows',
          colAxis: node.dims[1] ?? 'columns',
          palette: 'diverging',
          maxCell: 12,
          maxWidth: width,
          ...(node.name !== 'wo' ? { colGroup: dk } : {}),
          describe: (i, j, v) => `${node.name}[${i}, ${j}] = ${formatNumber(v)}`,
        }),
      );
    }
    return out;
  }
  const t =
    view.run.result.captured[node.name as StepName] ?? (node.name === 'weights' ? view.run.result.weights : undefined);
  if (!t) {
    out.push(h('p', { class: 'note' }, 'This node is not captured on its own.'));
    return out;
  }
  if (t.shape.length === 3) {
    out.push(
      h(
        'p',
        { class: 'caption' },
        `showing ${node.dims.includes('H') ? `head ${head + 1}` : 'batch 0'} of ${formatShape(t.shape)}`,
      ),
    );
    out.push(
      scoreGrid(
        `graph:${node.name}`,
        headGrid(t, head),
        labels,
        node.name,
        node.name === 'weights' ? 'weights' : 'diverging',
        width,
      ),
    );
  } else {
    const cols = t.shape[1] as number;
    out.push(
      tokenMatrix(`graph:${node.name}`, t, labels, node.dims[node.dims.length - 1] ?? 'columns', {
        maxWidth: width,
        ...(cols === settings.numHeads * dk && cols !== settings.dModel ? { colGroup: dk } : {}),
      }),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Backends: picker, status, compare-all, long sequences.

function renderBackendPicker(): void {
  const list = byId('backend-list');
  fill(
    list,
    ...backendInfos.map((b) => {
      const input = h('input', {
        type: 'radio',
        name: 'backend',
        value: b.name,
        disabled: !b.available,
        checked: b.name === state.backend,
      });
      input.addEventListener('change', () => {
        if (input.checked) switchBackend(b.name);
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

function switchBackend(name: string): void {
  state.backend = name;
  const url = new URL(location.href);
  url.searchParams.set('backend', name);
  history.replaceState(null, '', url);
  schedule();
  learned?.setBackend(name);
}

function renderBackendStatus(): void {
  if (!view) return;
  const { run, diff } = view;
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

async function compareAll(): Promise<void> {
  const button = byId<HTMLButtonElement>('compare-all');
  const table = byId('compare-table');
  const settings = readSettings();
  const tokens = tokenize(state.text);
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
  const rows: HTMLElement[] = [];
  let reference: AttentionResult | null = null;
  const infos = [...backendInfos].sort((a, b) => Number(b.name === CPU) - Number(a.name === CPU));
  for (const b of infos) {
    if (!b.available) {
      rows.push(
        h(
          'tr',
          { class: 'unavailable', 'data-backend': b.name },
          h('td', {}, b.name),
          h('td', { colspan: 4 }, `unavailable: ${b.reason ?? ''}`),
        ),
      );
      continue;
    }
    fill(table, h('p', {}, `running ${b.name}…`));
    await yieldToBrowser();
    try {
      const { result, timing } = await engine.measure(b.name, config, weights, input, options, 5);
      if (b.name === CPU) reference = result;
      const diff = reference ? resultDiff(result, reference) : null;
      rows.push(
        h(
          'tr',
          { 'data-backend': b.name },
          h('td', {}, b.name),
          h('td', {}, formatMs(timing.firstMs)),
          h('td', {}, formatMs(timing.steadyMs)),
          h('td', {}, formatMs(timing.createMs)),
          h('td', { 'data-testid': 'diff' }, diff ? formatDiff(diff.max) : '—'),
        ),
      );
    } catch (e) {
      rows.push(
        h(
          'tr',
          { class: 'failed', 'data-backend': b.name },
          h('td', {}, b.name),
          h('td', { colspan: 4 }, `failed: ${e instanceof Error ? e.message : String(e)}`),
        ),
      );
    }
  }
  fill(
    table,
    resultsTable(
      'compare-results',
      `${tokens.length} tokens, dModel ${settings.dModel}, ${settings.numHeads} heads, every step captured; steady = median of 5 runs`,
      ['backend', 'first run', 'steady', 'createAttention', 'max |Δ| vs cpu'],
      rows,
    ),
  );
  button.disabled = false;
  document.body.dataset.compare = 'done';
}

async function runLong(): Promise<void> {
  if (busyLong) return;
  const settings = readSettings();
  const problem = validateSettings(settings);
  if (problem) {
    showMessage(problem, 'warning');
    return;
  }
  busyLong = true;
  document.body.dataset.long = 'running';
  const button = byId<HTMLButtonElement>('long-run');
  const progress = byId<HTMLProgressElement>('long-progress');
  const status = byId('long-status');
  button.disabled = true;
  const length = Number.parseInt(byId<HTMLSelectElement>('long-length').value, 10);
  const tokens = generateTokens(length);
  fill(byId('long-preview'), h('b', {}, 'Text: '), `${tokens.slice(0, 40).join(' ')} … (${length} tokens)`);
  const available = backendInfos
    .filter((b) => b.available)
    .sort((a, b) => Number(b.name === CPU) - Number(a.name === CPU));
  const steadyRuns = 2;
  // Progress counts runs: per backend one first run plus the steady ones.
  const total = available.length * (1 + steadyRuns);
  let done = 0;
  progress.hidden = false;
  progress.max = total;
  progress.value = 0;
  const rows: HTMLElement[] = [];
  let reference: AttentionResult | null = null;
  try {
    const weights = buildWeights(settings);
    const config = attentionConfig(settings);
    const input = embed(tokens, settings.dModel);
    for (const b of available) {
      let step = 0;
      const { result, timing } = await engine.measure(b.name, config, weights, input, {}, steadyRuns, async () => {
        if (step++ > 0) done++;
        progress.value = done;
        status.textContent = `${b.name}: run ${step} of ${1 + steadyRuns} (${done}/${total})`;
        await yieldToBrowser();
      });
      done++;
      progress.value = done;
      if (b.name === CPU) reference = result;
      const diff = reference ? resultDiff(result, reference) : null;
      rows.push(
        h(
          'tr',
          { 'data-backend': b.name },
          h('td', {}, b.name),
          h('td', {}, String(length)),
          h('td', {}, formatMs(timing.firstMs)),
          h('td', {}, formatMs(timing.steadyMs)),
          h('td', {}, `${Math.round(length / (timing.steadyMs / 1000)).toLocaleString('en-US')}`),
          h('td', {}, result.fused ? 'fused' : 'step by step'),
          h('td', { 'data-testid': 'diff' }, diff ? formatDiff(diff.max) : '—'),
        ),
      );
      fill(
        byId('long-table'),
        resultsTable(
          'long-results',
          `${length} generated tokens, dModel ${settings.dModel}, ${settings.numHeads} heads, causal ${settings.causal ? 'on' : 'off'}; steady = median of ${steadyRuns} runs`,
          ['backend', 'tokens', 'first run', 'steady', 'tokens / s', 'path', "max |Δ| vs cpu (E')"],
          rows,
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
    busyLong = false;
    document.body.dataset.long = 'done';
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function wireControls(): void {
  const sentence = byId<HTMLInputElement>('sentence');
  sentence.addEventListener('input', () => {
    state.text = sentence.value;
    scheduleSoon();
  });
  for (const id of ['heads', 'width', 'causal']) byId(id).addEventListener('change', schedule);
  for (const id of ['heads', 'width']) byId(id).addEventListener('input', scheduleSoon);
  const temperature = byId<HTMLInputElement>('temperature');
  temperature.addEventListener('input', () => {
    byId('temperature-value').textContent = Number.parseFloat(temperature.value).toFixed(2);
    schedule();
  });
  byId<HTMLSelectElement>('head').addEventListener('change', (ev) =>
    selectHead(Number.parseInt((ev.target as HTMLSelectElement).value, 10)),
  );
  byId('controls').addEventListener('submit', (ev) => ev.preventDefault());
  byId('compare-all').addEventListener('click', () => void compareAll());
  byId('long-run').addEventListener('click', () => void runLong());
}

/** A read-only inspection hook for the end-to-end test and for the curious (try it in devtools). */
function exposeHook(): void {
  const hook = {
    /** Resolves once no recompute is pending or running. */
    idle: async (): Promise<void> => {
      while (running || dirty || typingTimer) await new Promise((r) => setTimeout(r, 20));
    },
    heatmap: heatmapData,
    heatmaps: heatmapNames,
    backends: () => backendInfos.map((b) => ({ ...b })),
    state: () => ({ ...state, settings: { ...state.settings } }),
    diff: () => view?.diff ?? null,
    /** The learned-heads chapter: its scores and prediction, and a wait for its recompute. */
    learned: () => learned?.snapshot() ?? null,
    learnedIdle: async (): Promise<void> => learned?.idle(),
  };
  (globalThis as unknown as { qkvDemo: typeof hook }).qkvDemo = hook;
}

async function start(): Promise<void> {
  exposeHook();
  wireControls();
  backendInfos = await engine.backends();
  if (requestedBackend) {
    const info = backendInfos.find((b) => b.name === requestedBackend);
    if (info?.available) state.backend = info.name;
    else {
      const why = info
        ? `is unavailable: ${info.reason}`
        : `is not registered (registered: ${backendInfos.map((b) => b.name).join(', ')})`;
      showMessage(`The requested backend “${requestedBackend}” ${why}. Showing the cpu backend instead.`, 'warning');
    }
  }
  renderBackendPicker();
  learned = mountLearnedChapter(state.backend);
  const pendingMessage = byId('message').hidden ? null : byId('message').textContent;
  schedule();
  if (pendingMessage) {
    // The first recompute clears messages; keep the backend warning visible.
    await hookIdle();
    showMessage(pendingMessage, 'warning');
  }
}

async function hookIdle(): Promise<void> {
  while (running || dirty) await new Promise((r) => setTimeout(r, 20));
}

window.addEventListener('pagehide', () => {
  void engine.dispose();
  void learned?.dispose();
});
void start();
