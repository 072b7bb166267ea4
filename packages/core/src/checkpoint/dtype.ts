/**
 * safetensors element types: the bytes per element of every dtype the format defines (so a
 * header's offsets can be checked for any tensor), and float32 decoding of the three float types
 * attention weights are stored in. All data is little-endian.
 */

/** Every dtype of the safetensors format, with its width in bytes. */
export const SAFETENSORS_DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** The dtypes qkv decodes into float32 tensors. */
export const DECODED_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type DecodedDtype = (typeof DECODED_DTYPES)[number];

export function isSafetensorsDtype(v: unknown): v is SafetensorsDtype {
  return typeof v === 'string' && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, v);
}

export function isDecodedDtype(v: SafetensorsDtype): v is DecodedDtype {
  return (DECODED_DTYPES as readonly string[]).includes(v);
}

/** IEEE 754 binary16 → number: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // subnormal (and ±0)
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let halfTable: Float32Array | null = null;
/** All 65536 halves decoded once (256 KiB): decoding is then one lookup per element. */
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/**
 * Decodes `count` elements of `dtype` from `bytes` (exactly count × width bytes, any alignment)
 * into a new Float32Array. BF16 is the top half of a float32, so it is a 16-bit shift.
 */
export function decodeFloats(bytes: Uint8Array, dtype: DecodedDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16;
  } else {
    const table = halves();
    for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)] as number;
  }
  return out;
}
