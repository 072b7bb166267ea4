import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionResult,
  type AttentionWeights,
  type BackendCreateOptions,
  type BackendFactory,
  BackendRegistry,
  createAttention,
  STEP_NAMES,
  type StepName,
  type Tensor,
} from '@qkv/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { describeCheckpointFeatures } from './checkpoint-features.js';
import { describeCheckpointConformance } from './checkpoints.js';
import { compareArrays, DEFAULT_TOLERANCE, type Tolerance } from './compare.js';
import { describeFeatureConformance } from './features.js';
import { GOLDEN_CASES, type GoldenCaseName, goldenToApi, loadGoldenCase } from './golden.js';
import { describeLseConformance } from './lse.js';
import { describeLseServingConformance } from './lse-serving.js';
import { describeMagnitudeConformance } from './magnitudes.js';
import { randomCase } from './random.js';
import { type RefTensor, referenceAttention } from './reference.js';
import { describeServingConformance } from './serving.js';

export interface ConformanceOptions {
  /** Differential tests compare against this backend (e.g. cpu); default: the float64 reference. */
  reference?: BackendFactory;
  /** Passed to the backend factory's create(). */
  backendOptions?: BackendCreateOptions;
  /** fast-check seed and number of random cases (env QKV_FUZZ_SEED / QKV_FUZZ_RUNS override). */
  seed?: number;
  numRuns?: number;
  /** Per-test timeout in ms (software GL is slow). */
  timeout?: number;
  /** Golden cases to run (default: all). */
  cases?: readonly GoldenCaseName[];
  /** Longest token-by-token KV-cache session in the feature blocks (default 512). */
  sessionLength?: number;
}

function env(name: string): string | undefined {
  return typeof process !== 'undefined' ? process.env?.[name] : undefined;
}

function assertClose(
  name: string,
  actual: Tensor | undefined,
  expected: { shape: readonly number[]; data: ArrayLike<number> },
  tol: Tolerance,
): void {
  expect(actual, `${name} missing from the result`).toBeDefined();
  const c = compareArrays(name, actual as Tensor, expected, tol);
  if (!c.ok) expect.fail(c.message);
}

// Every computed step (input and positional encoding are fed or constant).
const CAPTURE_ALL: StepName[] = STEP_NAMES.filter((n) => n !== 'input' && n !== 'positionalEncoding');

/** f64 helpers that recompute one step from the backend's own captured inputs. */
function definitions(
  config: Required<Pick<AttentionConfig, 'numHeads'>> & {
    numKVHeads: number;
    headDim: number;
    scale: number;
    causal: boolean;
  },
  cap: Partial<Record<StepName, Tensor>>,
  inputs: AttentionInputs,
) {
  const q = cap.q as Tensor;
  const k = cap.k as Tensor;
  const v = cap.v as Tensor;
  const [B, Lq] = q.shape as [number, number];
  const Lk = k.shape[1] as number;
  const { numHeads: H, numKVHeads: KVH, headDim: hd } = config;
  const S = B * H * Lq * Lk;
  const scores = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++)
        for (let j = 0; j < Lk; j++) {
          let s = 0;
          const kvh = Math.floor(h / (H / KVH));
          for (let c = 0; c < hd; c++)
            s +=
              (q.data[(b * Lq + i) * H * hd + h * hd + c] as number) *
              (k.data[(b * Lk + j) * KVH * hd + kvh * hd + c] as number);
          scores[((b * H + h) * Lq + i) * Lk + j] = s;
        }
  const scaledIn = (cap.scores as Tensor).data;
  const scaled = Float64Array.from(scaledIn, (s) => s * config.scale);
  const pad = inputs.keyPaddingMask?.data ?? null;
  const am = inputs.attnMask?.data ?? null;
  const maskedIn = (cap.scaled as Tensor).data;
  const masked = new Float64Array(S);
  for (let idx = 0; idx < S; idx++) {
    const j = idx % Lk;
    const i = Math.floor(idx / Lk) % Lq;
    const b = Math.floor(idx / (Lk * Lq * H));
    const hidden = (config.causal && j > i + Lk - Lq) || (pad !== null && (pad[b * Lk + j] as number) !== 0);
    masked[idx] = hidden ? Number.NEGATIVE_INFINITY : (maskedIn[idx] as number) + (am ? (am[i * Lk + j] as number) : 0);
  }
  const weightsIn = (cap.masked as Tensor).data;
  const weights = new Float64Array(S);
  for (let r = 0; r < S / Lk; r++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < Lk; j++) max = Math.max(max, weightsIn[r * Lk + j] as number);
    if (max === Number.NEGATIVE_INFINITY) continue;
    let sum = 0;
    for (let j = 0; j < Lk; j++) sum += Math.exp((weightsIn[r * Lk + j] as number) - max);
    for (let j = 0; j < Lk; j++) weights[r * Lk + j] = Math.exp((weightsIn[r * Lk + j] as number) - max) / sum;
  }
  const w = (cap.weights as Tensor).data;
  const heads = new Float64Array(B * Lq * H * hd);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++)
        for (let c = 0; c < hd; c++) {
          let acc = 0;
          const kvh = Math.floor(h / (H / KVH));
          for (let j = 0; j < Lk; j++)
            acc +=
              (w[((b * H + h) * Lq + i) * Lk + j] as number) *
              (v.data[(b * Lk + j) * KVH * hd + kvh * hd + c] as number);
          heads[((b * Lq + i) * H + h) * hd + c] = acc;
        }
  const sShape = [B, H, Lq, Lk];
  return {
    scores: { shape: sShape, data: scores },
    scaled: { shape: sShape, data: scaled },
    masked: { shape: sShape, data: masked },
    weights: { shape: sShape, data: weights },
    heads: { shape: [B, Lq, H * hd], data: heads },
  };
}

/**
 * The conformance suite. One line runs it on a backend:
 *   describeConformance(cpuBackend)
 * It checks every golden case, every captured intermediate against its definition, the fused
 * path against the materialised one, and seeded random configs against a reference.
 */
export function describeConformance(factory: BackendFactory, options: ConformanceOptions = {}): void {
  const registry = new BackendRegistry().register(factory);
  if (options.reference && options.reference.name !== factory.name) registry.register(options.reference);
  const timeout = options.timeout ?? 60_000;
  const make = (config: AttentionConfig, weights: AttentionWeights, backend = factory.name) =>
    createAttention(config, weights, {
      backend,
      registry,
      ...(backend === factory.name && options.backendOptions ? { backendOptions: options.backendOptions } : {}),
    });

  describe(`conformance: ${factory.name}`, () => {
    it('is available here', async () => {
      const a = await registry.availability(factory.name);
      expect(a.available ? 'available' : a.reason).toBe('available');
    });

    describe('golden vectors (PyTorch)', () => {
      for (const name of options.cases ?? GOLDEN_CASES) {
        it(name, { timeout }, async () => {
          const c = await loadGoldenCase(name);
          const { config, weights, inputs } = goldenToApi(c);
          const attn = await make(config, weights);
          try {
            expect(attn.backend).toBe(factory.name);
            const wantWeights = c.outputs.weights !== undefined;
            const out = await attn.run(inputs, { returnWeights: wantWeights });
            const tol = c.tolerance;
            for (const key of ['attention', 'residual', 'weights', 'positionalEncoding'] as const) {
              const expected = c.outputs[key];
              if (expected) assertClose(`${name}.${key}`, out[key], expected, tol);
            }
            // The same case through the fused path (no weights asked) must agree too.
            const fusedOut = await attn.run(inputs);
            assertClose(
              `${name}.attention (fused=${fusedOut.fused})`,
              fusedOut.attention,
              c.outputs.attention as { shape: number[]; data: number[] },
              tol,
            );
            if (c.fullyMaskedRows && out.weights) {
              const [, H, Lq, Lk] = out.weights.shape as [number, number, number, number];
              for (const [b, i] of c.fullyMaskedRows) {
                for (let h = 0; h < H; h++) {
                  const row = out.weights.data.subarray(((b * H + h) * Lq + i) * Lk, ((b * H + h) * Lq + i + 1) * Lk);
                  expect([...row], `weights[${b}, ${h}, ${i}, :] of a fully-masked row`).toEqual(new Array(Lk).fill(0));
                }
              }
            }
          } finally {
            await attn.dispose();
          }
        });
      }
    });

    describe('captured intermediates match their definitions', () => {
      const picks: GoldenCaseName[] = [
        'mha_causal_padding_b2_l8_d16_h4',
        'gqa_b2_l6_d32_h8_kv2',
        'mha_attnmask_b1_l6_d16_h2',
        'cross_kv_distinct_padding_b2_lq6_lk3_d8_h2',
        'mha_fully_masked_rows_b2_l5_d8_h2',
        'mha_posenc_b2_l10_d16_h4',
      ];
      for (const name of picks) {
        it(name, { timeout }, async () => {
          const c = await loadGoldenCase(name);
          const { config, weights, inputs } = goldenToApi(c);
          const attn = await make(config, weights);
          try {
            const out = await attn.run(inputs, { capture: CAPTURE_ALL });
            expect(out.fused).toBe(false);
            const r = attn.config;
            const defs = definitions(r, out.captured, inputs);
            for (const step of ['scores', 'scaled', 'masked', 'weights', 'heads'] as const) {
              assertClose(`${name}: ${step}`, out.captured[step], defs[step], DEFAULT_TOLERANCE);
            }
            // Every weights row sums to 1, or is all zero when the query sees no key.
            const wts = out.captured.weights as Tensor;
            const Lk = wts.shape[3] as number;
            for (let row = 0; row < wts.data.length / Lk; row++) {
              let s = 0;
              for (let j = 0; j < Lk; j++) s += wts.data[row * Lk + j] as number;
              if (s !== 0) expect(Math.abs(s - 1), `weights row ${row} sums to ${s}`).toBeLessThan(1e-5);
            }
            // And the whole chain matches the float64 reference.
            const ref = referenceAttention(config, weights, inputs);
            for (const step of CAPTURE_ALL)
              assertClose(`${name}: ${step} vs float64 reference`, out.captured[step], ref[step], c.tolerance);
          } finally {
            await attn.dispose();
          }
        });
      }
    });

    // Sessions, RoPE, ALiBi, learned PE, window, maskMod/scoreMod, averaged weights: each run
    // where the backend's supports() accepts it, and otherwise checked to be refused (CAPABILITY).
    describeFeatureConformance(factory, (config, weights) => make(config, weights), {
      timeout,
      ...(options.sessionLength !== undefined ? { sessionLength: options.sessionLength } : {}),
    });
    // softcap, sinks, sinkTokens, sequenceIds, window caches, fork and truncate (issue #18).
    describeServingConformance(factory, (config, weights) => make(config, weights), { timeout });

    // Real-layout checkpoints (torch MHA, GPT-2, BERT, Llama/Qwen2/Mistral) through the loader.
    describeCheckpointConformance((config, weights) => make(config, weights), { timeout });
    // What those checkpoints need from the core: keyDim/valueDim, partial biases, positionIds.
    describeCheckpointFeatures((config, weights) => make(config, weights), { timeout });
    // Activations that overflow float32: the same NUMERIC_OVERFLOW on every backend.
    describeMagnitudeConformance((config, weights) => make(config, weights), { timeout });
    // returnLse fused and unfused, the shard merge, sessions (lse.ts).
    describeLseConformance((config, weights) => make(config, weights), { timeout });
    // returnLse with softcap, sinks, sinkTokens, sequenceIds and window sessions (lse-serving.ts).
    describeLseServingConformance(factory, (config, weights) => make(config, weights), { timeout });

    describe('differential: random configs and masks', () => {
      const seed = Number(env('QKV_FUZZ_SEED') ?? options.seed ?? 20261128);
      const numRuns = Number(env('QKV_FUZZ_RUNS') ?? options.numRuns ?? 40);
      const refName = options.reference?.name;
      it(`${numRuns} seeded cases agree with ${refName ?? 'the float64 reference'} (seed ${seed})`, {
        timeout: timeout * 4,
      }, async () => {
        const arb = fc.record({
          numKVHeads: fc.constantFrom(1, 2),
          group: fc.constantFrom(1, 2, 3),
          headDim: fc.integer({ min: 1, max: 8 }),
          dModel: fc.integer({ min: 1, max: 24 }),
          batch: fc.integer({ min: 1, max: 3 }),
          queryLength: fc.integer({ min: 1, max: 12 }),
          keyLength: fc.integer({ min: 1, max: 12 }),
          cross: fc.boolean(),
          causal: fc.boolean(),
          bias: fc.boolean(),
          padding: fc.constantFrom('none', 'random', 'allPaddingRow'),
          attnMask: fc.constantFrom('none', 'additive', 'withInfinity'),
          scale: fc.option(fc.double({ min: 0.05, max: 2, noNaN: true }), { nil: null }),
          magnitude: fc.constantFrom(1, 10),
          dataSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        });
        await fc.assert(
          fc.asyncProperty(arb, async (p) => {
            const { config, weights, inputs } = randomCase(p);
            const tol: Tolerance = { atol: 1e-4 * p.magnitude * p.magnitude, rtol: 1e-3 };
            const attn = await make(config, weights);
            try {
              const got = await attn.run(inputs, { returnWeights: true });
              const fused = await attn.run(inputs);
              let expected: Record<
                'attention' | 'residual' | 'weights',
                { shape: readonly number[]; data: ArrayLike<number> }
              >;
              if (refName) {
                const ref = await make(config, weights, refName);
                try {
                  const r: AttentionResult = await ref.run(inputs, { returnWeights: true });
                  expected = {
                    attention: r.attention,
                    residual: r.residual,
                    weights: r.weights as Tensor,
                  };
                } finally {
                  await ref.dispose();
                }
              } else {
                const r = referenceAttention(config, weights, inputs);
                expected = {
                  attention: r.attention,
                  residual: r.residual,
                  weights: r.weights as RefTensor,
                };
              }
              const replay = `replay: QKV_FUZZ_SEED=${seed} (case ${JSON.stringify(p)})`;
              for (const key of ['attention', 'residual', 'weights'] as const) {
                const c = compareArrays(key, got[key] as Tensor, expected[key], tol);
                if (!c.ok) throw new Error(`${c.message}\n${replay}`);
              }
              const c = compareArrays('attention (fused path)', fused.attention, expected.attention, tol);
              if (!c.ok) throw new Error(`${c.message}\n${replay}`);
            } finally {
              await attn.dispose();
            }
          }),
          { seed, numRuns },
        );
      });
    });
  });
}
