import type { StepName, Tensor } from 'qkv';
import type { App } from './app';
import { renderBackendStatus } from './backends';
import { CHAPTERS, type ChapterContext } from './chapters/index';
import { bind } from './controls';
import { headLabel, MAX_WIDTH } from './figures';
import { renderGraph } from './graph-panel';
import { formatNumber, formatShape } from './model/format';
import { type HeadInfo, headDim } from './model/model';
import { byId, fill, h } from './ui/dom';

/** Draws the whole page from `app.view`: the shared bindings, the head picker, every chapter. */
export function render(app: App): void {
  const view = app.view;
  if (!view) return;
  const { tokens, settings, heads } = view;
  const dk = headDim(settings);
  const head = app.state.head;
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

  const ctx: ChapterContext = {
    view,
    head,
    info: heads[head] as HeadInfo,
    dk,
    full,
    half,
    captured: (name: StepName): Tensor => {
      const t = view.run.result.captured[name];
      if (!t) throw new Error(`demo: step "${name}" was not captured`);
      return t;
    },
    selectHead: (index) => selectHead(app, index),
  };
  for (const chapter of CHAPTERS) chapter.render(ctx);

  renderGraph(app);
  renderBackendStatus(app);
}

export function selectHead(app: App, index: number): void {
  app.state.head = index;
  render(app);
}
