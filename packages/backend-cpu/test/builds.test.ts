import { BackendRegistry, createAttention } from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { WASM_RELAXED_SIMD_BASE64, WASM_SIMD128_BASE64 } from '../src/fast/wasm-bytes.generated.js';
import { CpuBackend, cpuBackend, cpuKernels as k } from '../src/index.js';

// The two WebAssembly builds, their detection and how a backend picks and reports one.

const decode = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const relaxedBytes = decode(WASM_RELAXED_SIMD_BASE64);
const simdBytes = decode(WASM_SIMD128_BASE64);

/** Whether `bytes` holds the opcode sequence `op` anywhere. */
function contains(bytes: Uint8Array, op: readonly number[]): boolean {
  outer: for (let i = 0; i + op.length <= bytes.length; i++) {
    for (let j = 0; j < op.length; j++) if (bytes[i + j] !== op[j]) continue outer;
    return true;
  }
  return false;
}
const RELAXED_MADD = [0xfd, 0x85, 0x02]; // f32x4.relaxed_madd

function compiles(bytes: Uint8Array): boolean {
  try {
    new WebAssembly.Module(bytes as BufferSource);
    return true;
  } catch {
    return false;
  }
}

describe('the builds', () => {
  it('the relaxed-SIMD build uses f32x4.relaxed_madd and the SIMD128 build does not', () => {
    expect(contains(relaxedBytes, RELAXED_MADD)).toBe(true);
    expect(contains(simdBytes, RELAXED_MADD)).toBe(false);
  });

  it('detection agrees with what the engine compiles: the tiny probe decides like the kernels module', () => {
    const support = k.wasmBuildSupport();
    expect(support.simd128).toBe(compiles(simdBytes));
    expect(support['relaxed-simd']).toBe(compiles(relaxedBytes));
    // This suite runs on engines with 128-bit SIMD (Node 20+, Chromium); only relaxed SIMD varies.
    expect(support.simd128).toBe(true);
  });

  it("'fast' loads the best build by itself: relaxed SIMD where the engine has it", () => {
    const best = k.bestWasmBuild();
    expect(best).toBe(k.wasmBuildSupport()['relaxed-simd'] ? 'relaxed-simd' : 'simd128');
    expect(new CpuBackend().kernelBuild).toBe(best);
    expect(new CpuBackend({ kernels: 'fast' }).kernelBuild).toBe(best);
    expect(new CpuBackend({ kernels: 'simd128' }).kernelBuild).toBe('simd128');
    expect(new CpuBackend({ kernels: 'reference' }).kernelBuild).toBe('reference');
    // CI names the build each runtime must pick (Node 20: simd128; Node 22+: relaxed-simd).
    const expected = typeof process === 'undefined' ? undefined : process.env.QKV_EXPECT_WASM_BUILD;
    if (expected) expect(best).toBe(expected);
    // Chromium has relaxed SIMD on by default since 114 (the browser project runs this file there).
    const chrome = typeof navigator === 'undefined' ? null : /Chrome\/(\d+)/.exec(navigator.userAgent);
    if (chrome && Number(chrome[1]) >= 114) expect(best).toBe('relaxed-simd');
  });
});

describe('choosing a build', () => {
  const config = { dModel: 8, numHeads: 2 };
  const weights = {
    wq: { shape: [8, 8], data: new Float32Array(64).fill(0.1) },
    wk: { shape: [8, 8], data: new Float32Array(64).fill(0.1) },
    wv: { shape: [8, 8], data: new Float32Array(64).fill(0.1) },
    wo: { shape: [8, 8], data: new Float32Array(64).fill(0.1) },
  };
  const registry = () => new BackendRegistry().register(cpuBackend);

  it('selection says which build runs', async () => {
    for (const kernels of ['fast', 'simd128', 'reference'] as const) {
      const attn = await createAttention({ ...config, bias: false }, weights, {
        registry: registry(),
        backend: 'cpu',
        backendOptions: { kernels },
      });
      expect(attn.selection.kernelBuild).toBe(kernels === 'fast' ? k.bestWasmBuild() : kernels);
      await attn.dispose();
    }
  });

  it('a build the runtime lacks is refused, never replaced; a bad value is INVALID_OPTION', async () => {
    if (!k.wasmBuildSupport()['relaxed-simd']) {
      await expect(cpuBackend.create({ kernels: 'relaxed-simd' })).rejects.toMatchObject({
        code: 'CAPABILITY',
        message: expect.stringContaining('relaxed SIMD'),
      });
      expect(() => new CpuBackend({ kernels: 'relaxed-simd' })).toThrow(/relaxed SIMD/);
    } else {
      expect((await cpuBackend.create({ kernels: 'relaxed-simd' })).kernelBuild).toBe('relaxed-simd');
    }
    await expect(cpuBackend.create({ kernels: 'avx' })).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      message: expect.stringMatching(/kernels \(cpu\).*'fast', 'relaxed-simd', 'simd128', 'reference'.*"avx"/),
    });
  });

  it('each build matches the reference kernels on a projection and an attention call', () => {
    const r = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
    const attrs = { rows: 37, inFeatures: 40, outFeatures: 24 };
    const x = r(37 * 40, 1);
    const w = r(40 * 24, 2);
    const ref = new Float32Array(37 * 24);
    k.linear(x, w, null, ref, attrs);
    for (const build of (['relaxed-simd', 'simd128'] as const).filter((b) => k.wasmBuildSupport()[b])) {
      const out = new Float32Array(37 * 24);
      k.fastKernels(build).linear(x, w, null, out, attrs);
      for (let i = 0; i < out.length; i++) expect(Math.abs((out[i] as number) - (ref[i] as number))).toBeLessThan(1e-4);
    }
  });

  it("each build's gemm remainder rows match the reference: M mod 4 and M mod 5 = 0…4 past a 64-row block, ± bias", () => {
    // 64 rows fill one row block of 4-row tiles; 64…71 leave every quad tail (0–3 rows on the
    // few-row kernels) and every 5-row tail (a 5-row tile's remainder), on a half-filled last panel.
    const nIn = 24;
    const nOut = 20;
    const r = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.61 + s));
    const w = r(nIn * nOut, 3);
    for (let rows = 64; rows < 72; rows++) {
      for (const bias of [null, r(nOut, 4)]) {
        const attrs = { rows, inFeatures: nIn, outFeatures: nOut };
        const x = r(rows * nIn, rows);
        const ref = new Float32Array(rows * nOut);
        k.linear(x, w, bias, ref, attrs);
        for (const build of (['relaxed-simd', 'simd128'] as const).filter((b) => k.wasmBuildSupport()[b])) {
          const out = new Float32Array(rows * nOut).fill(Number.NaN);
          k.fastKernels(build).linear(x, w, bias, out, attrs);
          for (let i = 0; i < out.length; i++) {
            const d = Math.abs((out[i] as number) - (ref[i] as number));
            if (!(d < 1e-4))
              expect.fail(`${build}, ${rows} rows${bias ? ' + bias' : ''}, [${i}]: ${out[i]} vs ${ref[i]}`);
          }
        }
      }
    }
  });
});
