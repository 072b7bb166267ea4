/**
 * What every checkpoint format's mapping shares: reading the framework's config fields, finding
 * the attention module's tensors under a prefix, checking their shapes, and turning PyTorch's
 * `[out, in]` weights into qkv's row-vector `[in, out]`.
 */

import type { AttentionConfig } from '../config.js';
import { describeValue, QkvError } from '../errors.js';
import type { AttentionWeights } from '../inputs.js';
import { formatShape, type Tensor } from '../tensor.js';
import type { SafetensorsFile } from './safetensors.js';

export const CHECKPOINT_FORMATS = ['torch-mha', 'gpt2', 'bert', 'llama'] as const;
export type CheckpointFormat = (typeof CHECKPOINT_FORMATS)[number];

export interface CheckpointOptions {
  /** Which framework module the tensors come from. */
  format: CheckpointFormat;
  /** The attention module's state-dict key prefix, e.g. 'h.0.attn.' ('' when the file is the module). */
  prefix?: string;
  /** The framework's own config object (its field names: n_embd, hidden_size, embed_dim, …). */
  config: Readonly<Record<string, unknown>>;
}

export interface CheckpointAttention {
  config: AttentionConfig;
  weights: AttentionWeights;
}

/** One format's view of a file: tensors by key relative to the prefix, config fields by name. */
export class ModuleReader {
  readonly format: CheckpointFormat;
  readonly prefix: string;
  readonly #file: SafetensorsFile;
  readonly #config: Readonly<Record<string, unknown>>;

  constructor(file: SafetensorsFile, options: CheckpointOptions) {
    this.#file = file;
    this.format = options.format;
    this.prefix = options.prefix ?? '';
    this.#config = options.config;
  }

  has(key: string): boolean {
    return this.#file.has(this.prefix + key);
  }

  /**
   * The tensor `prefix + key`, whose shape must be `shape` (`meaning` says it in the config's
   * terms). A missing key names what was looked for and which similar keys the file has.
   */
  async tensor(key: string, shape: readonly number[], meaning: string): Promise<Tensor> {
    const name = this.prefix + key;
    if (!this.#file.has(name)) throw this.#missing(name, key);
    const stored = this.#file.entry(name).shape;
    if (stored.length !== shape.length || stored.some((d, i) => d !== shape[i])) {
      throw new QkvError(
        'INVALID_CHECKPOINT',
        `${this.#file.label}: tensor "${name}": expected ${formatShape(shape)} (${meaning}) from the ${this.format} config, got ${formatShape(stored)}`,
      );
    }
    return this.#file.tensor(name);
  }

  #missing(name: string, key: string): QkvError {
    const names = this.#file.names;
    const underPrefix = names.filter((n) => n.startsWith(this.prefix));
    const elsewhere = names.filter((n) => n.endsWith(key)).map((n) => `"${n.slice(0, n.length - key.length)}"`);
    const hint =
      underPrefix.length === 0
        ? `no tensor starts with prefix "${this.prefix}"${elsewhere.length ? `; "${key}" is found under prefix ${elsewhere.slice(0, 4).join(', ')}` : ''}`
        : `under that prefix the file has ${underPrefix
            .slice(0, 8)
            .map((n) => `"${n.slice(this.prefix.length)}"`)
            .join(', ')}${underPrefix.length > 8 ? ', …' : ''}`;
    return new QkvError(
      'INVALID_CHECKPOINT',
      `${this.#file.label}: no tensor "${name}" (format ${this.format}, prefix "${this.prefix}", key "${key}"); ${hint}`,
    );
  }

  #field(name: string): unknown {
    return this.#config[name];
  }

  #invalid(name: string, expected: string): QkvError {
    return new QkvError(
      'INVALID_CONFIG',
      `fromCheckpoint ${this.format} config.${name}: expected ${expected}, got ${describeValue(this.#field(name))}`,
    );
  }

  /** A positive integer field; the first name given that is present (frameworks alias some). */
  int(...names: string[]): number {
    const name = names.find((n) => this.#field(n) !== undefined && this.#field(n) !== null) ?? (names[0] as string);
    const v = this.#field(name);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw this.#invalid(name, 'a positive integer');
    return v;
  }

  optionalInt(name: string): number | undefined {
    const v = this.#field(name);
    return v === undefined || v === null ? undefined : this.int(name);
  }

  optionalNumber(name: string, dflt: number): number {
    const v = this.#field(name);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.#invalid(name, 'a finite number');
    return v;
  }

  optionalBool(name: string, dflt: boolean): boolean {
    const v = this.#field(name);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw this.#invalid(name, 'true or false');
    return v;
  }

  optionalString(name: string): string | undefined {
    const v = this.#field(name);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw this.#invalid(name, 'a string');
    return v;
  }

  /** Refuses a framework option qkv does not implement, naming it (never silently ignored). */
  refuse(name: string, why: string): never {
    throw new QkvError(
      'CAPABILITY',
      `fromCheckpoint ${this.format} config.${name} = ${JSON.stringify(this.#field(name))}: ${why}`,
    );
  }

  raw(name: string): unknown {
    return this.#field(name);
  }
}

/** [rows, cols] → [cols, rows]: nn.Linear's [out, in] into qkv's row-vector [in, out]. */
export function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c] as number;
  }
  return { shape: [cols, rows], data: out };
}

/** Rows begin … end−1 of a [rows, cols] matrix (or elements of a vector). */
export function rowBlock(t: Tensor, begin: number, end: number): Tensor {
  const cols = t.shape.length === 2 ? (t.shape[1] as number) : 1;
  const data = t.data.slice(begin * cols, end * cols);
  return { shape: t.shape.length === 2 ? [end - begin, cols] : [end - begin], data };
}

/** Columns begin … end−1 of a [rows, cols] matrix. */
export function columnBlock(t: Tensor, begin: number, end: number): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const width = end - begin;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(t.data.subarray(r * cols + begin, r * cols + end), r * width);
  return { shape: [rows, width], data: out };
}

/**
 * `bias` for a config from the biases a module has: true (all four), false (none) or the list
 * of those present (absent = zero, e.g. Qwen2's q/k/v without o).
 */
export function biasOption(present: Readonly<Record<'bq' | 'bk' | 'bv' | 'bo', boolean>>): AttentionConfig['bias'] {
  const names = (['bq', 'bk', 'bv', 'bo'] as const).filter((n) => present[n]);
  if (names.length === 4) return true;
  if (names.length === 0) return false;
  return names;
}
