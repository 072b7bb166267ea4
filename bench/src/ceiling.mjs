// The machine's own limits, measured in the bench's run so every qkv figure can be printed as a
// fraction of them (run.mjs, ceiling-report.mjs):
//   - the WebAssembly 128-bit SIMD peak of one thread: a register-only loop of f32x4.mul +
//     f32x4.add (the SIMD128 build's multiply-add), and the same loop with the relaxed-SIMD fused
//     f32x4.relaxed_madd (the relaxed build's), where this Node validates relaxed SIMD;
//   - onnxruntime-node's native MatMul 2048³ (AVX2/AVX-512 FMA) on one and on two threads.
//
//   node src/ceiling.mjs      prints one JSON line: { status, node, wasmSimd128, wasmRelaxedFma,
//                             ortMatMul1, ortMatMul2 } in GFLOP/s (null where it cannot run), and
//                             the two WASM peaks per CPU second (…Cpu).
import { performance } from 'node:perf_hooks';
import { model, node, tensor } from './onnx.mjs';

/** Independent accumulator chains: enough to cover mul/add (or FMA) latency × issue width. */
const CHAINS = 12;
/** Each loop iteration updates every chain this many times (amortises the loop branch). */
const ROUNDS = 4;

function leb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const section = (id, body) => [id, ...leb(body.length), ...body];
const f32const = (x) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return [0x43, ...b];
};
const SIMD = (op) => [0xfd, ...leb(op)];
const F32X4_SPLAT = 0x13;
const F32X4_EXTRACT_LANE = 0x1f;
const F32X4_ADD = 0xe4;
const F32X4_MUL = 0xe6;
const F32X4_RELAXED_MADD = 0x105;

/**
 * `peak(iterations: i32) → f32`: CHAINS accumulators a ← a·x + y held in locals (registers), no
 * memory access in the loop; x = 0.999, y = 0.001 keep every a near 1 (no overflow, no
 * denormals). The sum of the accumulators is returned so nothing is dead code.
 * Locals: 0 = iterations, 1 … chains = accumulators, chains+1 = x, chains+2 = y. `chains` below 12
 * measures what fewer independent chains allow (a kernel's register tile: ab-kernels.mjs).
 */
export function peakModule(fused, chains = CHAINS) {
  const x = chains + 1;
  const y = chains + 2;
  const code = [];
  for (let c = 1; c <= chains; c++) code.push(...f32const(c / 1000), ...SIMD(F32X4_SPLAT), 0x21, c);
  code.push(...f32const(0.999), ...SIMD(F32X4_SPLAT), 0x21, x, ...f32const(0.001), ...SIMD(F32X4_SPLAT), 0x21, y);
  code.push(0x03, 0x40); // loop
  for (let r = 0; r < ROUNDS; r++) {
    for (let c = 1; c <= chains; c++) {
      code.push(0x20, c, 0x20, x);
      if (fused) code.push(0x20, y, ...SIMD(F32X4_RELAXED_MADD));
      else code.push(...SIMD(F32X4_MUL), 0x20, y, ...SIMD(F32X4_ADD));
      code.push(0x21, c);
    }
  }
  // iterations -= 1; loop while nonzero
  code.push(0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, 0x0b);
  code.push(0x20, 1);
  for (let c = 2; c <= chains; c++) code.push(0x20, c, ...SIMD(F32X4_ADD));
  code.push(...SIMD(F32X4_EXTRACT_LANE), 0, 0x0b);
  const body = [1, chains + 2, 0x7b, ...code]; // one local group: chains + 2 v128
  const name = [...new TextEncoder().encode('peak')];
  // biome-ignore format: one line per section
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7d]), // type: (i32) → f32
    ...section(3, [1, 0]),
    ...section(7, [1, name.length, ...name, 0x00, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

/** FLOPs of one loop iteration: per chain update, 4 lanes × (a multiply and an add). */
const flopsPerIteration = (chains) => chains * ROUNDS * 4 * 2;

/**
 * Best of `repeats` samples (a peak: the least disturbed sample on a shared machine), GFLOP/s by
 * wall time and by this process's CPU time (the loop is one thread: CPU time is its work).
 */
export function wasmPeak(fused, repeats = 7, chains = CHAINS) {
  const bytes = peakModule(fused, chains);
  if (!WebAssembly.validate(bytes)) return { wall: null, cpu: null };
  const { peak } = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports;
  let iterations = 1e5;
  // Warm up (tier-up to TurboFan) and size a sample to ~50 ms.
  for (let t = 0; t < 20 * 1e-3; iterations *= 2) {
    const s = performance.now();
    peak(iterations);
    t = (performance.now() - s) / 1e3;
  }
  let wall = 0;
  let cpu = 0;
  for (let r = 0; r < repeats; r++) {
    const c = process.cpuUsage();
    const s = performance.now();
    const out = peak(iterations);
    const sec = (performance.now() - s) / 1e3;
    const dc = process.cpuUsage(c);
    if (!Number.isFinite(out)) throw new Error(`peak loop returned ${out}`);
    wall = Math.max(wall, (iterations * flopsPerIteration(chains)) / sec / 1e9);
    cpu = Math.max(cpu, (iterations * flopsPerIteration(chains)) / ((dc.user + dc.system) / 1e6) / 1e9);
  }
  return { wall, cpu };
}

/**
 * onnxruntime MatMul [N, N] · [N, N] on `threads` intra-op threads: median of `runs`, GFLOP/s by
 * wall time and per CPU second of the process.
 */
async function ortMatMul(threads, N = 2048, runs = 5) {
  const ort = (await import('onnxruntime-node')).default;
  const b = Float32Array.from({ length: N * N }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const bytes = model({
    nodes: [node('MatMul', ['A', 'B'], ['C'])],
    initializers: [tensor('B', [N, N], b)],
    inputs: [['A', [N, N]]],
    outputs: [['C', [N, N]]],
  });
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const A = new ort.Tensor('float32', b.slice(), [N, N]);
  await session.run({ A });
  const times = [];
  const cpu = [];
  for (let r = 0; r < runs; r++) {
    const c = process.cpuUsage();
    const s = performance.now();
    await session.run({ A });
    times.push((performance.now() - s) / 1e3);
    const dc = process.cpuUsage(c);
    cpu.push((dc.user + dc.system) / 1e6);
  }
  await session.release();
  const median = (x) => x.sort((p, q) => p - q)[x.length >> 1];
  return { wall: (2 * N ** 3) / median(times) / 1e9, cpu: (2 * N ** 3) / median(cpu) / 1e9 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = { status: 'ok', node: process.version };
  try {
    const simd = wasmPeak(false);
    const fma = wasmPeak(true);
    out.wasmSimd128 = simd.wall;
    out.wasmRelaxedFma = fma.wall;
    out.wasmSimd128Cpu = simd.cpu;
    out.wasmRelaxedFmaCpu = fma.cpu;
    const mm1 = await ortMatMul(1);
    out.ortMatMul1 = mm1.wall;
    out.ortMatMul1Cpu = mm1.cpu;
    out.ortMatMul2 = (await ortMatMul(2)).wall;
  } catch (e) {
    out.status = 'error';
    out.detail = String(e?.message ?? e).slice(0, 300);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
