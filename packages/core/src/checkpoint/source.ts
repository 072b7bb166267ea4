/**
 * `readSafetensors(source)`: bytes in memory, a file path (Node: only the header and the tensors
 * asked for are read from disk), or a URL / `Response` (fetched whole; tensors are still decoded
 * only when asked for).
 */
import { describeValue, QkvError } from '../errors.js';
import { type ByteSource, SafetensorsFile } from './safetensors.js';

export type SafetensorsSource = Uint8Array | ArrayBuffer | ArrayBufferView | string | URL | Response;

type NodeFs = typeof import('node:fs/promises');
type NodeUrl = typeof import('node:url');

/**
 * Imported by a computed name so that bundlers leave it alone: browser builds never reach it,
 * and a static import of a Node builtin would make them stub it or fail.
 */
function importNode<T>(name: string): Promise<T> {
  return import(/* @vite-ignore */ name) as Promise<T>;
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

function memorySource(bytes: Uint8Array, label: string): ByteSource {
  return { label, size: bytes.byteLength, read: async (begin, end) => bytes.subarray(begin, end) };
}

async function fileSource(path: string): Promise<ByteSource> {
  const fs = await importNode<NodeFs>('node:fs/promises');
  let size: number;
  try {
    const st = await fs.stat(path);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (e) {
    throw new QkvError('INVALID_CHECKPOINT', `${path}: cannot read the file: ${(e as Error).message}`, { cause: e });
  }
  // One open per read keeps no descriptor alive between reads, so nothing needs closing.
  return {
    label: path,
    size,
    read: async (begin, end) => {
      const out = new Uint8Array(end - begin);
      const fh = await fs.open(path, 'r');
      try {
        let done = 0;
        while (done < out.length) {
          const { bytesRead } = await fh.read(out, done, out.length - done, begin + done);
          if (bytesRead === 0) {
            throw new QkvError(
              'INVALID_CHECKPOINT',
              `${path}: the file ended at byte ${begin + done} while reading bytes ${begin} … ${end - 1} (it was ${size} bytes when opened: changed or truncated since)`,
            );
          }
          done += bytesRead;
        }
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}

async function responseSource(response: Response, label: string): Promise<ByteSource> {
  if (!response.ok) {
    throw new QkvError('INVALID_CHECKPOINT', `${label}: HTTP ${response.status} ${response.statusText}`.trimEnd());
  }
  return memorySource(new Uint8Array(await response.arrayBuffer()), label);
}

async function urlSource(url: string): Promise<ByteSource> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new QkvError('INVALID_CHECKPOINT', `${url}: fetch failed: ${(e as Error).message}`, { cause: e });
  }
  return responseSource(response, url);
}

function isResponse(v: unknown): v is Response {
  const R = (globalThis as { Response?: typeof Response }).Response;
  return R !== undefined && v instanceof R;
}

/**
 * Opens a safetensors file: checks its whole header and returns a `SafetensorsFile` whose
 * `tensor(name)` decodes F32, F16 and BF16 into float32 tensors on demand.
 *   - `Uint8Array` / `ArrayBuffer` / any `ArrayBufferView`: the bytes themselves (not copied).
 *   - a string: a file path in Node (`file:` URLs too), a URL elsewhere (`http(s):` everywhere).
 *   - a `URL` or a `Response`: fetched and read whole.
 */
export async function readSafetensors(source: SafetensorsSource): Promise<SafetensorsFile> {
  let bytes: ByteSource;
  if (source instanceof Uint8Array) bytes = memorySource(source, 'bytes');
  else if (source instanceof ArrayBuffer) bytes = memorySource(new Uint8Array(source), 'bytes');
  else if (ArrayBuffer.isView(source)) {
    bytes = memorySource(new Uint8Array(source.buffer, source.byteOffset, source.byteLength), 'bytes');
  } else if (isResponse(source)) bytes = await responseSource(source, source.url || 'response');
  else if (source instanceof URL || typeof source === 'string') {
    const text = source.toString();
    const remote = /^https?:/i.test(text);
    if (!remote && isNode()) {
      const isFileUrl = source instanceof URL || text.startsWith('file:');
      const url = isFileUrl ? await importNode<NodeUrl>('node:url') : null;
      bytes = await fileSource(url ? url.fileURLToPath(text) : text);
    } else {
      bytes = await urlSource(text);
    }
  } else {
    throw new QkvError(
      'INVALID_OPTION',
      `readSafetensors: expected a Uint8Array, ArrayBuffer, file path, URL or Response, got ${describeValue(source)}`,
    );
  }
  return SafetensorsFile.open(bytes);
}
