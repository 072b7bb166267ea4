import {
  type Attention,
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  type BackendFactory,
  BackendRegistry,
  createAttention,
  QkvError,
  type Tensor,
} from '@qkv/core';
import { describe, expect, it } from 'vitest';
import { compareArrays } from './compare.js';
import { randomTensor, randomWeights, rng } from './random.js';
import { referenceAttention } from './reference.js';
import { describeFuzz } from './reliability-fuzz.js';
import { env, type ReliabilityOptions } from './reliability-options.js';

export type { ReliabilityOptions } from './reliability-options.js';

const rssMiB = (): number | null =>
  typeof process !== 'undefined' && typeof process.memoryUsage === 'function'
    ? process.memoryUsage().rss / 2 ** 20
    : null;

async function rejection(p: Promise<unknown>): Promise<QkvError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof QkvError) return e;
    throw new Error(`expected a QkvError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  throw new Error('expected the call to reject');
}

/**
 * The reliability suite (bad input, NaN policy, concurrency, dispose in flight, soak, fuzzing
 * against the float64 reference). One line runs it on a backend:
 *   describeReliability(myBackend)
 */
export function describeReliability(factory: BackendFactory, options: ReliabilityOptions = {}): void {
  const registry = new BackendRegistry().register(factory);
  const timeout = options.timeout ?? 120_000;
  const make = (config: AttentionConfig, weights: AttentionWeights): Promise<Attention> =>
    createAttention(config, weights, {
      backend: factory.name,
      registry,
      ...(options.backendOptions ? { backendOptions: options.backendOptions } : {}),
    });
  const base: AttentionConfig = { dModel: 16, numHeads: 4, numKVHeads: 2, causal: true };
  const weights = randomWeights(base, rng(1));

  describe(`reliability: ${factory.name}`, () => {
    it('bad input is refused with a typed error before any work', { timeout }, async () => {
      const attn = await make(base, weights);
      try {
        const live = attn.stats().liveTensors;
        const q = randomTensor([2, 5, 16], rng(2));
        const cases: [string, Promise<unknown>, string, RegExp][] = [
          [
            'wrong width',
            attn.run({ query: randomTensor([2, 5, 12], rng(3)) }),
            'INVALID_SHAPE',
            /^query: expected last dimension dModel = 16, got \[2, 5, 12\]/,
          ],
          [
            'wrong rank',
            attn.run({ query: randomTensor([16], rng(3)) }),
            'INVALID_SHAPE',
            /^query: expected \[B, Lq, 16\]/,
          ],
          [
            'length mismatch',
            attn.run({ query: { shape: [1, 2, 16], data: new Float32Array(31) } }),
            'INVALID_DATA',
            /^query.data: shape \[1, 2, 16\] needs 32 values, got 31/,
          ],
          [
            'int data',
            attn.run({ query: { shape: [1, 1, 16], data: new Int16Array(16) as unknown as Float32Array } }),
            'INVALID_DATA',
            /^query.data: expected Float32Array, Float64Array or number\[\], got Int16Array\(16\)/,
          ],
          [
            'padding shape',
            attn.run({ query: q, keyPaddingMask: randomTensor([2, 4], rng(4)) }),
            'INVALID_SHAPE',
            /^keyPaddingMask: expected \[2, 5\]/,
          ],
          [
            'attnMask shape',
            attn.run({ query: q, attnMask: randomTensor([5, 6], rng(4)) }),
            'INVALID_SHAPE',
            /^attnMask: expected \[5, 5\]/,
          ],
          ['key without value', attn.run({ query: q, key: q }), 'INVALID_DATA', /^value: missing/],
          [
            'unknown input',
            attn.run({ query: q, mask: q } as unknown as AttentionInputs),
            'UNKNOWN_OPTION',
            /^inputs: unknown option "mask"/,
          ],
          [
            'unknown option',
            attn.run({ query: q }, { weights: true } as never),
            'UNKNOWN_OPTION',
            /^run options: unknown option "weights"/,
          ],
          [
            'bad capture',
            attn.run({ query: q }, { capture: ['logits'] as never }),
            'INVALID_CAPTURE',
            /unknown step "logits"/,
          ],
          [
            'heads not dividing',
            make({ dModel: 10, numHeads: 4 }, weights),
            'INVALID_CONFIG',
            /^config.numHeads: must divide dModel \(10\)/,
          ],
          [
            'kv heads',
            make({ dModel: 16, numHeads: 4, numKVHeads: 3 }, weights),
            'INVALID_CONFIG',
            /^config.numKVHeads: numHeads \(4\) must be a multiple of numKVHeads, got 3/,
          ],
          [
            'non-integer',
            make({ dModel: 16.5, numHeads: 4 }, weights),
            'INVALID_CONFIG',
            /^config.dModel: expected a positive integer, got 16.5/,
          ],
          [
            'zero',
            make({ dModel: 16, numHeads: 0 }, weights),
            'INVALID_CONFIG',
            /^config.numHeads: expected a positive integer, got 0/,
          ],
          [
            'weight shape',
            make({ dModel: 16, numHeads: 4 }, weights),
            'INVALID_SHAPE',
            /^wk: expected \[16, 16\] \(dModel × numKVHeads·headDim\), got \[16, 8\]/,
          ],
          [
            'unknown config',
            make({ ...base, heads: 2 } as AttentionConfig, weights),
            'UNKNOWN_OPTION',
            /^config: unknown option "heads"/,
          ],
        ];
        for (const [what, p, code, message] of cases) {
          const e = await rejection(p);
          expect(e.code, what).toBe(code);
          expect(e.message, what).toMatch(message);
        }
        expect(attn.stats().liveTensors, 'no tensor left behind by refused calls').toBe(live);
      } finally {
        await attn.dispose();
      }
    });

    it('NaN and ±Infinity in inputs or weights are refused, naming the index; −Infinity in attnMask masks', {
      timeout,
    }, async () => {
      const attn = await make({ ...base, causal: false }, weights);
      try {
        const live = attn.stats().liveTensors;
        const bad = (v: number, at: number) => {
          const t = randomTensor([1, 4, 16], rng(5));
          t.data[at] = v;
          return t;
        };
        const cases: [string, Promise<unknown>, RegExp][] = [
          [
            'NaN query',
            attn.run({ query: bad(Number.NaN, 35) }),
            /^query\.data\[35\]: expected a finite number, got NaN/,
          ],
          [
            '+∞ query',
            attn.run({ query: bad(Number.POSITIVE_INFINITY, 5) }),
            /^query\.data\[5\]: expected a finite number, got Infinity/,
          ],
          [
            '−∞ query',
            attn.run({ query: bad(Number.NEGATIVE_INFINITY, 0) }),
            /^query\.data\[0\]: expected a finite number, got -Infinity/,
          ],
          [
            'NaN attnMask',
            attn.run({ query: bad(0, 0), attnMask: { shape: [4, 4], data: new Float32Array(16).fill(Number.NaN) } }),
            /^attnMask\.data\[0\]: expected a finite number, got NaN;.*−Infinity is allowed here/,
          ],
          [
            'NaN padding',
            attn.run({ query: bad(0, 0), keyPaddingMask: { shape: [1, 4], data: [0, Number.NaN, 0, 0] } }),
            /^keyPaddingMask\.data\[1\]: expected a finite number/,
          ],
          [
            'NaN weight',
            make(base, { ...weights, wq: { shape: [16, 16], data: new Float32Array(256).fill(Number.NaN) } }),
            /^wq\.data\[0\]: expected a finite number, got NaN/,
          ],
        ];
        for (const [what, p, message] of cases) {
          const e = await rejection(p);
          expect(e.code, what).toBe('INVALID_DATA');
          expect(e.message, what).toMatch(message);
        }
        expect(attn.stats().liveTensors).toBe(live);
        // A row hidden entirely by −Infinity in attnMask: zero weights, output = bo.
        const am = randomTensor([4, 4], rng(7));
        am.data.fill(Number.NEGATIVE_INFINITY, 4, 8);
        const masked = await attn.run(
          { query: randomTensor([1, 4, 16], rng(8)), attnMask: am },
          { returnWeights: true },
        );
        const w = masked.weights as Tensor;
        for (let h = 0; h < 4; h++)
          expect([...w.data.subarray((h * 4 + 1) * 4, (h * 4 + 2) * 4)]).toEqual([0, 0, 0, 0]);
        const bo = (weights.bo as Tensor).data;
        masked.attention.data.subarray(16, 32).forEach((v, i) => expect(v).toBeCloseTo(bo[i] as number, 5));
      } finally {
        await attn.dispose();
      }
    });

    it(`${options.concurrency ?? 100} concurrent runs on one handle, mixed shapes, all correct`, {
      timeout,
    }, async () => {
      const attn = await make(base, weights);
      try {
        const n = options.concurrency ?? 100;
        const inputs = Array.from({ length: n }, (_, i) => ({
          query: randomTensor([1 + (i % 3), 1 + (i % 9), 16], rng(100 + i)),
        }));
        const outs = await Promise.all(inputs.map((x, i) => attn.run(x, { returnWeights: i % 2 === 0 })));
        outs.forEach((o, i) => {
          const ref = referenceAttention(base, weights, inputs[i] as AttentionInputs);
          const c = compareArrays(`run ${i}`, o.attention, ref.attention);
          expect(c.ok, c.message).toBe(true);
        });
        expect(attn.stats().inFlight).toBe(0);
      } finally {
        await attn.dispose();
      }
    });

    it('dispose() while runs are in flight rejects them with DISPOSED, never hangs; the next handle works', {
      timeout,
    }, async () => {
      const attn = await make(base, weights);
      const runs = Array.from({ length: 8 }, (_, i) => attn.run({ query: randomTensor([2, 32, 16], rng(200 + i)) }));
      await attn.dispose();
      const settled = await Promise.allSettled(runs);
      for (const s of settled) {
        if (s.status === 'rejected') expect((s.reason as QkvError).code).toBe('DISPOSED');
      }
      expect((await rejection(attn.run({ query: randomTensor([1, 2, 16], rng(9)) }))).code).toBe('DISPOSED');
      const next = await make(base, weights);
      try {
        expect((await next.run({ query: randomTensor([1, 3, 16], rng(10)) })).attention.shape).toEqual([1, 3, 16]);
      } finally {
        await next.dispose();
      }
    });

    it('soak: mixed shapes, memory flat after warm-up', { timeout: timeout * 3 }, async () => {
      const runs = Number(env('QKV_SOAK_RUNS') ?? options.soakRuns ?? 2000);
      const attn = await make(base, weights);
      try {
        const random = rng(11);
        const shapes = [
          [1, 1],
          [2, 7],
          [1, 33],
          [3, 12],
        ] as const;
        const query = shapes.map(([b, l]) => randomTensor([b, l, 16], random));
        const pad = shapes.map(([b, l]) => ({
          shape: [b, l],
          data: Float32Array.from({ length: b * l }, (_, i) => (i % 5 === 4 ? 1 : 0)),
        }));
        const once = (i: number) =>
          attn.run(
            { query: query[i % 4] as Tensor, ...(i % 3 === 0 ? { keyPaddingMask: pad[i % 4] as Tensor } : {}) },
            { returnWeights: i % 2 === 0 },
          );
        const warm = Math.min(200, Math.floor(runs / 10));
        for (let i = 0; i < warm; i++) await once(i);
        const liveBefore = attn.stats().liveTensors;
        const resBefore = options.resources?.();
        const rssBefore = rssMiB();
        for (let i = warm; i < runs; i++) await once(i);
        const liveAfter = attn.stats().liveTensors;
        const rssAfter = rssMiB();
        expect(liveAfter, 'live backend tensors').toBe(liveBefore);
        if (resBefore !== undefined) expect(options.resources?.(), 'backend resources').toBe(resBefore);
        if (rssBefore !== null && rssAfter !== null) {
          expect(
            rssAfter - rssBefore,
            `RSS grew from ${rssBefore.toFixed(0)} to ${rssAfter.toFixed(0)} MiB`,
          ).toBeLessThan(options.rssBoundMiB ?? 64);
        }
      } finally {
        await attn.dispose();
      }
    });

    describeFuzz(make, options, timeout);
  });
}
