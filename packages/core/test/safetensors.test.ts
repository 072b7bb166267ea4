import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ByteSource, isQkvError, readSafetensors, SafetensorsFile } from '../src/index.js';
import { writeSafetensors } from './safetensors-writer.js';

const sample = () =>
  writeSafetensors(
    {
      'a.weight': { dtype: 'F32', shape: [2, 3], data: [1, -2, 3.5, 0.25, -0, 1e-3] },
      'a.half': { dtype: 'F16', shape: [4], data: [1, -2.5, 65504, 2 ** -24] },
      'a.bf16': { dtype: 'BF16', shape: [3], data: [1, -3, 0.5] },
      'a.ids': { dtype: 'I64', shape: [2], data: [0, 7] },
    },
    { metadata: { format: 'pt' } },
  );

async function refused(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').not.toBeNull();
  if (!isQkvError(e, 'INVALID_CHECKPOINT')) throw e;
  expect(e.message).toMatch(pattern);
}

describe('readSafetensors', () => {
  it('decodes F32, F16 and BF16 into float32, with dtypes, shapes and __metadata__', async () => {
    const f = await readSafetensors(sample());
    expect(f.names).toEqual(['a.weight', 'a.half', 'a.bf16', 'a.ids']);
    expect(f.dtypes).toEqual({ 'a.weight': 'F32', 'a.half': 'F16', 'a.bf16': 'BF16', 'a.ids': 'I64' });
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.entry('a.weight').shape).toEqual([2, 3]);
    const w = await f.tensor('a.weight');
    expect(w.shape).toEqual([2, 3]);
    expect([...w.data]).toEqual([...Float32Array.from([1, -2, 3.5, 0.25, -0, 1e-3])]);
    expect([...(await f.tensor('a.half')).data]).toEqual([1, -2.5, 65504, 2 ** -24]);
    expect([...(await f.tensor('a.bf16')).data]).toEqual([1, -3, 0.5]);
  });

  it('refuses dtypes it does not decode, by name, only when that tensor is asked for', async () => {
    const f = await readSafetensors(sample());
    await refused(f.tensor('a.ids'), /tensor "a\.ids" is I64; qkv decodes only F32, F16, BF16/);
  });

  it('takes an ArrayBuffer, a view at an offset, a file path, a file: URL and a Response', async () => {
    const bytes = sample();
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const dir = await mkdtemp(join(tmpdir(), 'qkv-st-'));
    try {
      const path = join(dir, 'm.safetensors');
      await writeFile(path, bytes);
      const sources = [
        bytes.slice().buffer,
        shifted.subarray(3),
        path,
        pathToFileURL(path),
        new Response(bytes.slice()),
      ];
      for (const s of sources) {
        const f = await readSafetensors(s);
        expect([...(await f.tensor('a.bf16')).data]).toEqual([1, -3, 0.5]);
      }
      await refused(readSafetensors(join(dir, 'missing.safetensors')), /missing\.safetensors: cannot read the file/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('reads only the header when opened and only the requested tensor after (lazy)', async () => {
    const bytes = writeSafetensors(
      Object.fromEntries(
        Array.from({ length: 50 }, (_, i) => [
          `layers.${i}.w`,
          { dtype: 'F32' as const, shape: [64, 64], data: new Array(4096).fill(i) },
        ]),
      ),
    );
    const reads: [number, number][] = [];
    const source: ByteSource = {
      label: 'counted',
      size: bytes.length,
      read: async (b, e) => {
        reads.push([b, e]);
        return bytes.subarray(b, e);
      },
    };
    const f = await SafetensorsFile.open(source);
    const headerEnd = reads[1]?.[1] as number;
    expect(reads.reduce((s, [b, e]) => s + e - b, 0)).toBe(headerEnd);
    expect(headerEnd).toBeLessThan(bytes.length / 50);
    const t = await f.tensor('layers.31.w');
    expect(t.data[4095]).toBe(31);
    expect(reads.slice(2).reduce((s, [b, e]) => s + e - b, 0)).toBe(4096 * 4);
  });

  it('refuses a source that is not bytes, a path, a URL or a Response', async () => {
    await expect(readSafetensors(42 as never)).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  });
});

describe('readSafetensors refuses bad files with INVALID_CHECKPOINT', () => {
  const good = sample();
  const withLength = (n: bigint, rest: Uint8Array) => {
    const out = new Uint8Array(8 + rest.length);
    new DataView(out.buffer).setBigUint64(0, n, true);
    out.set(rest, 8);
    return out;
  };
  const forged = (edit: (h: Record<string, Record<string, unknown>>) => unknown) =>
    writeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] } }, { header: edit as never });

  it('a file shorter than the 8-byte header length', async () => {
    await refused(readSafetensors(good.subarray(0, 5)), /bytes: truncated: 5 bytes/);
  });
  it('a header length past the end (also 2^63)', async () => {
    await refused(readSafetensors(withLength(1000n, new Uint8Array(16))), /header length 1000 runs past the end/);
    await refused(
      readSafetensors(withLength(2n ** 63n, new Uint8Array(16))),
      /header length 9223372036854775808 runs past/,
    );
  });
  it('a header that is not JSON, not UTF-8, or not an object', async () => {
    await refused(
      readSafetensors(withLength(4n, new TextEncoder().encode('{"a"'))),
      /header \(bytes 8 … 11\) is not UTF-8 JSON/,
    );
    await refused(readSafetensors(withLength(2n, Uint8Array.from([0xff, 0xfe]))), /is not UTF-8 JSON/);
    await refused(readSafetensors(withLength(2n, new TextEncoder().encode('[]'))), /header: expected a JSON object/);
  });
  it('data offsets outside the data section (a truncated file)', async () => {
    await refused(
      readSafetensors(good.subarray(0, good.length - 1)),
      /data_offsets \[\d+, \d+\] lie outside the data section .*truncated/,
    );
    await refused(
      readSafetensors(forged((h) => ({ w: { ...h.w, data_offsets: [8, 4] } }))),
      /tensor "w": data_offsets \[8, 4\] lie outside/,
    );
    await refused(
      readSafetensors(forged((h) => ({ w: { ...h.w, data_offsets: [-4, 12] } }))),
      /data_offsets: expected \[begin, end\]/,
    );
  });
  it('data offsets that disagree with shape × dtype', async () => {
    await refused(
      readSafetensors(forged((h) => ({ w: { ...h.w, shape: [3, 2] } }))),
      /tensor "w": data_offsets \[0, 16\] hold 16 bytes, but shape \[3, 2\] of F32 needs 6 × 4 = 24/,
    );
    await refused(
      readSafetensors(forged((h) => ({ w: { ...h.w, shape: [2, -2] } }))),
      /shape: expected an array of non-negative integers/,
    );
  });
  it('tensors whose bytes overlap', async () => {
    const bytes = writeSafetensors(
      { a: { dtype: 'F32', shape: [2], data: [1, 2] }, b: { dtype: 'F32', shape: [2], data: [3, 4] } },
      { header: (h) => ({ ...h, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }) },
    );
    await refused(readSafetensors(bytes), /tensor "b": data_offsets \[4, 12\] overlap those of "a" \[0, 8\]/);
  });
  it('unknown dtypes', async () => {
    await refused(readSafetensors(forged((h) => ({ w: { ...h.w, dtype: 'F12' } }))), /tensor "w": unknown dtype "F12"/);
  });
  it('a malformed __metadata__ and entries that are not objects', async () => {
    await refused(
      readSafetensors(forged((h) => ({ ...h, __metadata__: { a: 1 } }))),
      /__metadata__\.a: expected a string/,
    );
    await refused(readSafetensors(forged(() => ({ w: 3 }))), /tensor "w": expected \{ dtype, shape, data_offsets \}/);
  });
  it('a tensor that is not in the file, naming the key looked for', async () => {
    const f = await readSafetensors(good);
    await refused(f.tensor('b.weight'), /no tensor "b\.weight"; the file has 4 tensors \(a\.weight, a\.half/);
  });

  it('never throws anything else, nor reads outside the bytes, for any truncation or byte flip', async () => {
    const base = writeSafetensors({
      'x.w': { dtype: 'F16', shape: [3, 2], data: [1, 2, 3, 4, 5, 6] },
      'x.b': { dtype: 'BF16', shape: [2], data: [1, 2] },
    });
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const variants: Uint8Array[] = [];
    for (let n = 0; n < base.length; n++) variants.push(base.slice(0, n));
    for (let i = 0; i < 400; i++) {
      const v = base.slice();
      v[next() % v.length] = next() % 256;
      variants.push(v);
    }
    for (const v of variants) {
      const source: ByteSource = {
        label: 'fuzz',
        size: v.length,
        read: async (b, e) => {
          if (b < 0 || e > v.length || b > e) throw new Error(`read [${b}, ${e}) outside ${v.length} bytes`);
          return v.subarray(b, e);
        },
      };
      try {
        const f = await SafetensorsFile.open(source);
        for (const name of f.names)
          await f.tensor(name).catch((e) => (isQkvError(e, 'INVALID_CHECKPOINT') ? null : Promise.reject(e)));
      } catch (e) {
        if (!isQkvError(e, 'INVALID_CHECKPOINT')) throw e;
      }
    }
  });
});

describe('readSafetensors with a file on disk', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qkv-st-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true });
  });
  it('a file truncated after opening is refused when a tensor is read', async () => {
    const path = join(dir, 't.safetensors');
    const bytes = sample();
    await writeFile(path, bytes);
    const f = await readSafetensors(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 20));
    await refused(f.tensor('a.bf16'), /t\.safetensors: the file ended at byte/);
  });
});
