import type { BackendInfo, Tensor } from 'qkv';
import { type BackendRun, CPU, Engine } from './engine';
import { type buildWeights, DEFAULT_SETTINGS, type HeadInfo, type Settings } from './model/model';
import { Scheduler } from './ui/scheduler';

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
    let updates = 0;
    this.scheduler = new Scheduler(() => recompute(this), onError, {
      onStart: () => {
        document.body.dataset.status = 'busy';
      },
      onEnd: () => {
        document.body.dataset.updates = String(++updates);
      },
    });
  }
}
