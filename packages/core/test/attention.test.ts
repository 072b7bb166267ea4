import { describe, expect, it } from 'vitest';
import { BackendRegistry, createAttention, type FusedAttentionAttrs, QkvError } from '../src/index.js';
import { type NaiveBackend, naiveFactory } from './naive-backend.js';

function rand(seed: number) {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
}
const r = rand(7);
const T = (shape: number[]) => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, r),
});
const config = { dModel: 8, numHeads: 2, numKVHeads: 1, causal: true };
const weights = {
  wq: T([8, 8]),
  wk: T([8, 4]),
  wv: T([8, 4]),
  wo: T([8, 8]),
  bq: T([8]),
  bk: T([4]),
  bv: T([4]),
  bo: T([8]),
};

async function setup(withFused = false) {
  let backend: NaiveBackend | undefined;
  const registry = new BackendRegistry().register(
    naiveFactory({}, (b) => {
      backend = b;
      if (withFused) {
        // A stand-in fused kernel: the unfused chain, to observe that the executor picks it.
        (b as unknown as { fused: unknown }).fused = {
          fusedAttention: async (q: never, k: never, v: never, pad: never, am: never, attrs: FusedAttentionAttrs) => {
            b.calls.push('fusedAttention');
            const s = b.kernels.scores(q, k, attrs as never) as never;
            const sc = b.kernels.scale(s, attrs) as never;
            const m = b.kernels.mask(sc, pad, am, attrs as never) as never;
            const w = b.kernels.softmax(m, {
              rows: attrs.batch * attrs.numHeads * attrs.queryLength,
              cols: attrs.keyLength,
            }) as never;
            const out = b.kernels.weightedSum(w, v, attrs as never);
            for (const t of [s, sc, m, w]) b.dispose(t);
            return out;
          },
        };
      }
    }),
  );
  const attn = await createAttention(config, weights, { registry, backend: 'naive' });
  return { attn, backend: backend as NaiveBackend };
}

describe('createAttention + executor', () => {
  it('runs the graph, returns attention and residual, and frees every intermediate', async () => {
    const { attn, backend } = await setup();
    const before = backend.liveTensors();
    expect(before).toBe(8); // the uploaded weights
    const out = await attn.run({ query: T([2, 3, 8]) }, { returnWeights: true });
    expect(out.attention.shape).toEqual([2, 3, 8]);
    expect(out.weights?.shape).toEqual([2, 2, 3, 3]);
    expect(backend.liveTensors()).toBe(before);
    // causal: query 0 sees only key 0
    expect(out.weights?.data[0]).toBeCloseTo(1, 6);
    expect(out.weights?.data[1]).toBe(0);
  });

  it('residual = x + attention', async () => {
    const { attn } = await setup();
    const query = T([1, 4, 8]);
    const out = await attn.run({ query }, { capture: ['x'] });
    out.residual.data.forEach((v, i) =>
      expect(v).toBeCloseTo((query.data[i] as number) + (out.attention.data[i] as number), 5),
    );
  });

  it('uses the fused path unless a score-shaped step is requested, and captures materialise it', async () => {
    const { attn, backend } = await setup(true);
    const q = T([1, 4, 8]);
    const fused = await attn.run({ query: q });
    expect(fused.fused).toBe(true);
    expect(backend.calls).toContain('fusedAttention');
    backend.calls = [];
    const unfused = await attn.run({ query: q }, { capture: ['scores'] });
    expect(unfused.fused).toBe(false);
    expect(unfused.captured.scores?.shape).toEqual([1, 2, 4, 4]);
    expect(backend.calls).not.toContain('fusedAttention');
    unfused.attention.data.forEach((v, i) => expect(v).toBeCloseTo(fused.attention.data[i] as number, 5));
    expect(backend.liveTensors()).toBe(8);
  });

  it('answers unbatched inputs in kind', async () => {
    const { attn } = await setup();
    const out = await attn.run({ query: T([3, 8]) }, { returnWeights: true, capture: ['heads', 'q'] });
    expect(out.attention.shape).toEqual([3, 8]);
    expect(out.weights?.shape).toEqual([2, 3, 3]);
    expect(out.captured.heads?.shape).toEqual([3, 8]);
  });

  it('a failing kernel rejects the run and leaks nothing', async () => {
    const { attn, backend } = await setup();
    backend.failOn = 'softmax';
    await expect(attn.run({ query: T([1, 3, 8]) }, { returnWeights: true })).rejects.toThrow(
      'injected failure in softmax',
    );
    expect(backend.liveTensors()).toBe(8);
    backend.failOn = null;
    await expect(attn.run({ query: T([1, 3, 8]) })).resolves.toBeDefined();
  });

  it('validates weights with the expected shape and its meaning', async () => {
    const registry = new BackendRegistry().register(naiveFactory());
    const bad = { ...weights, wk: T([8, 8]) };
    await expect(createAttention(config, bad, { registry })).rejects.toThrow(
      'wk: expected [8, 4] (dModel × numKVHeads·headDim), got [8, 8]',
    );
    const { bo: _bo, ...missing } = weights;
    await expect(createAttention(config, missing, { registry })).rejects.toThrow(
      'weights.bo: missing; expected [8] (dModel) because config.bias is true',
    );
    await expect(createAttention({ ...config, bias: false }, weights, { registry })).rejects.toThrow(
      /weights.bq: config.bias is false/,
    );
    await expect(createAttention(config, { ...weights, wz: T([1]) } as never, { registry })).rejects.toThrow(
      /weights: unknown option "wz"/,
    );
  });

  it('validates inputs and run options before any work', async () => {
    const { attn, backend } = await setup();
    const calls = () => backend.calls.length;
    const n = calls();
    const expectErr = async (p: Promise<unknown>, code: string, msg: RegExp | string) => {
      const e = (await p.catch((x: unknown) => x)) as QkvError;
      expect(e).toBeInstanceOf(QkvError);
      expect(e.code).toBe(code);
      if (typeof msg === 'string') expect(e.message).toBe(msg);
      else expect(e.message).toMatch(msg);
    };
    await expectErr(
      attn.run({ query: T([2, 3, 7]) }),
      'INVALID_SHAPE',
      'query: expected last dimension dModel = 8, got [2, 3, 7]',
    );
    await expectErr(attn.run({ query: T([8]) }), 'INVALID_SHAPE', /query: expected \[B, Lq, 8\]/);
    await expectErr(attn.run({ query: T([1, 3, 8]), key: T([1, 3, 8]) }), 'INVALID_DATA', /value: missing/);
    await expectErr(
      attn.run({ query: T([1, 3, 8]), keyPaddingMask: T([1, 4]) }),
      'INVALID_SHAPE',
      'keyPaddingMask: expected [1, 3] (batch × key length; nonzero = padding), got [1, 4]',
    );
    await expectErr(
      attn.run({ query: T([1, 3, 8]), attnMask: T([3, 2]) }),
      'INVALID_SHAPE',
      /attnMask: expected \[3, 3\]/,
    );
    await expectErr(
      attn.run({ query: T([1, 3, 8]) }, { capture: ['logits' as never] }),
      'INVALID_CAPTURE',
      /unknown step "logits"/,
    );
    await expectErr(
      attn.run({ query: T([1, 3, 8]) }, { capture: ['positionalEncoding'] }),
      'INVALID_CAPTURE',
      /needs config.positionalEncoding/,
    );
    await expectErr(
      attn.run({ query: T([1, 3, 8]) }, { returnweights: true } as never),
      'UNKNOWN_OPTION',
      /unknown option "returnweights"/,
    );
    await expectErr(
      attn.run({ query: T([1, 3, 8]), mask: T([3]) } as never),
      'UNKNOWN_OPTION',
      /inputs: unknown option "mask"/,
    );
    expect(calls()).toBe(n);
  });

  it('causal with Lq < Lk aligns bottom-right (the last query sees every key)', async () => {
    const registry = new BackendRegistry().register(naiveFactory());
    const attn = await createAttention(
      { dModel: 8, numHeads: 2, causal: true },
      {
        wq: T([8, 8]),
        wk: T([8, 8]),
        wv: T([8, 8]),
        wo: T([8, 8]),
        bq: T([8]),
        bk: T([8]),
        bv: T([8]),
        bo: T([8]),
      },
      { registry },
    );
    const out = await attn.run(
      { query: T([1, 2, 8]), key: T([1, 5, 8]), value: T([1, 5, 8]) },
      { returnWeights: true },
    );
    const w = out.weights?.data as Float32Array;
    const row = (h: number, i: number) => [...w.subarray((h * 2 + i) * 5, (h * 2 + i + 1) * 5)];
    expect(row(0, 0).map((v) => v > 0)).toEqual([true, true, true, true, false]);
    expect(row(0, 1).map((v) => v > 0)).toEqual([true, true, true, true, true]);
  });

  it('dispose frees the weights and the backend; later runs reject with DISPOSED; in-flight runs settle', async () => {
    const { attn, backend } = await setup();
    const inFlight = attn.run({ query: T([1, 3, 8]) });
    const disposing = attn.dispose();
    await expect(inFlight).rejects.toMatchObject({ code: 'DISPOSED' });
    await disposing;
    expect(attn.disposed).toBe(true);
    expect(backend.liveTensors()).toBe(0);
    await expect(attn.run({ query: T([1, 3, 8]) })).rejects.toThrow(/was disposed/);
    await attn.dispose(); // idempotent
  });

  it('describe() prints the graph for a shape', async () => {
    const { attn } = await setup();
    expect(attn.describe({ batch: 1, queryLength: 4 })).toMatch(/^weights\s+softmax\s+\(masked\)\s+\[1, 2, 4, 4\]/m);
  });

  it('refuses tensors over the per-tensor limit before any work, naming the node', async () => {
    const { attn } = await setup();
    const { execute } = await import('../src/index.js');
    const graph = attn.graph({ batch: 1, queryLength: 64 });
    await expect(
      execute({
        graph,
        backend: {} as never,
        params: new Map(),
        feeds: new Map(),
        outputs: ['weights'],
        maxTensorElements: 1000,
      }),
    ).rejects.toThrow(/^scores: \[1, 2, 64, 64\] \(B × H × Lq × Lk\) has 8192 elements/);
  });
});
