/** A minimal safetensors writer for tests: F32, F16 (round to nearest even), BF16 (truncate), I64. */
export interface WriteTensor {
  dtype: 'F32' | 'F16' | 'BF16' | 'I64';
  shape: number[];
  data: number[];
}

function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) return sign | Math.round((mant | 0x800000) / 2 ** (14 - exp));
  return sign | (exp << 10) | Math.round(mant / 8192);
}

function encode(t: WriteTensor): Uint8Array {
  const width = t.dtype === 'F32' ? 4 : t.dtype === 'I64' ? 8 : 2;
  const out = new Uint8Array(t.data.length * width);
  const view = new DataView(out.buffer);
  t.data.forEach((v, i) => {
    if (t.dtype === 'F32') view.setFloat32(i * 4, v, true);
    else if (t.dtype === 'I64') view.setBigInt64(i * 8, BigInt(v), true);
    else if (t.dtype === 'F16') view.setUint16(i * 2, toHalf(v), true);
    else view.setUint16(i * 2, new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16, true);
  });
  return out;
}

/** Builds a file; `header` rewrites the JSON header before it is written (to forge bad files). */
export function writeSafetensors(
  tensors: Record<string, WriteTensor>,
  options: { metadata?: unknown; header?: (h: Record<string, unknown>) => unknown; rawHeader?: Uint8Array } = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (options.metadata !== undefined) header.__metadata__ = options.metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = encode(t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json =
    options.rawHeader ?? new TextEncoder().encode(JSON.stringify(options.header ? options.header(header) : header));
  if (!options.rawHeader && json.length % 8) {
    const padded = new Uint8Array(json.length + 8 - (json.length % 8)).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
