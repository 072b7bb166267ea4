import {
  type Attention,
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  alibiSlopes,
  type BackendFactory,
  checkSupport,
  FEATURE_OPTIONS,
  isQkvError,
  requiredFeatures,
  resolveConfig,
  type Tensor,
} from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { compareArrays, type Tolerance } from './compare.js';
import { randomTensor, randomWeights, rng } from './random.js';
import { referenceAlibiSlopes, referenceAttention } from './reference.js';

export type Make = (config: AttentionConfig, weights: AttentionWeights) => Promise<Attention>;

export interface FeatureSuiteOptions {
  timeout: number;
  /** Longest token-by-token session (default 512). */
  sessionLength?: number;
}

export const TOL: Tolerance = { atol: 1e-4, rtol: 1e-3 };

type Numbers = { readonly shape: readonly number[]; readonly data: ArrayLike<number> };

export function close(name: string, actual: Numbers | undefined, expected: Numbers, tol = TOL) {
  expect(actual, `${name} missing`).toBeDefined();
  const c = compareArrays(name, actual as Numbers, expected, tol);
  if (!c.ok) expect.fail(c.message);
}

/**
 * Runs `body` where the backend supports the config; where it does not (its factory's
 * `supports()` says so, or it has none), asserts that asking for it by name is refused with a
 * CAPABILITY error naming the option, so an unsupported feature is still tested: it must never
 * run silently wrong.
 */
export async function withSupport(
  factory: BackendFactory,
  make: Make,
  config: AttentionConfig,
  weights: AttentionWeights,
  body: (attn: Attention) => Promise<void>,
): Promise<void> {
  const supported = checkSupport(factory, resolveConfig(config)) === true;
  let attn: Attention;
  try {
    attn = await make(config, weights);
  } catch (e) {
    if (supported || !isQkvError(e, 'CAPABILITY')) throw e;
    for (const f of requiredFeatures(resolveConfig(config))) expect((e as Error).message).toContain(FEATURE_OPTIONS[f]);
    return;
  }
  try {
    expect(supported, `${factory.name} ran a config its supports() refuses`).toBe(true);
    await body(attn);
  } finally {
    await attn.dispose();
  }
}

export function setup(config: AttentionConfig, seed: number, B = 2, L = 7, extra: Partial<AttentionWeights> = {}) {
  const random = rng(seed);
  const weights = { ...randomWeights(config, random), ...extra };
  const inputs: AttentionInputs = { query: randomTensor([B, L, config.dModel], random) };
  return { weights, inputs, random };
}

/** Each run: perHead weights (unfused), averaged weights, and the fused path, vs the float64 reference. */
export async function checkAgainstReference(
  attn: Attention,
  config: AttentionConfig,
  weights: AttentionWeights,
  inputs: AttentionInputs,
) {
  const ref = referenceAttention(config, weights, inputs);
  const per = await attn.run(inputs, { returnWeights: 'perHead' });
  close('attention', per.attention, ref.attention);
  close('residual', per.residual, ref.residual);
  close('weights', per.weights, ref.weights);
  const fused = await attn.run(inputs);
  close(`attention (fused=${fused.fused})`, fused.attention, ref.attention);
}

export function describeFeatureConformance(factory: BackendFactory, make: Make, options: FeatureSuiteOptions): void {
  const { timeout } = options;
  const sessionLength = options.sessionLength ?? 512;
  const runs = (
    name: string,
    config: AttentionConfig,
    seed: number,
    extra?: (c: AttentionConfig) => Partial<AttentionWeights>,
  ) =>
    it(name, { timeout }, async () => {
      const { weights, inputs } = setup(config, seed, 2, 7, extra?.(config));
      await withSupport(factory, make, config, weights, (attn) => checkAgainstReference(attn, config, weights, inputs));
    });

  describe('features', () => {
    describe("returnWeights: 'averaged'", () => {
      it('is the mean over heads of the per-head weights [B, Lq, Lk]', { timeout }, async () => {
        const config = { dModel: 12, numHeads: 3, numKVHeads: 1, causal: true };
        const { weights, inputs } = setup(config, 1);
        const attn = await make(config, weights);
        try {
          const ref = referenceAttention(config, weights, inputs);
          const out = await attn.run(inputs, { returnWeights: 'averaged' });
          const [B, H, Lq, Lk] = ref.weights.shape as [number, number, number, number];
          const mean = new Float64Array(B * Lq * Lk);
          for (let b = 0; b < B; b++)
            for (let h = 0; h < H; h++)
              for (let e = 0; e < Lq * Lk; e++)
                mean[b * Lq * Lk + e] =
                  (mean[b * Lq * Lk + e] as number) + (ref.weights.data[(b * H + h) * Lq * Lk + e] as number) / H;
          close('averaged weights', out.weights, { shape: [B, Lq, Lk], data: mean });
        } finally {
          await attn.dispose();
        }
      });
    });

    describe("positionalEncoding: 'rotary' (RoPE)", () => {
      runs(
        "'half' pairing (rotate_half), grouped-query, causal",
        { dModel: 16, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary' },
        11,
      );
      runs(
        "'interleaved' pairing (GPT-J), bidirectional, base 500",
        { dModel: 12, numHeads: 2, positionalEncoding: 'rotary', rotaryPairing: 'interleaved', rotaryBase: 500 },
        12,
      );
    });

    describe("positionalEncoding: 'alibi'", () => {
      it("core's slopes are the paper's", () => {
        // The slopes reach backends through the graph; pin them against the independent reference.
        for (const H of [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24]) {
          const core = alibiSlopes(H);
          const paper = referenceAlibiSlopes(H);
          expect(core.length).toBe(H);
          core.forEach((m, h) => expect(m, `H=${H}, head ${h}`).toBeCloseTo(paper[h] as number, 15));
        }
        expect(referenceAlibiSlopes(8)).toEqual([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]);
      });
      runs('H = 4 (power of two), causal', { dModel: 16, numHeads: 4, causal: true, positionalEncoding: 'alibi' }, 21);
      runs(
        'H = 6 (the paper rule), bidirectional, grouped-query',
        { dModel: 12, numHeads: 6, numKVHeads: 3, positionalEncoding: 'alibi' },
        22,
      );
    });

    describe("positionalEncoding: 'learned'", () => {
      runs(
        'X = E + table[position]',
        { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'learned' },
        31,
        (c) => ({
          positionalEmbedding: randomTensor([10, c.dModel], rng(310)),
        }),
      );
    });

    describe('window (sliding-window attention)', () => {
      runs('causal, w = 3', { dModel: 8, numHeads: 2, causal: true, window: 3 }, 41);
      runs('bidirectional, w = 2, grouped-query', { dModel: 12, numHeads: 4, numKVHeads: 2, window: 2 }, 42);
      it('with padding hiding every key in a window, that row is zeros', { timeout }, async () => {
        const config = { dModel: 8, numHeads: 2, causal: true, window: 2 };
        const { weights, inputs } = setup(config, 43, 1, 5);
        // Keys 2 and 3 are padding: query 3 (window keys 2, 3) sees nothing.
        inputs.keyPaddingMask = { shape: [1, 5], data: Float32Array.from([0, 0, 1, 1, 0]) };
        await withSupport(factory, make, config, weights, async (attn) => {
          await checkAgainstReference(attn, config, weights, inputs);
          const out = await attn.run(inputs, { returnWeights: true });
          const w = out.weights as Tensor;
          expect([...w.data.subarray(3 * 5, 4 * 5)]).toEqual([0, 0, 0, 0, 0]);
        });
      });
    });

    describe('maskMod / scoreMod', () => {
      // Document masking: batch b holds documents split at `bounds[b]`; a token sees its own document only.
      const bounds = [3, 5];
      const docMask = (b: number, _h: number, q: number, k: number) =>
        q < (bounds[b] as number) === k < (bounds[b] as number);
      const softcap = (s: number) => 2 * Math.tanh(s / 2);
      runs('maskMod: document masking (causal)', { dModel: 8, numHeads: 2, causal: true, maskMod: docMask }, 51);
      runs(
        'scoreMod: softcapping tanh(s/2)·2, with large scores',
        { dModel: 8, numHeads: 2, scale: 4, scoreMod: softcap },
        52,
      );
      runs(
        'both, with ALiBi and a window',
        {
          dModel: 8,
          numHeads: 2,
          causal: true,
          positionalEncoding: 'alibi',
          window: 4,
          maskMod: docMask,
          scoreMod: softcap,
        },
        53,
      );
    });

    describe('KV-cache session', () => {
      const sessionCase = (
        name: string,
        config: AttentionConfig,
        seed: number,
        L: number,
        B: number,
        chunks: 'tokens' | 'mixed',
        extra?: Partial<AttentionWeights>,
      ) =>
        it(name, { timeout: timeout * 4 }, async () => {
          const { weights, inputs } = setup(config, seed, B, L, extra);
          await withSupport(factory, make, config, weights, async (attn) => {
            const E = inputs.query as Tensor;
            const D = config.dModel;
            const full = await attn.run({ query: E });
            const session = attn.createSession({ maxLength: L });
            expect(['device', 'host']).toContain(session.info.cache);
            expect(session.info.reason.length).toBeGreaterThan(0);
            const sizes = chunks === 'tokens' ? new Array(L).fill(1) : [1, 2, 1, 5, 3, 1, 8, L];
            let at = 0;
            const got = new Float32Array(B * L * D);
            for (const size of sizes) {
              const t = Math.min(size, L - at);
              if (t <= 0) break;
              const x = new Float32Array(B * t * D);
              for (let b = 0; b < B; b++) x.set(E.data.subarray((b * L + at) * D, (b * L + at + t) * D), b * t * D);
              const out = await session.step({ shape: [B, t, D], data: x });
              expect(out.positions).toEqual([at, at + t]);
              for (let b = 0; b < B; b++)
                got.set(out.attention.data.subarray(b * t * D, (b + 1) * t * D), (b * L + at) * D);
              at += t;
              expect(session.length).toBe(at);
            }
            close(
              `session (${session.info.cache} cache) vs one causal run`,
              { shape: [B, L, D], data: got },
              full.attention,
            );
            const e = await session.step({ shape: [B, 1, D], data: new Float32Array(B * D) }).catch((x: unknown) => x);
            expect(isQkvError(e, 'SESSION_FULL'), `past maxLength: ${String(e)}`).toBe(true);
            await session.reset();
            expect(session.length).toBe(0);
            const first = await session.step({
              shape: [B, 1, D],
              data: Float32Array.from(
                { length: B * D },
                (_, i) => E.data[Math.floor(i / D) * L * D + (i % D)] as number,
              ),
            });
            close(
              'first token after reset',
              { shape: [B, D], data: first.attention.data },
              {
                shape: [B, D],
                data: Float32Array.from(
                  { length: B * D },
                  (_, i) => full.attention.data[Math.floor(i / D) * L * D + (i % D)] as number,
                ),
              },
            );
            await session.dispose();
          });
        });
      sessionCase(
        `token by token, ${sessionLength} tokens, sinusoidal PE, grouped-query`,
        { dModel: 8, numHeads: 2, numKVHeads: 1, causal: true, positionalEncoding: 'sinusoidal' },
        61,
        sessionLength,
        1,
        'tokens',
      );
      sessionCase(
        'chunks of 1…8 tokens, B = 2',
        { dModel: 8, numHeads: 4, numKVHeads: 2, causal: true },
        62,
        40,
        2,
        'mixed',
      );
      sessionCase(
        "rotary 'half': positions continue in the cache",
        { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'rotary' },
        63,
        33,
        2,
        'mixed',
      );
      sessionCase(
        "rotary 'interleaved', token by token",
        { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'rotary', rotaryPairing: 'interleaved' },
        64,
        24,
        1,
        'tokens',
      );
      sessionCase(
        'alibi + window',
        { dModel: 12, numHeads: 3, causal: true, positionalEncoding: 'alibi', window: 5 },
        65,
        30,
        2,
        'mixed',
      );
      sessionCase(
        'learned PE',
        { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'learned' },
        66,
        20,
        1,
        'mixed',
        {
          positionalEmbedding: randomTensor([20, 8], rng(660)),
        },
      );
      sessionCase(
        'maskMod + scoreMod see absolute positions',
        {
          dModel: 8,
          numHeads: 2,
          causal: true,
          maskMod: (_b, _h, q, k) => q >= 10 === k >= 10,
          scoreMod: (s) => 3 * Math.tanh(s / 3),
        },
        67,
        25,
        2,
        'mixed',
      );
    });
  });
}
