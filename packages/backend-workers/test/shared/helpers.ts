import { cpuBackend } from '@qkv/backend-cpu';
import { rng } from '@qkv/conformance';
import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  type BackendFactory,
  BackendRegistry,
  type Tensor,
} from '@qkv/core';
import { type WorkersBackend, workersBackend } from '../../dist/index.js';

/** Deterministic uniform(−0.5, 0.5) values: the conformance suite's seeded generator, centred. */
export function random(seed: number): () => number {
  const next = rng(seed);
  return () => next() - 0.5;
}

export function randomTensor(shape: number[], next: () => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, next) };
}

/** Weights for a config with numKVHeads = numHeads and headDim = dModel / numHeads. */
export function weightsFor(config: AttentionConfig, seed: number): AttentionWeights {
  const next = random(seed);
  const { dModel: d } = config;
  const w: AttentionWeights = {
    wq: randomTensor([d, d], next),
    wk: randomTensor([d, d], next),
    wv: randomTensor([d, d], next),
    wo: randomTensor([d, d], next),
  };
  if (config.bias !== false) {
    w.bq = randomTensor([d], next);
    w.bk = randomTensor([d], next);
    w.bv = randomTensor([d], next);
    w.bo = randomTensor([d], next);
  }
  return w;
}

export function inputsFor(batch: number, length: number, dModel: number, seed: number): AttentionInputs {
  return { query: randomTensor([batch, length, dModel], random(seed)) };
}

/**
 * A registry holding cpu and a workers factory that remembers every backend instance it
 * creates, so tests can read its stats or inject a fault behind a handle.
 */
export function capturingRegistry(): { registry: BackendRegistry; created: WorkersBackend[] } {
  const created: WorkersBackend[] = [];
  const factory = workersFactory((b) => created.push(b));
  return { registry: new BackendRegistry().register(cpuBackend).register(factory), created };
}

/** The workers factory, calling `onCreate` with every backend instance it creates. */
export function workersFactory(onCreate: (b: WorkersBackend) => void): BackendFactory {
  return {
    ...workersBackend,
    create: async (options) => {
      const b = (await workersBackend.create(options)) as WorkersBackend;
      onCreate(b);
      return b;
    },
  };
}

/** Element-wise equality including NaN, for results that must be bit-identical to cpu's. */
export function expectSameData(name: string, got: Tensor, want: Tensor): void {
  if (got.shape.join() !== want.shape.join()) {
    throw new Error(`${name}: shape [${got.shape}] differs from [${want.shape}]`);
  }
  for (let i = 0; i < want.data.length; i++) {
    if (!Object.is(got.data[i], want.data[i])) {
      throw new Error(`${name}[${i}]: got ${got.data[i]}, cpu gave ${want.data[i]}`);
    }
  }
}
