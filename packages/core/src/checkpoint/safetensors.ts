/**
 * The safetensors format (huggingface/safetensors):
 *
 *   8 bytes   N, little-endian u64: the header length
 *   N bytes   UTF-8 JSON: { name: { dtype, shape, data_offsets: [begin, end) }, __metadata__? }
 *   rest      tensor data; offsets are relative to its first byte
 *
 * The header is parsed and checked whole when a file is opened (every offset against the data's
 * length and against shape × dtype), so a bad file is refused before any tensor is used and no
 * read can fall outside the bytes. Tensor data is decoded only when asked for.
 */
import { describeValue, QkvError } from '../errors.js';
import { formatShape, type Tensor } from '../tensor.js';
import {
  DECODED_DTYPES,
  decodeFloats,
  isDecodedDtype,
  isSafetensorsDtype,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDtype,
} from './dtype.js';

/** Where a file's bytes come from: memory, or a file read piece by piece. */
export interface ByteSource {
  /** What to call the file in messages (a path, a URL, or "bytes"). */
  readonly label: string;
  readonly size: number;
  /** Bytes [begin, end); the caller keeps 0 ≤ begin ≤ end ≤ size. */
  read(begin: number, end: number): Promise<Uint8Array>;
}

export interface SafetensorsEntry {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Byte offsets into the data section, end exclusive. */
  readonly dataOffsets: readonly [number, number];
}

/** The reference implementation's cap on the header (100 MB); anything bigger is not a header. */
const MAX_HEADER_BYTES = 100_000_000;

function bad(label: string, what: string): QkvError {
  return new QkvError('INVALID_CHECKPOINT', `${label}: ${what}`);
}

function parseEntry(label: string, name: string, raw: unknown, dataLength: number): SafetensorsEntry {
  const where = `${label}: tensor "${name}"`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new QkvError(
      'INVALID_CHECKPOINT',
      `${where}: expected { dtype, shape, data_offsets } in the header, got ${describeValue(raw)}`,
    );
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isSafetensorsDtype(dtype)) {
    throw new QkvError(
      'INVALID_CHECKPOINT',
      `${where}: unknown dtype ${describeValue(dtype)}; safetensors dtypes are ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')}`,
    );
  }
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)) {
    throw new QkvError(
      'INVALID_CHECKPOINT',
      `${where}: shape: expected an array of non-negative integers, got ${describeValue(shape)}`,
    );
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    offsets.some((o) => typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0)
  ) {
    throw new QkvError(
      'INVALID_CHECKPOINT',
      `${where}: data_offsets: expected [begin, end] byte offsets, got ${describeValue(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataLength) {
    throw new QkvError(
      'INVALID_CHECKPOINT',
      `${where}: data_offsets [${begin}, ${end}] lie outside the data section of ${dataLength} bytes${end > dataLength ? ' (is the file truncated?)' : ''}`,
    );
  }
  let count = 1;
  for (const d of shape as number[]) count *= d;
  const width = SAFETENSORS_DTYPE_BYTES[dtype];
  if (end - begin !== count * width) {
    throw new QkvError(
      'INVALID_CHECKPOINT',
      `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape ${formatShape(shape as number[])} of ${dtype} needs ${count} × ${width} = ${count * width}`,
    );
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [begin, end] };
}

/** A parsed safetensors file: every tensor's dtype and shape now, its values when asked for. */
export class SafetensorsFile {
  /** The source's label: a path, a URL or "bytes". */
  readonly label: string;
  /** The header's `__metadata__` (string → string), `{}` when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  readonly #entries: ReadonlyMap<string, SafetensorsEntry>;
  readonly #source: ByteSource;
  readonly #dataStart: number;

  private constructor(
    source: ByteSource,
    dataStart: number,
    entries: Map<string, SafetensorsEntry>,
    metadata: Record<string, string>,
  ) {
    this.label = source.label;
    this.#source = source;
    this.#dataStart = dataStart;
    this.#entries = entries;
    this.metadata = metadata;
  }

  /** Reads and checks the header; no tensor data is read. */
  static async open(source: ByteSource): Promise<SafetensorsFile> {
    const { label, size } = source;
    if (size < 8) {
      throw bad(label, `truncated: ${size} bytes, but a safetensors file starts with an 8-byte header length`);
    }
    const head = await source.read(0, 8);
    const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(size - 8)) {
      throw bad(label, `header length ${n} runs past the end of the file (${size - 8} bytes after the length)`);
    }
    const headerLength = Number(n);
    if (headerLength > MAX_HEADER_BYTES) {
      throw bad(label, `header length ${headerLength} is over the format's limit of ${MAX_HEADER_BYTES} bytes`);
    }
    const headerBytes = await source.read(8, 8 + headerLength);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (e) {
      throw new QkvError(
        'INVALID_CHECKPOINT',
        `${label}: header (bytes 8 … ${8 + headerLength - 1}) is not UTF-8 JSON: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
      throw bad(label, `header: expected a JSON object of tensors, got ${describeValue(header)}`);
    }
    const dataStart = 8 + headerLength;
    const dataLength = size - dataStart;
    const entries = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = parseMetadata(label, raw);
        continue;
      }
      entries.set(name, parseEntry(label, name, raw, dataLength));
    }
    checkOverlaps(label, entries);
    return new SafetensorsFile(source, dataStart, entries, metadata);
  }

  /** Tensor names in header order. */
  get names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Each tensor's stored dtype, by name. */
  get dtypes(): Record<string, SafetensorsDtype> {
    return Object.fromEntries([...this.#entries].map(([k, e]) => [k, e.dtype]));
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** Dtype, shape and offsets of a tensor, without reading it; throws INVALID_CHECKPOINT if absent. */
  entry(name: string): SafetensorsEntry {
    const e = this.#entries.get(name);
    if (!e) {
      throw new QkvError(
        'INVALID_CHECKPOINT',
        `${this.label}: no tensor "${name}"; the file has ${this.#entries.size} tensors${this.#entries.size ? ` (${this.names.slice(0, 6).join(', ')}${this.#entries.size > 6 ? ', …' : ''})` : ''}`,
      );
    }
    return e;
  }

  /** Reads and decodes one tensor into float32 (F32, F16 and BF16; other dtypes are refused). */
  async tensor(name: string): Promise<Tensor> {
    const e = this.entry(name);
    if (!isDecodedDtype(e.dtype)) {
      throw new QkvError(
        'INVALID_CHECKPOINT',
        `${this.label}: tensor "${name}" is ${e.dtype}; qkv decodes only ${DECODED_DTYPES.join(', ')} into float32 tensors`,
      );
    }
    if (e.shape.some((d) => d === 0)) {
      throw new QkvError(
        'INVALID_CHECKPOINT',
        `${this.label}: tensor "${name}" is empty (shape ${formatShape(e.shape)}); qkv tensors have positive dimensions`,
      );
    }
    const [begin, end] = e.dataOffsets;
    const bytes = await this.#source.read(this.#dataStart + begin, this.#dataStart + end);
    const count = (end - begin) / SAFETENSORS_DTYPE_BYTES[e.dtype];
    // A scalar (shape []) becomes [1]: qkv tensors have at least one dimension.
    return { shape: e.shape.length ? [...e.shape] : [1], data: decodeFloats(bytes, e.dtype, count) };
  }
}

function parseMetadata(label: string, raw: unknown): Record<string, string> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw bad(label, `__metadata__: expected an object of strings, got ${describeValue(raw)}`);
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw bad(label, `__metadata__.${k}: expected a string, got ${describeValue(v)}`);
  }
  return { ...(raw as Record<string, string>) };
}

/** Two tensors may not share bytes (the format forbids it; a writer bug or a forged file). */
function checkOverlaps(label: string, entries: ReadonlyMap<string, SafetensorsEntry>): void {
  const spans = [...entries]
    .filter(([, e]) => e.dataOffsets[1] > e.dataOffsets[0])
    .sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  for (let i = 1; i < spans.length; i++) {
    const [prevName, prev] = spans[i - 1] as [string, SafetensorsEntry];
    const [name, cur] = spans[i] as [string, SafetensorsEntry];
    if (cur.dataOffsets[0] < prev.dataOffsets[1]) {
      throw bad(
        label,
        `tensor "${name}": data_offsets [${cur.dataOffsets.join(', ')}] overlap those of "${prevName}" [${prev.dataOffsets.join(', ')}]`,
      );
    }
  }
}
