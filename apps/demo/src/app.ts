import type { BackendInfo, Tensor } from 'qkv';
import { type BackendRun, CPU, Engine } from './engine';
import { type buildWeights, DEFAULT_SETTINGS, type HeadInfo, type Settings } from './model/model';

/**
 * The page's state, in one object instead of module-level variables: what the controls say
 * (`state`), what the last finished recompute produced (`view`), the backends and the engine
 * that runs them, and the scheduler that keeps recomputes from overlapping.
 */

/** What the controls say. */
export interface State {
  text: string;
  settings: Settings;
  head: number;
  backend: string;
  graphNode: string;
}

/** One finished recompute: everything the chapters draw. */
export interface View {
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

export class App {
  readonly engine = new Engine();
  readonly state: State;
  view: View | null = null;
  backends: BackendInfo[] = [];
  /** The long-sequence mode is running. */
  busyLong = false;
  readonly scheduler: Scheduler;

  constructor(text: string, recompute: (app: App) => Promise<void>, onError: (e: unknown) => void) {
    this.state = { text, settings: { ...DEFAULT_SETTINGS }, head: 0, backend: CPU, graphNode: 'weights' };
    this.scheduler = new Scheduler(() => recompute(this), onError);
  }
}

/**
 * Latest input wins, runs never overlap: a change during a run marks the state dirty and one
 * more run follows, so the page always ends showing the latest input.
 */
export class Scheduler {
  running = false;
  dirty = false;
  #typingTimer: ReturnType<typeof setTimeout> | null = null;
  #updates = 0;
  readonly #run: () => Promise<void>;
  readonly #onError: (e: unknown) => void;

  constructor(run: () => Promise<void>, onError: (e: unknown) => void) {
    this.#run = run;
    this.#onError = onError;
  }

  schedule = (): void => {
    this.dirty = true;
    if (!this.running) void this.#loop();
  };

  /** After a pause in typing. */
  scheduleSoon = (): void => {
    if (this.#typingTimer) clearTimeout(this.#typingTimer);
    this.#typingTimer = setTimeout(() => {
      this.#typingTimer = null;
      this.schedule();
    }, 150);
  };

  /** Resolves once no recompute is pending or running (`withTyping`: nor a typing pause). */
  async idle(withTyping = true): Promise<void> {
    while (this.running || this.dirty || (withTyping && this.#typingTimer)) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async #loop(): Promise<void> {
    this.running = true;
    document.body.dataset.status = 'busy';
    try {
      while (this.dirty) {
        this.dirty = false;
        try {
          await this.#run();
        } catch (e) {
          this.#onError(e);
        }
      }
    } finally {
      this.running = false;
      this.#updates++;
      document.body.dataset.updates = String(this.#updates);
    }
  }
}
