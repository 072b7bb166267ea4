// WebAssembly SIMD kernels for @qkv/backend-cpu, compiled by AssemblyScript at build time
// (scripts/build-wasm.mjs → src/fast/wasm-bytes.generated.ts). No runtime, no allocator: the
// TypeScript wrapper (src/fast/wasm.ts) lays out every buffer in linear memory from heapBase()
// upwards and passes byte pointers. All matrices are row-major f32.
//
// Dimension names follow @qkv/core's graph: Lq / Lk query / key lengths, hd head width (hdp: hd
// rounded up to a multiple of 8), K / N the inner / output widths of a matrix product.
//
// Files: madd.ts (the one multiply-add both builds differ in), gemm.ts (packing, the
// micro-kernel, the matrix multiply), gemv.ts (its few-row kernels: the last M mod 4 rows, a
// decode step's projections), attention.ts (flash attention on the same micro-kernel),
// stage.ts (one head's rows gathered from, packed from and scattered into row-major operands).
//
// Both kernels are built on one register-blocked micro-kernel: a 4 × 8 tile of C held in eight
// f32x4 accumulators, updated with one rank-1 step per k from a column of A (4 broadcast scalars)
// and a row of a packed 8-wide panel of B (two f32x4 loads). 8 mul + 8 add per 6 loads keeps the
// 128-bit SIMD units busy; 11 live vectors fit the 16 xmm registers V8 has on x64 without spills.
// The broadcasts are v128.load32_splat, which V8 lowers to one vbroadcastss from memory (a load,
// no shuffle); f32x4.splat(load<f32>(…)) costs a load plus a shuffle on the FP ports the
// multiplies and adds need, and Binaryen does not fuse the two.

export { gemm, packPanels, packTransposed } from './gemm';
export { attention } from './attention';
export { gatherRows, packKeys, packValues, scatterRows } from './stage';

export function heapBase(): usize {
  return __heap_base;
}
