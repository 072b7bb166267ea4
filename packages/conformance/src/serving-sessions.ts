import { type AttentionConfig, type BackendFactory, isQkvError, type Tensor } from '@qkv/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareArrays } from './compare.js';
import { close, type FeatureSuiteOptions, type Make, setup, withSupport } from './features.js';
import { randomTensor, rng } from './random.js';
import { referenceAttention } from './reference.js';
import {
  feed,
  ids,
  lastQueryWeights,
  packed,
  queryRows,
  rowsOf,
  sinkWeights,
  tokens,
  weightRows,
} from './serving-helpers.js';

/**
 * The serving features in KV-cache sessions (issue #18), against the float64 reference: softcap
 * and sink logits step by step, window rings far longer than s + w (ALiBi reads their two
 * segments' positions), packed decoding, fork() and truncate(), and rings with rollback rows.
 */
export function describeServingSessions(factory: BackendFactory, make: Make, options: FeatureSuiteOptions): void {
  const { timeout } = options;
  describe('sessions', () => {
    it('softcap + sinks + ALiBi, token by token and in chunks, match one causal run', {
      timeout: timeout * 4,
    }, async () => {
      const config = {
        dModel: 8,
        numHeads: 2,
        causal: true,
        softcap: 2,
        sinks: true,
        positionalEncoding: 'alibi' as const,
      };
      const L = 24;
      const { weights, inputs } = setup(config, 111, 2, L, sinkWeights(config, 1110));
      await withSupport(factory, make, config, weights, async (attn) => {
        const E = inputs.query as Tensor;
        const ref = referenceAttention(config, weights, { query: E });
        const s = attn.createSession({ maxLength: L });
        close('session vs the float64 run', await feed(s, E, 0, L, [1, 1, 3, 5, 2]), ref.attention);
        await s.dispose();
      });
    });
    it('a window + sinkTokens session far longer than s + w keeps s + w cache rows and matches one causal run', {
      timeout: timeout * 8,
    }, async () => {
      const w = 6;
      const config = {
        dModel: 8,
        numHeads: 2,
        numKVHeads: 1,
        causal: true,
        window: w,
        sinkTokens: 2,
        positionalEncoding: 'rotary' as const,
      };
      const L = 240;
      const { weights, inputs } = setup(config, 112, 2, L);
      await withSupport(factory, make, config, weights, async (attn) => {
        const E = inputs.query as Tensor;
        const ref = referenceAttention(config, weights, { query: E });
        const s = attn.createSession({ maxLength: 1_000_000 });
        expect(s.info.capacity).toBe(2 + w);
        await s.step(tokens(E, 0, 1));
        const live = attn.stats().liveTensors;
        // Steps of 1 to 9 tokens: once the ring is full, each runs one token at a time.
        const rest = await feed(s, E, 1, L - 1, [1, 2, 1, 9, 4, 1, 1, 7]);
        expect(attn.stats().liveTensors, 'the cache does not grow').toBe(live);
        close(
          'session vs the float64 run',
          rest,
          rowsOf({ shape: ref.attention.shape, data: Float32Array.from(ref.attention.data) }, 1, L - 2),
        );
        // The last token's weights over every position: zero outside the window and the sinks.
        const last = await s.step(tokens(E, L - 1, 1), { returnWeights: true });
        const wt = last.weights as Tensor;
        expect(wt.shape).toEqual([2, 2, 1, L]);
        close('last token weights', wt, lastQueryWeights(ref.weights));
        await s.dispose();
      });
    });
    it('a wrapped ring with ALiBi, softcap and sink logits (key positions from its two segments), device and host caches', {
      timeout: timeout * 8,
    }, async () => {
      const w = 5;
      const config = {
        dModel: 8,
        numHeads: 2,
        causal: true,
        window: w,
        sinkTokens: 1,
        softcap: 2,
        sinks: true,
        positionalEncoding: 'alibi' as const,
      };
      const L = 40;
      const { weights, inputs } = setup(config, 115, 2, L, sinkWeights(config, 1150));
      await withSupport(factory, make, config, weights, async (attn) => {
        const E = inputs.query as Tensor;
        const ref = referenceAttention(config, weights, { query: E });
        for (const cache of ['auto', 'host'] as const) {
          const s = attn.createSession({ maxLength: L, cache });
          expect(s.info.capacity).toBe(1 + w);
          const full = { shape: ref.attention.shape, data: Float32Array.from(ref.attention.data) };
          const got = await feed(s, E, 0, L - 1, [3, 1, 4, 1, 2]);
          close(`session (${cache} cache) vs the float64 run`, got, rowsOf(full, 0, L - 1));
          // The unfused chain reads the same key positions: the last token's weights.
          const last = await s.step(tokens(E, L - 1, 1), { returnWeights: true });
          close(`last token (${cache} cache)`, last.attention, rowsOf(full, L - 1, 1));
          close(`last token weights (${cache} cache)`, last.weights, lastQueryWeights(ref.weights));
          await s.dispose();
        }
      });
    });
    it('packed decoding: steps with sequenceIds equal one causal run over the packed row (plain and wrapped window ring)', {
      timeout: timeout * 8,
    }, async () => {
      const L = 30;
      // Batch 0: two sequences decoded in turn; batch 1: one after the other.
      const rows = [
        Array.from({ length: L }, (_, j) => (j < 4 ? 0 : j % 2)),
        Array.from({ length: L }, (_, j) => (j < 17 ? 5 : 8)),
      ];
      const configs: AttentionConfig[] = [
        { dModel: 8, numHeads: 2, causal: true, positionalEncoding: 'rotary' },
        {
          dModel: 8,
          numHeads: 2,
          causal: true,
          window: 4,
          sinkTokens: 1,
          sinks: true,
          positionalEncoding: 'alibi',
        },
      ];
      for (const [c, config] of configs.entries()) {
        const { weights, inputs } = setup(config, 116 + c, 2, L, sinkWeights(config, 1160 + c));
        const E = inputs.query as Tensor;
        const sequenceIds = ids(2, L, rows);
        await withSupport(factory, make, config, weights, (attn) =>
          packed(attn, async () => {
            const ref = referenceAttention(config, weights, { query: E, sequenceIds });
            const full = { shape: ref.attention.shape, data: Float32Array.from(ref.attention.data) };
            const s = attn.createSession({ maxLength: L + 1 });
            const sizes = [3, 1, 2, 5, 1];
            const out = new Float32Array(2 * L * 8);
            for (let at = 0, k = 0; at < L; ) {
              const t = Math.min(sizes[k++ % sizes.length] as number, L - at);
              const stepIds = ids(
                2,
                t,
                rows.map((r) => r.slice(at, at + t)),
              );
              const r = await s.step(tokens(E, at, t), { sequenceIds: stepIds });
              for (let b = 0; b < 2; b++)
                out.set(r.attention.data.subarray(b * t * 8, (b + 1) * t * 8), (b * L + at) * 8);
              at += t;
            }
            close(`packed session (config ${c}) vs the float64 run`, { shape: [2, L, 8], data: out }, full);
            // A packed session's steps all carry ids.
            const e = await s.step(tokens(E, 0, 1)).catch((x: unknown) => x);
            expect(isQkvError(e, 'INVALID_OPTION'), String(e)).toBe(true);
            expect((e as Error).message).toMatch(/^session.step options.sequenceIds: this session's steps are packed/);
            await s.dispose();
          }),
        );
      }
    });
    it('fork(): both continue from the same prefix and never change each other', {
      timeout: timeout * 4,
    }, async () => {
      const config = { dModel: 8, numHeads: 4, numKVHeads: 2, causal: true, positionalEncoding: 'rotary' as const };
      const L = 12;
      const { weights, inputs } = setup(config, 113, 2, L);
      const other = randomTensor([2, L, 8], rng(1130));
      await withSupport(factory, make, config, weights, async (attn) => {
        const E = inputs.query as Tensor;
        // Expected: one run over the prefix + E's tail, one over the prefix + other's tail.
        const splice = (tail: Tensor): Tensor => {
          const x = new Float32Array(E.data);
          for (let b = 0; b < 2; b++) x.set(tail.data.subarray((b * L + 5) * 8, (b + 1) * L * 8), (b * L + 5) * 8);
          return { shape: [2, L, 8], data: x };
        };
        const runE = await attn.run({ query: E });
        const runO = await attn.run({ query: splice(other) });
        const parent = attn.createSession({ maxLength: L });
        await feed(parent, E, 0, 5, [2, 3]);
        const child = parent.fork();
        expect(child.info).toEqual(parent.info);
        // Interleave: the child's tokens never reach the parent's cache, nor the reverse.
        const a1 = await parent.step(tokens(E, 5, 1));
        const b1 = await child.step(tokens(other, 5, 3));
        const a2 = await feed(parent, E, 6, L, [4, 2]);
        const b2 = await feed(child, other, 8, L, [1]);
        close('parent token 5', a1.attention, rowsOf(runE.attention, 5, 1));
        close('parent 6…', a2, rowsOf(runE.attention, 6, L - 6));
        close('fork 5…7', b1.attention, rowsOf(runO.attention, 5, 3));
        close('fork 8…', b2, rowsOf(runO.attention, 8, L - 8));
        // A fork outlives its parent.
        const grand = child.fork();
        await parent.dispose();
        await child.truncate(6);
        await grand.truncate(6);
        close(
          'after dispose and truncate',
          (await child.step(tokens(other, 6, 1))).attention,
          rowsOf(runO.attention, 6, 1),
        );
        await child.dispose();
        close('grandchild', (await grand.step(tokens(other, 6, 2))).attention, rowsOf(runO.attention, 6, 2));
        await grand.dispose();
      });
    });
    it('truncate(n): later steps equal a fresh session fed the first n tokens', {
      timeout: timeout * 4,
    }, async () => {
      const config = {
        dModel: 8,
        numHeads: 2,
        causal: true,
        window: 4,
        sinkTokens: 1,
        positionalEncoding: 'sinusoidal' as const,
      };
      const L = 30;
      const { weights, inputs } = setup(config, 114, 1, L);
      await withSupport(factory, make, config, weights, async (attn) => {
        const E = inputs.query as Tensor;
        const full = await attn.run({ query: E });
        const s = attn.createSession({ maxLength: L });
        await feed(s, E, 0, 5, [5]);
        await s.truncate(3); // before the ring is full (5 = s + w rows): every position is cached
        close('after truncate(3)', await feed(s, E, 3, 12, [2, 1]), rowsOf(full.attention, 3, 9));
        await feed(s, E, 12, 25, [1]);
        // Wrapped: only the sink and the last w positions are held; a rollback whose window is
        // still cached works, one past it is refused.
        await s.truncate(24);
        close('after truncate(24)', await feed(s, E, 24, L, [1, 3]), rowsOf(full.attention, 24, L - 24));
        const e = await s.truncate(3).catch((x: unknown) => x);
        expect(isQkvError(e, 'INVALID_OPTION'), String(e)).toBe(true);
        expect(s.length).toBe(L);
        await s.truncate(1); // only the sink token: still held
        close('after truncate(1)', await feed(s, E, 1, 4, [1]), rowsOf(full.attention, 1, 3));
        await s.dispose();
      });
    });
    it('rollback r: speculative rounds in a full ring (r + 1 drafts per step, truncate by up to r + 1) match one causal run, device and host caches', {
      timeout: timeout * 8,
    }, async () => {
      const [w, r] = [5, 3];
      const plain = { dModel: 8, numHeads: 2, numKVHeads: 1, causal: true, window: w, sinkTokens: 2 };
      const variants = [
        { ...plain, positionalEncoding: 'rotary' as const },
        { ...plain, positionalEncoding: 'alibi' as const, softcap: 2 },
      ];
      const L = 70;
      for (const config of variants) {
        const { weights, inputs } = setup(config, 116, 2, L);
        await withSupport(factory, make, config, weights, async (attn) => {
          const E = inputs.query as Tensor;
          const junk = randomTensor(E.shape as number[], rng(1160));
          const ref = referenceAttention(config, weights, { query: E });
          const full = { shape: ref.attention.shape, data: Float32Array.from(ref.attention.data) };
          const lw = ref.weights;
          for (const cache of ['auto', 'host'] as const) {
            const s = attn.createSession({ maxLength: 1_000_000, cache, rollback: r });
            expect(s.info.capacity, 'memory: s + w + r rows').toBe(2 + w + r);
            await feed(s, E, 0, 12, [12]);
            const live = attn.stats().liveTensors;
            // Each round: a verification step of k ≤ r + 1 tokens, the first `ok` the true ones,
            // the rest drafts rejected by truncate(); far past s + w + r and across the ring end.
            for (let n = 12, round = 0; n < L - r - 1; round++) {
              const k = 1 + (round % (r + 1));
              const ok = round % 3 === 0 ? k : round % k;
              const x = tokens(E, n, k);
              for (let b = 0; b < 2; b++) {
                const from = (b * k + ok) * 8;
                x.data.set(tokens(junk, n, k).data.subarray(from, (b + 1) * k * 8), from);
              }
              const step = await s.step(x, { returnWeights: round % 4 === 1 });
              const label = `round ${round} at ${n} (${cache} cache, ${config.positionalEncoding})`;
              if (ok > 0) close(label, rowsOf(step.attention, 0, ok), rowsOf(full, n, ok));
              if (step.weights && ok > 0)
                close(`${label} weights`, queryRows(step.weights, 0, ok), weightRows(lw, n, ok, n + k));
              await s.truncate(n + ok);
              n += ok;
              if (ok === 0) {
                close(`${label} after a full rollback`, (await s.step(tokens(E, n, 1))).attention, rowsOf(full, n, 1));
                n += 1;
              }
            }
            expect(attn.stats().liveTensors, 'the cache does not grow').toBe(live);
            const e = await s.truncate(s.length - r - 2).catch((x: unknown) => x);
            expect(isQkvError(e, 'INVALID_OPTION'), String(e)).toBe(true);
            await s.dispose();
          }
        });
      }
    });
  });

  describe('fuzz: sessions with the serving features vs the float64 reference', () => {
    const numRuns = Number((typeof process !== 'undefined' && process.env?.QKV_FUZZ_RUNS) || 12);
    it(`${numRuns} seeded sessions (window rings with rollback rows, sink tokens, ALiBi or RoPE, softcap, sinks, packed ids, step sizes)`, {
      timeout: timeout * 8,
    }, async () => {
      const arb = fc.record({
        numHeads: fc.constantFrom(1, 2),
        window: fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }),
        sinkTokens: fc.integer({ min: 0, max: 2 }),
        rollback: fc.integer({ min: 0, max: 3 }),
        pe: fc.constantFrom('none', 'alibi', 'rotary'),
        softcap: fc.option(fc.double({ min: 0.5, max: 4, noNaN: true }), { nil: null }),
        sinks: fc.boolean(),
        packing: fc.boolean(),
        L: fc.integer({ min: 1, max: 16 }),
        sizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
        dataSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      });
      await fc.assert(
        fc.asyncProperty(arb, async (p) => {
          const config: AttentionConfig = {
            dModel: 8,
            numHeads: p.numHeads,
            causal: true,
            scale: 2,
            positionalEncoding: p.pe as 'none' | 'alibi' | 'rotary',
            softcap: p.softcap,
            sinks: p.sinks,
            window: p.window,
            sinkTokens: p.window !== null && p.sinkTokens > 0 ? p.sinkTokens : null,
          };
          const { weights, inputs, random } = setup(config, p.dataSeed, 2, p.L, sinkWeights(config, p.dataSeed + 1));
          const E = inputs.query as Tensor;
          const rows = [0, 1].map(() => Array.from({ length: p.L }, () => Math.floor(random() * 2)));
          const sequenceIds = p.packing ? ids(2, p.L, rows) : undefined;
          await withSupport(factory, make, config, weights, (attn) =>
            packed(attn, async () => {
              const ref = referenceAttention(config, weights, { query: E, ...(sequenceIds ? { sequenceIds } : {}) });
              const s = attn.createSession({ maxLength: p.L, rollback: p.window === null ? 0 : p.rollback });
              const out = new Float32Array(2 * p.L * 8);
              for (let at = 0, k = 0; at < p.L; ) {
                const t = Math.min(p.sizes[k++ % p.sizes.length] as number, p.L - at);
                const stepIds = sequenceIds
                  ? ids(
                      2,
                      t,
                      rows.map((r) => r.slice(at, at + t)),
                    )
                  : undefined;
                const r = await s.step(tokens(E, at, t), stepIds ? { sequenceIds: stepIds } : {});
                for (let b = 0; b < 2; b++)
                  out.set(r.attention.data.subarray(b * t * 8, (b + 1) * t * 8), (b * p.L + at) * 8);
                at += t;
              }
              await s.dispose();
              const c = compareArrays('session attention', { shape: [2, p.L, 8], data: out }, ref.attention, {
                atol: 1e-4,
                rtol: 1e-3,
              });
              if (!c.ok) throw new Error(`${c.message}\ncase ${JSON.stringify(p)} (capacity ${s.info.capacity})`);
            }),
          );
        }),
        { seed: 118, numRuns },
      );
    });
  });
}
