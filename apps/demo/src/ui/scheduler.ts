/** What a scheduler's owner wants to know: a series of runs starts, and all of it has ended. */
export interface SchedulerHooks {
  onStart?(): void;
  onEnd?(): void;
}

/**
 * Latest input wins, runs never overlap: a change during a run marks the state dirty and one
 * more run follows, so the page always ends showing the latest input.
 */
export class Scheduler {
  running = false;
  dirty = false;
  #typingTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #run: () => Promise<void>;
  readonly #onError: (e: unknown) => void;
  readonly #hooks: SchedulerHooks;

  constructor(run: () => Promise<void>, onError: (e: unknown) => void, hooks: SchedulerHooks = {}) {
    this.#run = run;
    this.#onError = onError;
    this.#hooks = hooks;
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
    this.#hooks.onStart?.();
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
      this.#hooks.onEnd?.();
    }
  }
}
