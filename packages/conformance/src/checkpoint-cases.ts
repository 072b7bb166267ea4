import {
  type AttentionConfig,
  type AttentionInputs,
  type AttentionWeights,
  type CheckpointFormat,
  fromCheckpoint,
  readSafetensors,
  type SafetensorsFile,
  type TensorLike,
} from '@qkv/core';
import { readJson } from './golden.js';

/**
 * Real-layout checkpoints (torch MHA, GPT-2, BERT, Llama/Qwen2/Mistral) with PyTorch float64
 * outputs, copied unchanged from the project's shared conformance folder; `checkpoints/README.md`
 * in this package gives the format and each framework's mask convention.
 */
export const CHECKPOINT_CASES = [
  'bert_padding_b2_l6_d32_h4',
  'gpt2_causal_b1_l9_d32_h4',
  'gpt2_leftpad_b2_l8_d24_h3',
  'llama3_theta500k_hd16_b1_l12_d48_h4_kv2',
  'llama_gqa_b2_l10_d64_h8_kv2',
  'mistral_f16_b1_l11_d32_h4_kv2',
  'qwen2_bf16_bias_b2_l7_d32_h4_kv2',
  'torch_mha_cross_kdim_vdim_b2_lq5_s7_d16_h2',
  'torch_mha_encoder_causal_b2_l8_d32_h4',
  'torch_mha_self_padding_b2_l7_d16_h4',
] as const;
export type CheckpointCaseName = (typeof CHECKPOINT_CASES)[number];

interface CaseTensor {
  shape: number[];
  data: number[];
  convention?: string;
}

export interface CheckpointCase {
  name: string;
  format: CheckpointFormat;
  prefix: string;
  weights_file: string;
  config: Record<string, unknown>;
  dtype: 'F32' | 'F16' | 'BF16';
  causal: boolean;
  inputs: Partial<
    Record<
      'hidden_states' | 'key' | 'value' | 'key_padding_mask' | 'attn_mask' | 'attention_mask' | 'position_ids',
      CaseTensor
    >
  >;
  outputs: { attention: CaseTensor; weights: CaseTensor };
  tolerance: { atol: number; rtol: number };
  fullyMaskedRows?: [number, number][];
}

/** The URL of a file in this package's checkpoints folder (a file: URL in Node, http in a browser). */
export function checkpointUrl(file: string): URL {
  return new URL(`../checkpoints/${file}`, import.meta.url);
}

export function loadCheckpointCase(name: CheckpointCaseName): Promise<CheckpointCase> {
  return readJson(checkpointUrl(`${name}.json`)) as Promise<CheckpointCase>;
}

export function openCheckpoint(c: CheckpointCase): Promise<SafetensorsFile> {
  return readSafetensors(checkpointUrl(c.weights_file));
}

const f32 = (t: CaseTensor): TensorLike => ({ shape: t.shape, data: Float32Array.from(t.data) });

/**
 * The framework's inputs in qkv's terms, as the README's mapping says: torch's
 * key_padding_mask (1 = padding) as is, its float attn_mask with −1e30 as −∞, and Hugging Face's
 * attention_mask (1 = keep) as keyPaddingMask = 1 − attention_mask.
 */
export function checkpointInputs(c: CheckpointCase): AttentionInputs {
  const i = c.inputs;
  const inputs: AttentionInputs = { query: f32(i.hidden_states as CaseTensor) };
  if (i.key && i.value) {
    inputs.key = f32(i.key);
    inputs.value = f32(i.value);
  }
  if (i.key_padding_mask) inputs.keyPaddingMask = f32(i.key_padding_mask);
  if (i.attn_mask) {
    const m = i.attn_mask;
    inputs.attnMask = { shape: m.shape, data: Float32Array.from(m.data, (v) => (v <= -1e30 ? -Infinity : v)) };
  }
  // Llama's position_ids [B, L] (0 … L−1 in these files, the model's default) → positionIds.
  if (i.position_ids) inputs.positionIds = f32(i.position_ids);
  if (i.attention_mask) {
    const m = i.attention_mask;
    inputs.keyPaddingMask = { shape: m.shape, data: Float32Array.from(m.data, (v) => 1 - v) };
  }
  return inputs;
}

/** readSafetensors + fromCheckpoint, exactly as a user would call them. */
export async function checkpointToApi(
  c: CheckpointCase,
): Promise<{ config: AttentionConfig; weights: AttentionWeights; inputs: AttentionInputs }> {
  const file = await openCheckpoint(c);
  const { config, weights } = await fromCheckpoint(file, { format: c.format, prefix: c.prefix, config: c.config });
  return { config, weights, inputs: checkpointInputs(c) };
}
