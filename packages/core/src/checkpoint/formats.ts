/**
 * One mapping per framework layout: the module's tensors (as the framework's state dict names
 * and stores them) and its config (in the framework's field names) → qkv's config and
 * row-vector weights (Q = X·Wq + bq, Wq is [in, out]). Conventions per format are in
 * docs/FEATURES.md ("Load a real model").
 */

import type { AttentionConfig } from '../config.js';
import { describeValue, QkvError } from '../errors.js';
import type { AttentionWeights } from '../inputs.js';
import {
  biasOption,
  CHECKPOINT_FORMATS,
  type CheckpointAttention,
  type CheckpointOptions,
  columnBlock,
  ModuleReader,
  rowBlock,
  transpose,
} from './mapping.js';
import type { SafetensorsFile } from './safetensors.js';

/**
 * torch.nn.MultiheadAttention: packed `in_proj_weight` [3d, d] (rows: Wq, Wk, Wv), or separate
 * `q_proj_weight` [d, d], `k_proj_weight` [d, kdim], `v_proj_weight` [d, vdim] when kdim/vdim
 * differ; `out_proj` is an nn.Linear. Causality comes only from attn_mask in PyTorch.
 */
async function torchMha(m: ModuleReader): Promise<CheckpointAttention> {
  const d = m.int('embed_dim');
  const H = m.int('num_heads');
  if (d % H !== 0) {
    throw new QkvError(
      'INVALID_CONFIG',
      `fromCheckpoint torch-mha config.num_heads: must divide embed_dim (${d}), got ${H}`,
    );
  }
  const kdim = m.optionalInt('kdim') ?? d;
  const vdim = m.optionalInt('vdim') ?? d;
  if (m.optionalBool('add_bias_kv', false)) m.refuse('add_bias_kv', 'the learned bias_k/bias_v rows are not supported');
  if (m.optionalBool('add_zero_attn', false)) m.refuse('add_zero_attn', 'the appended zero key/value is not supported');
  let projections: Pick<AttentionWeights, 'wq' | 'wk' | 'wv'>;
  if (kdim === d && vdim === d) {
    const w = await m.tensor('in_proj_weight', [3 * d, d], '3·embed_dim × embed_dim');
    projections = {
      wq: transpose(rowBlock(w, 0, d)),
      wk: transpose(rowBlock(w, d, 2 * d)),
      wv: transpose(rowBlock(w, 2 * d, 3 * d)),
    };
  } else {
    projections = {
      wq: transpose(await m.tensor('q_proj_weight', [d, d], 'embed_dim × embed_dim')),
      wk: transpose(await m.tensor('k_proj_weight', [d, kdim], 'embed_dim × kdim')),
      wv: transpose(await m.tensor('v_proj_weight', [d, vdim], 'embed_dim × vdim')),
    };
  }
  const weights: AttentionWeights = {
    ...projections,
    wo: transpose(await m.tensor('out_proj.weight', [d, d], 'embed_dim × embed_dim')),
  };
  const bias = m.optionalBool('bias', true);
  if (bias) {
    const b = await m.tensor('in_proj_bias', [3 * d], '3·embed_dim');
    weights.bq = rowBlock(b, 0, d);
    weights.bk = rowBlock(b, d, 2 * d);
    weights.bv = rowBlock(b, 2 * d, 3 * d);
    weights.bo = await m.tensor('out_proj.bias', [d], 'embed_dim');
  }
  const config: AttentionConfig = { dModel: d, numHeads: H, bias };
  if (kdim !== d) config.keyDim = kdim;
  if (vdim !== d) config.valueDim = vdim;
  return { config, weights };
}

/** Hugging Face GPT-2: Conv1D weights are already [in, out]; c_attn's columns are Q | K | V. */
async function gpt2(m: ModuleReader): Promise<CheckpointAttention> {
  const d = m.int('n_embd', 'hidden_size');
  const H = m.int('n_head', 'num_attention_heads');
  if (d % H !== 0)
    throw new QkvError('INVALID_CONFIG', `fromCheckpoint gpt2 config.n_head: must divide n_embd (${d}), got ${H}`);
  const hd = d / H;
  let scale = m.optionalBool('scale_attn_weights', true) ? 1 / Math.sqrt(hd) : 1;
  if (m.optionalBool('scale_attn_by_inverse_layer_idx', false)) {
    // HF divides the scores by layer_idx + 1, and the layer is only known from the key prefix.
    const layer = /(?:^|\.)h\.(\d+)\.attn\.$/.exec(m.prefix);
    if (!layer) {
      m.refuse(
        'scale_attn_by_inverse_layer_idx',
        `the layer index is read from a prefix like "h.3.attn.", got prefix "${m.prefix}"`,
      );
    }
    scale /= Number(layer[1]) + 1;
  }
  const cAttn = await m.tensor('c_attn.weight', [d, 3 * d], 'n_embd × 3·n_embd');
  const cAttnBias = await m.tensor('c_attn.bias', [3 * d], '3·n_embd');
  const weights: AttentionWeights = {
    wq: columnBlock(cAttn, 0, d),
    wk: columnBlock(cAttn, d, 2 * d),
    wv: columnBlock(cAttn, 2 * d, 3 * d),
    bq: rowBlock(cAttnBias, 0, d),
    bk: rowBlock(cAttnBias, d, 2 * d),
    bv: rowBlock(cAttnBias, 2 * d, 3 * d),
    wo: await m.tensor('c_proj.weight', [d, d], 'n_embd × n_embd'),
    bo: await m.tensor('c_proj.bias', [d], 'n_embd'),
  };
  const config: AttentionConfig = { dModel: d, numHeads: H, causal: true };
  if (scale !== 1 / Math.sqrt(hd)) config.scale = scale;
  return { config, weights };
}

/** Hugging Face BERT: nn.Linear query/key/value and output.dense (before dropout and LayerNorm). */
async function bert(m: ModuleReader): Promise<CheckpointAttention> {
  const d = m.int('hidden_size');
  const H = m.int('num_attention_heads');
  if (d % H !== 0) {
    throw new QkvError(
      'INVALID_CONFIG',
      `fromCheckpoint bert config.num_attention_heads: must divide hidden_size (${d}), got ${H}`,
    );
  }
  const pe = m.optionalString('position_embedding_type') ?? 'absolute';
  // Absolute position embeddings are added before the encoder, outside the attention module.
  if (pe !== 'absolute')
    m.refuse('position_embedding_type', "only 'absolute' is supported (relative_key scores are not)");
  const linear = async (key: string) => ({
    w: transpose(await m.tensor(`${key}.weight`, [d, d], 'hidden_size × hidden_size')),
    b: await m.tensor(`${key}.bias`, [d], 'hidden_size'),
  });
  const q = await linear('self.query');
  const k = await linear('self.key');
  const v = await linear('self.value');
  const o = await linear('output.dense');
  // A decoder BERT gets a causal mask from BertModel's extended attention mask.
  const causal = m.optionalBool('is_decoder', false);
  return {
    config: { dModel: d, numHeads: H, causal },
    weights: { wq: q.w, bq: q.b, wk: k.w, bk: k.b, wv: v.w, bv: v.b, wo: o.w, bo: o.b },
  };
}

/**
 * Hugging Face Llama / Mistral / Qwen2: nn.Linear q/k/v/o_proj, GQA through
 * num_key_value_heads, head_dim possibly ≠ hidden_size / heads, RoPE with rotate_half pairing
 * at base rope_theta, causal. Biases are the ones stored (Qwen2: q/k/v, never o).
 */
async function llama(m: ModuleReader): Promise<CheckpointAttention> {
  const d = m.int('hidden_size');
  const H = m.int('num_attention_heads');
  const KVH = m.optionalInt('num_key_value_heads') ?? H;
  const explicitHd = m.optionalInt('head_dim');
  if (explicitHd === undefined && d % H !== 0) {
    throw new QkvError(
      'INVALID_CONFIG',
      `fromCheckpoint llama config.num_attention_heads: must divide hidden_size (${d}) when head_dim is not given, got ${H}`,
    );
  }
  const hd = explicitHd ?? d / H;
  const modelType = m.optionalString('model_type') ?? 'llama';
  const theta = m.optionalNumber('rope_theta', 10000);
  if (m.raw('rope_scaling') !== undefined && m.raw('rope_scaling') !== null) {
    m.refuse('rope_scaling', 'scaled RoPE (linear, dynamic, yarn, llama3) is not supported; only plain RoPE');
  }
  if (m.optionalNumber('partial_rotary_factor', 1) !== 1)
    m.refuse('partial_rotary_factor', 'RoPE on part of a head is not supported');
  let window: number | undefined;
  if (modelType === 'mistral') window = m.optionalInt('sliding_window');
  else if (modelType === 'qwen2' && m.optionalBool('use_sliding_window', false)) {
    m.refuse('use_sliding_window', 'Qwen2 windows only some layers (max_window_layers); not supported');
  }
  const qOut = H * hd;
  const kvOut = KVH * hd;
  const proj = {
    q: ['q_proj', qOut, d, 'num_attention_heads·head_dim × hidden_size'],
    k: ['k_proj', kvOut, d, 'num_key_value_heads·head_dim × hidden_size'],
    v: ['v_proj', kvOut, d, 'num_key_value_heads·head_dim × hidden_size'],
    o: ['o_proj', d, qOut, 'hidden_size × num_attention_heads·head_dim'],
  } as const;
  const weights = {} as AttentionWeights;
  // Which biases the model has: Qwen2 always q/k/v and never o; Llama's attention_bias all four.
  const attentionBias = m.optionalBool('attention_bias', false);
  const required = (p: 'q' | 'k' | 'v' | 'o') =>
    modelType === 'qwen2' ? p !== 'o' : modelType === 'llama' ? attentionBias : false;
  const present = { bq: false, bk: false, bv: false, bo: false };
  for (const p of ['q', 'k', 'v', 'o'] as const) {
    const [key, out, inn, meaning] = proj[p];
    weights[`w${p}`] = transpose(await m.tensor(`${key}.weight`, [out, inn], meaning));
    if (m.has(`${key}.bias`) || required(p)) {
      weights[`b${p}`] = await m.tensor(`${key}.bias`, [out], meaning.split(' ×')[0] as string);
      present[`b${p}`] = true;
    }
  }
  const config: AttentionConfig = {
    dModel: d,
    numHeads: H,
    numKVHeads: KVH,
    headDim: hd,
    causal: true,
    bias: biasOption(present),
    positionalEncoding: 'rotary',
    rotaryPairing: 'half',
    rotaryBase: theta,
  };
  if (window !== undefined) config.window = window;
  return { config, weights };
}

const MAPPERS = { 'torch-mha': torchMha, gpt2, bert, llama } as const;
const OPTION_KEYS = new Set(['format', 'prefix', 'config']);

/**
 * Maps one attention module of a checkpoint onto qkv: `{ config, weights }` ready for
 * `createAttention`. Only the tensors under `prefix` that the format uses are read and decoded.
 */
export async function fromCheckpoint(file: SafetensorsFile, options: CheckpointOptions): Promise<CheckpointAttention> {
  if (options === null || typeof options !== 'object') {
    throw new QkvError(
      'INVALID_OPTION',
      `fromCheckpoint options: expected { format, prefix, config }, got ${describeValue(options)}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) {
      throw new QkvError(
        'UNKNOWN_OPTION',
        `fromCheckpoint options: unknown option "${key}"; expected one of format, prefix, config`,
      );
    }
  }
  if (!(CHECKPOINT_FORMATS as readonly unknown[]).includes(options.format)) {
    throw new QkvError(
      'INVALID_OPTION',
      `fromCheckpoint options.format: expected one of ${CHECKPOINT_FORMATS.map((f) => `'${f}'`).join(', ')}, got ${describeValue(options.format)}`,
    );
  }
  if (options.prefix !== undefined && typeof options.prefix !== 'string') {
    throw new QkvError(
      'INVALID_OPTION',
      `fromCheckpoint options.prefix: expected a string, got ${describeValue(options.prefix)}`,
    );
  }
  if (options.config === null || typeof options.config !== 'object') {
    throw new QkvError(
      'INVALID_OPTION',
      `fromCheckpoint options.config: expected the framework's config object, got ${describeValue(options.config)}`,
    );
  }
  return MAPPERS[options.format](new ModuleReader(file, options));
}
