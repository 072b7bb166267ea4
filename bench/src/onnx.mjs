// A minimal ONNX (protobuf) writer: just the messages the two attention graphs need, so the
// bench builds its onnxruntime models in-process with no Python and no model files.
// Field numbers from onnx/onnx.proto3.

const enc = new TextEncoder();

function varint(n) {
  const out = [];
  let v = BigInt.asUintN(64, BigInt(n)); // negative int64s: two's complement, 10 bytes
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}
const cat = (parts) => {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const tag = (field, wire) => varint((field << 3) | wire);
/** Length-delimited field (strings, bytes, sub-messages). */
const ld = (field, bytes) => cat([Uint8Array.from(tag(field, 2)), Uint8Array.from(varint(bytes.length)), bytes]);
const str = (field, s) => ld(field, enc.encode(s));
const int = (field, n) => Uint8Array.from([...tag(field, 0), ...varint(n)]);
const f32 = (field, x) => {
  const b = new Uint8Array(5);
  b[0] = (field << 3) | 5;
  new DataView(b.buffer).setFloat32(1, x, true);
  return b;
};

const FLOAT = 1;
const INT64 = 7;

/** TensorProto: dims(1), data_type(2), name(8), raw_data(9). */
export function tensor(name, dims, data) {
  const isInt = data instanceof BigInt64Array;
  return cat([
    ...dims.map((d) => int(1, d)),
    int(2, isInt ? INT64 : FLOAT),
    str(8, name),
    ld(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
  ]);
}

/** AttributeProto: name(1), f(2), i(3), ints(8), type(20): FLOAT 1, INT 2, INTS 7. */
function attribute(name, value) {
  if (Array.isArray(value)) return cat([str(1, name), ...value.map((v) => int(8, v)), int(20, 7)]);
  if (Number.isInteger(value) && !value.float) return cat([str(1, name), int(3, value), int(20, 2)]);
  return cat([str(1, name), f32(2, value.float ?? value), int(20, 1)]);
}

/** NodeProto: input(1), output(2), name(3), op_type(4), attribute(5), domain(7). */
export function node(op, inputs, outputs, attrs = {}, domain = '') {
  return cat([
    ...inputs.map((i) => str(1, i)),
    ...outputs.map((o) => str(2, o)),
    str(3, `${op}_${outputs[0]}`),
    str(4, op),
    ...Object.entries(attrs).map(([k, v]) => ld(5, attribute(k, v))),
    ...(domain ? [str(7, domain)] : []),
  ]);
}

export const INT32 = 6;

/**
 * ValueInfoProto: name(1), type(2) → TypeProto.tensor_type(1) → elem_type(1), shape(2). Float
 * unless `[name, dims, elemType]` says otherwise; a dim that is a string is symbolic (dim_param).
 */
function valueInfo(name, dims, elemType = FLOAT) {
  const shape = cat(dims.map((d) => ld(1, typeof d === 'string' ? str(2, d) : int(1, d))));
  return cat([str(1, name), ld(2, ld(1, cat([int(1, elemType), ld(2, shape)])))]);
}

/**
 * ModelProto: ir_version(1), graph(7), opset_import(8).
 * GraphProto: node(1), name(2), initializer(5), input(11), output(12).
 */
export function model({ nodes, initializers, inputs, outputs }) {
  const graph = cat([
    ...nodes.map((n) => ld(1, n)),
    str(2, 'attention'),
    ...initializers.map((t) => ld(5, t)),
    ...inputs.map(([n, d, t]) => ld(11, valueInfo(n, d, t))),
    ...outputs.map(([n, d, t]) => ld(12, valueInfo(n, d, t))),
  ]);
  const opset = (domain, version) => cat([...(domain ? [str(1, domain)] : []), int(2, version)]);
  return cat([int(1, 8), ld(7, graph), ld(8, opset('', 17)), ld(8, opset('com.microsoft', 1))]);
}

/** Marks a number as a FLOAT attribute even when it is integral. */
export const float = (x) => ({ float: x });
