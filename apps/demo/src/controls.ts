import type { App } from './app';
import type { Settings } from './model/model';
import { byId } from './ui/dom';

/** The controls: reading them, the message line, data-bind text, and the event wiring. */

export function readSettings(): Settings {
  const num = (id: string) => Number.parseFloat(byId<HTMLInputElement>(id).value);
  return {
    dModel: num('width'),
    numHeads: num('heads'),
    causal: byId<HTMLInputElement>('causal').checked,
    temperature: num('temperature'),
  };
}

export function showMessage(text: string | null, kind: 'error' | 'warning' | 'info' = 'info'): void {
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

/** Sets the text of every `[data-bind=name]` element. */
export function bind(name: string, value: string): void {
  for (const el of document.querySelectorAll(`[data-bind="${name}"]`)) el.textContent = value;
}

export interface ControlActions {
  selectHead(index: number): void;
  compareAll(): Promise<void>;
  runLong(): Promise<void>;
}

export function wireControls(app: App, actions: ControlActions): void {
  const { schedule, scheduleSoon } = app.scheduler;
  const sentence = byId<HTMLInputElement>('sentence');
  sentence.addEventListener('input', () => {
    app.state.text = sentence.value;
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
    actions.selectHead(Number.parseInt((ev.target as HTMLSelectElement).value, 10)),
  );
  byId('controls').addEventListener('submit', (ev) => ev.preventDefault());
  byId('compare-all').addEventListener('click', () => void actions.compareAll());
  byId('long-run').addEventListener('click', () => void actions.runLong());
}
