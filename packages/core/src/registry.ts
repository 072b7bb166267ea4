import type { Availability, Backend, BackendCreateOptions, BackendFactory, SupportsFn } from './backend.js';
import { FEATURE_OPTIONS, type ResolvedConfig, requiredFeatures } from './config.js';
import { describeValue, QkvError } from './errors.js';

/**
 * Whether `target` (a factory or a created backend) can run `config`: true, or why not, naming
 * the options. Without `supports` a backend runs only configs that need no optional feature,
 * so nothing runs silently wrong on a backend that would ignore a new attr.
 */
export function checkSupport(
  target: { readonly name: string; readonly supports?: SupportsFn | undefined },
  config: ResolvedConfig,
): true | string {
  const features = requiredFeatures(config);
  const names = features.map((f) => FEATURE_OPTIONS[f]).join(', ');
  if (target.supports === undefined) {
    return features.length === 0
      ? true
      : `backend "${target.name}" does not support ${names} (it declares no supports(), so it runs only the base features)`;
  }
  let answer: true | string;
  try {
    answer = target.supports(config);
  } catch (e) {
    answer = `supports() threw: ${errorText(e)}`;
  }
  if (answer !== true) {
    return `backend "${target.name}" does not support ${names || 'this config'}: ${typeof answer === 'string' && answer !== '' ? answer : describeValue(answer)}`;
  }
  return true;
}

/**
 * The created backend's side of `checkSupport`: its own `supports()` if it has one (what only a
 * live context knows), and the kernels the features run on. `name` is the factory's.
 */
function checkCreated(name: string, backend: Backend, config: ResolvedConfig): true | string {
  if (backend.supports !== undefined) {
    const ok = checkSupport({ name, supports: (c) => (backend.supports as SupportsFn)(c) }, config);
    if (ok !== true) return ok;
  }
  if (requiredFeatures(config).includes('rotary') && typeof backend.kernels.rotary !== 'function') {
    return `backend "${name}" says it supports ${FEATURE_OPTIONS.rotary} but has no kernels.rotary`;
  }
  return true;
}

export interface BackendInfo {
  readonly name: string;
  readonly priority: number;
  readonly available: boolean;
  /** Why it is unavailable (absent when available). */
  readonly reason?: string;
  readonly description?: string;
}

export interface SkippedBackend {
  readonly name: string;
  readonly reason: string;
}

/** Which backend runs a handle and why: never a silent choice. */
export interface Selection {
  readonly backend: string;
  readonly requested: string;
  readonly reason: string;
  /** Which build of its kernels the backend runs, where it has several (`Backend.kernelBuild`). */
  readonly kernelBuild?: string;
  /** Every other registered backend and why it does not run this handle. */
  readonly skipped: readonly SkippedBackend[];
}

/** `{ kernelBuild }` when the backend reports one, else nothing (the field stays absent). */
function buildOf(backend: Backend): { kernelBuild?: string } {
  return backend.kernelBuild === undefined ? {} : { kernelBuild: backend.kernelBuild };
}

/**
 * Backends by name. `auto` tries them from the highest priority down and takes the first that is
 * available and initialises; an explicit name must exist and be available, or the error lists
 * every registered backend with its availability.
 */
export class BackendRegistry {
  readonly #factories = new Map<string, BackendFactory>();
  readonly #probes = new Map<string, Promise<Availability>>();

  register(factory: BackendFactory): this {
    if (!factory || typeof factory.name !== 'string' || factory.name === '' || factory.name === 'auto') {
      throw new QkvError(
        'INVALID_OPTION',
        `register: expected a factory with a name other than "auto", got ${describeValue(factory)}`,
      );
    }
    if (typeof factory.priority !== 'number' || !Number.isFinite(factory.priority)) {
      throw new QkvError(
        'INVALID_OPTION',
        `register(${factory.name}): priority must be a finite number, got ${describeValue(factory.priority)}`,
      );
    }
    if (typeof factory.isAvailable !== 'function' || typeof factory.create !== 'function') {
      throw new QkvError('INVALID_OPTION', `register(${factory.name}): a factory needs isAvailable() and create()`);
    }
    this.#factories.set(factory.name, factory);
    this.#probes.delete(factory.name);
    return this;
  }

  unregister(name: string): boolean {
    this.#probes.delete(name);
    return this.#factories.delete(name);
  }

  has(name: string): boolean {
    return this.#factories.has(name);
  }

  get(name: string): BackendFactory | undefined {
    return this.#factories.get(name);
  }

  /** Registered names, highest priority first. */
  names(): string[] {
    return this.#sorted().map((f) => f.name);
  }

  #sorted(): BackendFactory[] {
    return [...this.#factories.values()].sort((a, b) => b.priority - a.priority);
  }

  /** Probes once per factory and remembers the answer; a probe that throws counts as unavailable. */
  availability(name: string): Promise<Availability> {
    const factory = this.#factories.get(name);
    if (!factory) return Promise.resolve({ available: false, reason: 'not registered' });
    let p = this.#probes.get(name);
    if (!p) {
      p = Promise.resolve()
        .then(() => factory.isAvailable())
        .catch(
          (e: unknown): Availability => ({
            available: false,
            reason: `probe failed: ${errorText(e)}`,
          }),
        );
      this.#probes.set(name, p);
    }
    return p;
  }

  async list(): Promise<BackendInfo[]> {
    return Promise.all(
      this.#sorted().map(async (f) => {
        const a = await this.availability(f.name);
        const info: BackendInfo = {
          name: f.name,
          priority: f.priority,
          available: a.available,
          ...(a.available ? {} : { reason: a.reason }),
          ...(f.description ? { description: f.description } : {}),
        };
        return info;
      }),
    );
  }

  async #describeAll(): Promise<string> {
    const infos = await this.list();
    if (infos.length === 0) return 'no backends are registered';
    return infos.map((i) => `${i.name} (${i.available ? 'available' : `unavailable: ${i.reason}`})`).join('; ');
  }

  /**
   * Picks and creates a backend. With `config`, only a backend that `supports` it is taken:
   * `auto` skips the others (saying why in `selection.skipped`), an explicit name throws
   * CAPABILITY naming the feature.
   */
  async create(
    requested: string,
    options?: BackendCreateOptions,
    config?: ResolvedConfig,
  ): Promise<{ backend: Backend; selection: Selection }> {
    if (typeof requested !== 'string' || requested === '') {
      throw new QkvError(
        'INVALID_OPTION',
        `options.backend: expected a backend name or "auto", got ${describeValue(requested)}`,
      );
    }
    if (requested !== 'auto') {
      const factory = this.#factories.get(requested);
      if (!factory) {
        throw new QkvError(
          'BACKEND_UNKNOWN',
          `options.backend: "${requested}" is not registered; registered: ${await this.#describeAll()}`,
        );
      }
      const a = await this.availability(requested);
      if (!a.available) {
        throw new QkvError(
          'BACKEND_UNAVAILABLE',
          `options.backend: "${requested}" is unavailable: ${a.reason}; registered: ${await this.#describeAll()}`,
        );
      }
      if (config) {
        const ok = checkSupport(factory, config);
        if (ok !== true) throw new QkvError('CAPABILITY', `options.backend: ${ok}`);
      }
      const backend = await createOrWrap(factory, options);
      if (config) {
        const ok = checkCreated(requested, backend, config);
        if (ok !== true) {
          await backend.destroy();
          throw new QkvError('CAPABILITY', `options.backend: ${ok}`);
        }
      }
      const skipped: SkippedBackend[] = [];
      for (const f of this.#sorted()) {
        if (f.name !== requested) skipped.push({ name: f.name, reason: `not requested (backend: "${requested}")` });
      }
      return {
        backend,
        selection: { backend: requested, requested, reason: 'requested by name', ...buildOf(backend), skipped },
      };
    }
    const skipped: SkippedBackend[] = [];
    const sorted = this.#sorted();
    assertSomeBackendTakes(sorted, options);
    for (let i = 0; i < sorted.length; i++) {
      const f = sorted[i] as BackendFactory;
      const a = await this.availability(f.name);
      if (!a.available) {
        skipped.push({ name: f.name, reason: `unavailable: ${a.reason}` });
        continue;
      }
      const factoryOk = config ? checkSupport(f, config) : true;
      if (factoryOk !== true) {
        skipped.push({ name: f.name, reason: `cannot run this config: ${factoryOk}` });
        continue;
      }
      let backend: Backend;
      try {
        backend = await f.create(ownOptions(f, options));
      } catch (e) {
        skipped.push({ name: f.name, reason: `failed to initialise: ${errorText(e)}` });
        continue;
      }
      const backendOk = config ? checkCreated(f.name, backend, config) : true;
      if (backendOk !== true) {
        await backend.destroy();
        skipped.push({ name: f.name, reason: `cannot run this config: ${backendOk}` });
        continue;
      }
      for (const rest of sorted.slice(i + 1)) {
        skipped.push({
          name: rest.name,
          reason: `lower priority (${rest.priority}) than ${f.name} (${f.priority})`,
        });
      }
      const reason =
        skipped.length === 0 || i === 0
          ? `highest-priority available backend (priority ${f.priority})`
          : `first available backend by priority (${f.priority}) after skipping ${skipped
              .slice(0, i)
              .map((s) => s.name)
              .join(', ')}`;
      return { backend, selection: { backend: f.name, requested, reason, ...buildOf(backend), skipped } };
    }
    const refused = skipped.filter((s) => s.reason.startsWith('cannot run this config'));
    if (refused.length > 0 && config) {
      throw new QkvError(
        'CAPABILITY',
        `options.backend: "auto" found no backend that runs this config: ${skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`,
      );
    }
    throw new QkvError(
      'BACKEND_UNAVAILABLE',
      `options.backend: "auto" found no usable backend; registered: ${await this.#describeAll()}`,
    );
  }
}

/**
 * Under `auto`: the part of `backendOptions` that `factory` reads (all of it when it does not
 * declare `optionKeys`), undefined when that is nothing: one options object may hold every
 * candidate's. A backend asked for by name gets the whole object and refuses what it does not know.
 */
function ownOptions(factory: BackendFactory, options?: BackendCreateOptions): BackendCreateOptions | undefined {
  if (options === undefined || options === null || typeof options !== 'object' || !factory.optionKeys) return options;
  const keys = factory.optionKeys;
  const own = Object.fromEntries(Object.entries(options).filter(([k]) => keys.includes(k)));
  return Object.keys(own).length > 0 ? own : undefined;
}

/**
 * Under `auto`, a `backendOptions` key that no candidate reads is a typo, refused rather than
 * dropped (when every candidate declares its keys; one that does not may read anything).
 */
function assertSomeBackendTakes(factories: readonly BackendFactory[], options?: BackendCreateOptions): void {
  if (options === undefined || options === null || typeof options !== 'object') return;
  if (factories.some((f) => !f.optionKeys)) return;
  const known = new Set(factories.flatMap((f) => f.optionKeys ?? []));
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue;
    throw new QkvError(
      'UNKNOWN_OPTION',
      `backendOptions.${key}: no registered backend takes this option; known: ${[...known].sort().join(', ') || 'none'}`,
    );
  }
}

async function createOrWrap(factory: BackendFactory, options?: BackendCreateOptions): Promise<Backend> {
  try {
    return await factory.create(options);
  } catch (e) {
    if (e instanceof QkvError) throw e;
    throw new QkvError('BACKEND_FAILED', `backend "${factory.name}" failed to initialise: ${errorText(e)}`, {
      cause: e,
    });
  }
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
