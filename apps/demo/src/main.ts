import './style.css';
import { App } from './app';
import { compareAll, renderBackendPicker, runLong } from './backends';
import { recompute } from './compute';
import { showMessage, wireControls } from './controls';
import { type LearnedChapter, mountLearnedChapter } from './learned/chapter';
import { selectHead } from './render';
import { byId } from './ui/dom';
import { heatmapData, heatmapNames } from './ui/heatmap';

/**
 * The page: controls → one recompute on the chosen backend (plus the CPU reference) → every
 * chapter redrawn from the captured tensors (compute.ts, render.ts, chapters/). This file only
 * starts it: the state object, the wiring, the backend list and the inspection hook, and mounts
 * the learned-heads chapter (learned/), which runs its own trained model and follows the backend
 * picker by itself.
 */

const app = new App((byId<HTMLInputElement>('sentence').value || '').trim(), recompute, (e) => {
  showMessage(`Something went wrong: ${e instanceof Error ? e.message : String(e)}`, 'error');
  document.body.dataset.status = 'error';
});
let learned: LearnedChapter | null = null;

/** A read-only inspection hook for the end-to-end test and for the curious (try it in devtools). */
function exposeHook(): void {
  const hook = {
    /** Resolves once no recompute is pending or running. */
    idle: (): Promise<void> => app.scheduler.idle(),
    heatmap: heatmapData,
    heatmaps: heatmapNames,
    backends: () => app.backends.map((b) => ({ ...b })),
    state: () => ({ ...app.state, settings: { ...app.state.settings } }),
    diff: () => app.view?.diff ?? null,
    /** The learned-heads chapter: its scores and prediction, and a wait for its recompute. */
    learned: () => learned?.snapshot() ?? null,
    learnedIdle: async (): Promise<void> => learned?.idle(),
  };
  (globalThis as unknown as { qkvDemo: typeof hook }).qkvDemo = hook;
}

async function start(): Promise<void> {
  exposeHook();
  wireControls(app, {
    selectHead: (index) => selectHead(app, index),
    compareAll: () => compareAll(app),
    runLong: () => runLong(app),
  });
  app.backends = await app.engine.backends();
  const requestedBackend = new URLSearchParams(location.search).get('backend');
  if (requestedBackend) {
    const info = app.backends.find((b) => b.name === requestedBackend);
    if (info?.available) app.state.backend = info.name;
    else {
      const why = info
        ? `is unavailable: ${info.reason}`
        : `is not registered (registered: ${app.backends.map((b) => b.name).join(', ')})`;
      showMessage(`The requested backend “${requestedBackend}” ${why}. Showing the cpu backend instead.`, 'warning');
    }
  }
  renderBackendPicker(app, (name) => learned?.setBackend(name));
  learned = mountLearnedChapter(app.state.backend);
  const pendingMessage = byId('message').hidden ? null : byId('message').textContent;
  app.scheduler.schedule();
  if (pendingMessage) {
    // The first recompute clears messages; keep the backend warning visible.
    await app.scheduler.idle(false);
    showMessage(pendingMessage, 'warning');
  }
}

window.addEventListener('pagehide', () => {
  void app.engine.dispose();
  void learned?.dispose();
});
void start();
