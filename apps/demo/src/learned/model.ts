import {
  type AttentionConfig,
  type AttentionWeights,
  fromCheckpoint,
  QkvError,
  readSafetensors,
  type SafetensorsSource,
  type Tensor,
} from 'qkv';

/**
 * The trained model (train/train.py) as qkv sees it. The file holds Hugging Face GPT-2 names and
 * layouts; each layer's attention is mapped by qkv's own `fromCheckpoint` (format 'gpt2'), the
 * embeddings are read with `readSafetensors`. In the seed note's terms:
 *   E   = wte.weight[tokens]                          [B, L, d]
 *   layer 1: X = E + PE (PE = rows of wpe.weight),    E'  = X + ΔE   (positionalEncoding 'learned')
 *   layer 2:                                          E'' = E' + ΔE  (positionalEncoding 'none')
 *   logits = E'' · lm_head.weightᵀ                    [B, L, V]
 * There is no LayerNorm and no MLP, so these two attention calls are the whole model.
 */

/** config.json: GPT-2's config names, plus what train.py records about the run. */
export interface LearnedConfig {
  readonly model_type: 'gpt2';
  readonly n_embd: number;
  readonly n_head: number;
  readonly n_layer: number;
  readonly n_positions: number;
  /** The longest sequence the model is used on: the table's last rows were never trained as keys. */
  readonly n_ctx_used: number;
  readonly vocab_size: number;
  /** The start token every sequence begins with (position 0). */
  readonly bos_token_id: number;
  readonly attention_only: true;
  readonly layer_norm: false;
  readonly training: {
    readonly seed: number;
    readonly steps: number;
    readonly final_loss: number;
    readonly scores: readonly { layer: number; head: number; previousToken: number; induction: number }[];
  };
}

export interface LearnedLayer {
  readonly config: AttentionConfig;
  readonly weights: AttentionWeights;
}

export interface LearnedModel {
  readonly hf: LearnedConfig;
  /** V: token ids the model knows (the words' ids and the start token). */
  readonly vocab: number;
  /** Ids 0 … words − 1 are for words; the start token is the id `bos`. */
  readonly words: number;
  readonly bos: number;
  /** The longest sequence the model takes, start token included (config n_ctx_used, ≤ the
   *  positional table's rows). */
  readonly maxLength: number;
  readonly dModel: number;
  /** [V, d]: E of each token id. */
  readonly wte: Tensor;
  /** [V, d]: the unembedding, logits = E'' · lm_headᵀ. */
  readonly lmHead: Tensor;
  readonly layers: readonly LearnedLayer[];
}

function configError(field: string, expected: string, got: unknown): QkvError {
  return new QkvError(
    'INVALID_CONFIG',
    `learned model config.json ${field}: expected ${expected}, got ${JSON.stringify(got)}`,
  );
}

/** Checks that config.json describes the model this page can run exactly (no LayerNorm, no MLP). */
export function checkLearnedConfig(raw: unknown): LearnedConfig {
  if (raw === null || typeof raw !== 'object') throw configError('', 'an object', raw);
  const c = raw as Record<string, unknown>;
  if (c.model_type !== 'gpt2') throw configError('model_type', '"gpt2"', c.model_type);
  for (const k of ['n_embd', 'n_head', 'n_layer', 'n_positions', 'n_ctx_used', 'vocab_size']) {
    if (!Number.isInteger(c[k]) || (c[k] as number) < 1) throw configError(k, 'a positive integer', c[k]);
  }
  if (c.bos_token_id !== (c.vocab_size as number) - 1) {
    throw configError('bos_token_id', `the last id, vocab_size − 1 = ${(c.vocab_size as number) - 1}`, c.bos_token_id);
  }
  if ((c.n_ctx_used as number) > (c.n_positions as number)) {
    throw configError('n_ctx_used', `at most n_positions (${c.n_positions})`, c.n_ctx_used);
  }
  if (c.attention_only !== true)
    throw configError('attention_only', 'true (the page runs attention layers only)', c.attention_only);
  if (c.layer_norm !== false) throw configError('layer_norm', 'false (qkv runs no LayerNorm)', c.layer_norm);
  if (c.training === null || typeof c.training !== 'object')
    throw configError('training', 'the training record', c.training);
  return c as unknown as LearnedConfig;
}

/** Reads the weights through qkv's checkpoint loader; `config` is the parsed config.json. */
export async function loadLearnedModel(source: SafetensorsSource, config: unknown): Promise<LearnedModel> {
  const hf = checkLearnedConfig(config);
  const file = await readSafetensors(source);
  const expect = async (name: string, shape: readonly number[]): Promise<Tensor> => {
    const t = await file.tensor(name);
    if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) {
      throw new QkvError(
        'INVALID_SHAPE',
        `learned model ${name}: expected [${shape.join(', ')}] from config.json, got [${t.shape.join(', ')}]`,
      );
    }
    return t;
  };
  const d = hf.n_embd;
  const wte = await expect('wte.weight', [hf.vocab_size, d]);
  const wpe = await expect('wpe.weight', [hf.n_positions, d]);
  const lmHead = await expect('lm_head.weight', [hf.vocab_size, d]);
  const layers: LearnedLayer[] = [];
  for (let n = 0; n < hf.n_layer; n++) {
    const { config: attn, weights } = await fromCheckpoint(file, {
      format: 'gpt2',
      prefix: `h.${n}.attn.`,
      config: config as Readonly<Record<string, unknown>>,
    });
    // GPT-2 adds wpe once, before the first block; later layers read the residual stream as is.
    layers.push(
      n === 0
        ? { config: { ...attn, positionalEncoding: 'learned' }, weights: { ...weights, positionalEmbedding: wpe } }
        : { config: { ...attn, positionalEncoding: 'none' }, weights },
    );
  }
  const vocab = hf.vocab_size;
  return {
    hf,
    vocab,
    words: vocab - 1,
    bos: hf.bos_token_id,
    maxLength: hf.n_ctx_used,
    dModel: d,
    wte,
    lmHead,
    layers,
  };
}

/** E: the embedding rows of every id, [B, L, d]. */
export function embed(model: LearnedModel, ids: readonly (readonly number[])[]): Tensor {
  const d = model.dModel;
  const L = ids[0]?.length ?? 0;
  const data = new Float32Array(ids.length * L * d);
  ids.forEach((row, b) => {
    if (row.length !== L) throw new RangeError(`embed: sequence ${b} has ${row.length} tokens, sequence 0 has ${L}`);
    row.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= model.vocab)
        throw new RangeError(`embed: token id ${id} at [${b}, ${i}] is outside 0 … ${model.vocab - 1}`);
      data.set(model.wte.data.subarray(id * d, (id + 1) * d), (b * L + i) * d);
    });
  });
  return { shape: [ids.length, L, d], data };
}

/** logits = E'' · lm_headᵀ for one row of the residual stream (float64 sums), [V]. */
export function logitsAt(model: LearnedModel, residual: Tensor, b: number, i: number): Float64Array {
  const [, L, d] = residual.shape as [number, number, number];
  const row = residual.data.subarray((b * L + i) * d, (b * L + i + 1) * d);
  const out = new Float64Array(model.vocab);
  for (let v = 0; v < model.vocab; v++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += (row[c] as number) * (model.lmHead.data[v * d + c] as number);
    out[v] = s;
  }
  return out;
}

/** softmax(logits) as probabilities, [V]. */
export function softmax(logits: Float64Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const x of logits) max = Math.max(max, x);
  const out = logits.map((x) => Math.exp(x - max));
  const sum = out.reduce((a, x) => a + x, 0);
  return out.map((x) => x / sum);
}
