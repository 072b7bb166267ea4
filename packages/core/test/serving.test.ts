import { describe, expect, it } from 'vitest';
import {
  type AttentionConfig,
  BackendRegistry,
  buildGraph,
  createAttention,
  QkvError,
  requiredFeatures,
  resolveConfig,
  type Tensor,
} from '../src/index.js';
import { naiveFactory } from './naive-backend.js';

// Serving features (issue #18): validation of softcap, sinks, sinkTokens, sequenceIds and the
// session controls fork/truncate. Their numbers are checked on real backends (conformance).

let seed = 7;
const rnd = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
};
const T = (shape: number[]): Tensor => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, rnd),
});
const weights = (d: number) => ({ wq: T([d, d]), wk: T([d, d]), wv: T([d, d]), wo: T([d, d]) });

function code(f: () => unknown): QkvError {
  try {
    f();
  } catch (e) {
    if (e instanceof QkvError) return e;
    throw e;
  }
  throw new Error('expected a QkvError');
}
async function codeOf(p: Promise<unknown>): Promise<QkvError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof QkvError) return e;
    throw e;
  }
  throw new Error('expected a QkvError');
}

const base = { dModel: 4, numHeads: 2, bias: false } as const;

describe('serving config: softcap, sinks, sinkTokens', () => {
  it('resolves and lists the backend features they need', () => {
    const c = resolveConfig({ ...base, causal: true, softcap: 30, sinks: true, window: 4, sinkTokens: 2 });
    expect([c.softcap, c.sinks, c.sinkTokens]).toEqual([30, true, 2]);
    expect(requiredFeatures(c)).toEqual(['window', 'softcap', 'sinks', 'sinkTokens']);
    expect(resolveConfig({ ...base, softcap: null, sinkTokens: null }).softcap).toBeNull();
  });
  it('refuses softcap ≤ 0, NaN, ∞ and non-numbers', () => {
    for (const softcap of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5'] as never[]) {
      const e = code(() => resolveConfig({ ...base, softcap }));
      expect(e.code).toBe('INVALID_CONFIG');
      expect(e.message).toMatch(/^config.softcap: expected a finite number > 0 \(s = c·tanh\(s\/c\)\) or null, got /);
    }
  });
  it('refuses sinks that are not booleans', () => {
    const e = code(() => resolveConfig({ ...base, sinks: 1 as never }));
    expect([e.code, e.message]).toEqual(['INVALID_CONFIG', 'config.sinks: expected true or false, got 1']);
  });
  it('refuses sinkTokens without a window, and non-positive counts', () => {
    const e = code(() => resolveConfig({ ...base, causal: true, sinkTokens: 4 }));
    expect(e.code).toBe('INVALID_CONFIG');
    expect(e.message).toBe(
      'config.sinkTokens: needs config.window (sink tokens stay visible next to a sliding window), got sinkTokens 4 without a window',
    );
    expect(code(() => resolveConfig({ ...base, window: 2, sinkTokens: 0 })).message).toBe(
      'config.sinkTokens: expected a positive integer, got 0',
    );
  });
});

async function naive(config: AttentionConfig, w: object = weights(config.dModel)) {
  const registry = new BackendRegistry().register(naiveFactory({ supports: () => true }));
  return createAttention(config, w as never, { registry });
}

describe('weights.sinks', () => {
  it('is required with sinks: true, shaped [numHeads], finite', async () => {
    const config = { ...base, sinks: true };
    let e = await codeOf(naive(config));
    expect([e.code, e.message]).toEqual([
      'INVALID_DATA',
      'weights.sinks: missing; expected [2] (one logit per head) because config.sinks is true',
    ]);
    e = await codeOf(naive(config, { ...weights(4), sinks: T([4]) }));
    expect([e.code, e.message]).toEqual([
      'INVALID_SHAPE',
      'sinks: expected [2] (one sink logit per query head), got [4]',
    ]);
    e = await codeOf(naive(config, { ...weights(4), sinks: { shape: [2], data: [0, Number.NaN] } }));
    expect(e.code).toBe('INVALID_DATA');
    expect(e.message).toMatch(/^sinks.data\[1\]: expected a finite number, got NaN/);
  });
  it('is refused without sinks: true', async () => {
    const e = await codeOf(naive(base, { ...weights(4), sinks: T([2]) }));
    expect([e.code, e.message]).toEqual([
      'INVALID_OPTION',
      'weights.sinks: only used with config.sinks true, got config.sinks false',
    ]);
  });
  it('reach the softmax (and the fused kernel) as attrs, not as an uploaded tensor', () => {
    const g = buildGraph(
      resolveConfig({ ...base, sinks: true }),
      { batch: 1, queryLength: 3, keyLength: 3, selfAttention: true, hasKeyPaddingMask: false, hasAttnMask: false },
      { sinks: [0.5, -1] },
    );
    const w = g.nodes.find((n) => n.name === 'weights');
    expect(w?.attrs).toEqual({ rows: 6, cols: 3, sinks: [0.5, -1], queryLength: 3 });
    expect(g.nodes.some((n) => n.name === 'sinks')).toBe(false);
  });
});

describe('inputs.sequenceIds', () => {
  it('validates shape, integers and self-attention', async () => {
    const attn = await naive({ ...base, causal: true });
    const query = T([2, 3, 4]);
    let e = await codeOf(attn.run({ query, sequenceIds: { shape: [2, 2], data: [0, 0, 1, 1] } }));
    expect([e.code, e.message]).toEqual([
      'INVALID_SHAPE',
      'sequenceIds: expected [2, 3] (batch × length, one integer id per token), got [2, 2]',
    ]);
    e = await codeOf(attn.run({ query, sequenceIds: { shape: [2, 3], data: [0, 0, 1, 1, 1.5, 2] } }));
    expect([e.code, e.message]).toEqual([
      'INVALID_DATA',
      'sequenceIds.data[4]: expected an integer id with |id| ≤ 2^24 (exact in float32), got 1.5',
    ]);
    e = await codeOf(attn.run({ query, key: T([2, 3, 4]), value: T([2, 3, 4]), sequenceIds: T([2, 3]) }));
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toMatch(/^inputs.sequenceIds: packed sequences need self-attention/);
    await attn.dispose();
  });
  it('is refused with CAPABILITY by a backend that does not list it in Backend.inputs', async () => {
    const attn = await naive({ ...base, causal: true });
    const e2 = await codeOf(
      attn.run({ query: T([1, 3, 4]), sequenceIds: { shape: [1, 3], data: Int32Array.from([0, 0, 1]) } }),
    );
    expect([e2.code, e2.message]).toEqual([
      'CAPABILITY',
      `inputs.sequenceIds: backend "naive" does not run packed sequences (its Backend.inputs does not list 'sequenceIds'); use the cpu backend`,
    ]);
    await attn.dispose();
  });
});

describe('session.step sequenceIds', () => {
  const cfg = { ...base, causal: true };
  it('validates the step ids: [B, t] integers, on a backend that lists them, in every step or none', async () => {
    const attn = await naive(cfg);
    const s = attn.createSession({ maxLength: 8 });
    let e = await codeOf(s.step(T([2, 3, 4]), { sequenceIds: { shape: [2, 2], data: [0, 0, 1, 1] } }));
    expect([e.code, e.message]).toEqual([
      'INVALID_SHAPE',
      'sequenceIds: expected [2, 3] (batch × length, one integer id per token), got [2, 2]',
    ]);
    e = await codeOf(s.step(T([3, 4]), { sequenceIds: { shape: [3], data: [0, 0.5, 1] } }));
    expect([e.code, e.message]).toEqual([
      'INVALID_DATA',
      'sequenceIds.data[1]: expected an integer id with |id| ≤ 2^24 (exact in float32), got 0.5',
    ]);
    e = await codeOf(s.step(T([1, 2, 4]), { sequenceIds: { shape: [1, 2], data: [0, 1] } }));
    expect(e.code).toBe('CAPABILITY');
    expect(e.message).toMatch(/^inputs.sequenceIds: backend "naive" does not run packed sequences/);
    expect(s.length).toBe(0);
    // A session without ids stays without them (until reset()).
    await s.step(T([1, 2, 4]));
    e = await codeOf(s.step(T([1, 1, 4]), { sequenceIds: { shape: [1, 1], data: [0] } }));
    expect([e.code, e.message]).toEqual([
      'INVALID_OPTION',
      "session.step options.sequenceIds: this session's steps have no ids: a session is packed from its first step (or after reset()), got ids",
    ]);
    await s.reset();
    e = await codeOf(s.step(T([1, 1, 4]), { sequenceIds: { shape: [1, 1], data: [0] } }));
    expect(e.code).toBe('CAPABILITY');
    await attn.dispose();
  });
});

describe('session.fork / session.truncate', () => {
  const cfg = { ...base, causal: true };
  it('truncate refuses anything but an integer 0 … length', async () => {
    const attn = await naive(cfg);
    const s = attn.createSession({ maxLength: 8 });
    await s.step(T([1, 3, 4]));
    for (const bad of [-1, 4, 1.5, Number.NaN, '2'] as never[]) {
      const e = await codeOf(s.truncate(bad));
      expect(e.code).toBe('INVALID_OPTION');
      expect(e.message).toMatch(
        /^session.truncate\(length\): expected an integer 0 … 3 \(the tokens in the cache\), got /,
      );
    }
    await s.truncate(1);
    expect(s.length).toBe(1);
    expect((await s.step(T([1, 2, 4]))).positions).toEqual([1, 3]);
    await attn.dispose();
  });
  it('fork of a disposed session (or handle) is refused with DISPOSED', async () => {
    const attn = await naive(cfg);
    const s = attn.createSession({ maxLength: 8 });
    await s.dispose();
    expect(code(() => s.fork()).code).toBe('DISPOSED');
    const t = attn.createSession({ maxLength: 8 });
    await attn.dispose();
    expect(code(() => t.fork()).code).toBe('DISPOSED');
  });
  it('a fork continues from the steps queued before it; the two never change each other', async () => {
    const attn = await naive(cfg);
    const s = attn.createSession({ maxLength: 8 });
    const x = T([1, 5, 4]);
    const tok = (i: number): Tensor => ({ shape: [1, 1, 4], data: x.data.slice(i * 4, i * 4 + 4) });
    void s.step(tok(0));
    void s.step(tok(1));
    const f = s.fork(); // after both queued steps
    const a = await s.step(tok(2));
    const b = await f.step(tok(2));
    expect(b.positions).toEqual([2, 3]);
    expect([...b.attention.data]).toEqual([...a.attention.data]);
    // Diverge: the fork sees token 4 at position 3, the parent token 3; then both agree again
    // with fresh sessions fed the same tokens.
    const pa = await s.step(tok(3));
    const pf = await f.step(tok(4));
    const fresh = attn.createSession({ maxLength: 8 });
    for (const i of [0, 1, 2]) await fresh.step(tok(i));
    const fork2 = fresh.fork();
    expect([...(await fresh.step(tok(3))).attention.data]).toEqual([...pa.attention.data]);
    expect([...(await fork2.step(tok(4))).attention.data]).toEqual([...pf.attention.data]);
    await attn.dispose();
  });
});

describe('createSession rollback (window rings of w + r rows)', () => {
  const cfg = { ...base, causal: true };
  it('refuses a non-integer or negative rollback, and rollback > 0 without a window', async () => {
    const attn = await naive({ ...cfg, window: 4 });
    for (const bad of [-1, 1.5, Number.NaN, '2', null] as never[]) {
      const e = code(() => attn.createSession({ maxLength: 16, rollback: bad }));
      expect(e.code).toBe('INVALID_OPTION');
      expect(e.message).toMatch(/^createSession.rollback: expected an integer ≥ 0 .*, got /);
    }
    const plain = await naive(cfg);
    const e = code(() => plain.createSession({ maxLength: 16, rollback: 2 }));
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toMatch(/^createSession.rollback: needs config.window .*got rollback 2 with window null/);
    expect(plain.createSession({ maxLength: 16, rollback: 0 }).info.capacity).toBe(16);
  });

  it('sizes the cache s + w + r rows whatever maxLength', async () => {
    const attn = await naive({ ...cfg, window: 4, sinkTokens: 2 });
    expect(attn.createSession({ maxLength: 100000, rollback: 3 }).info.capacity).toBe(9);
    expect(attn.createSession({ maxLength: 100000 }).info.capacity).toBe(6);
  });
});
