import { describe, expect, it } from 'vitest';
import { fromCheckpoint, isQkvError, readSafetensors } from '../src/index.js';
import { type WriteTensor, writeSafetensors } from './safetensors-writer.js';

const seq = (n: number, scale = 0.01) => Array.from({ length: n }, (_, i) => ((i * 7) % 13) * scale - 0.05);
const t = (shape: number[], dtype: WriteTensor['dtype'] = 'F32'): WriteTensor => ({
  dtype,
  shape,
  data: seq(shape.reduce((a, b) => a * b, 1)),
});

async function refusedWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').not.toBeNull();
  if (!isQkvError(e) || e.code !== code) throw e;
  expect(e.message).toMatch(pattern);
}

describe('fromCheckpoint mappings', () => {
  it('torch-mha: splits in_proj rows and transposes nn.Linear [out, in] into [in, out]', async () => {
    const d = 4;
    const w = t([3 * d, d]);
    const file = await readSafetensors(
      writeSafetensors({
        in_proj_weight: w,
        in_proj_bias: t([3 * d]),
        'out_proj.weight': t([d, d]),
        'out_proj.bias': t([d]),
      }),
    );
    const { config, weights } = await fromCheckpoint(file, {
      format: 'torch-mha',
      config: { embed_dim: d, num_heads: 2 },
    });
    expect(config).toEqual({ dModel: 4, numHeads: 2, bias: true });
    // wk[i, o] = in_proj_weight[d + o, i]
    const wk = weights.wk as { shape: number[]; data: Float32Array };
    expect(wk.shape).toEqual([d, d]);
    for (let i = 0; i < d; i++)
      for (let o = 0; o < d; o++) expect(wk.data[i * d + o]).toBe(Math.fround(w.data[(d + o) * d + i] as number));
  });

  it('gpt2: c_attn columns Q | K | V, no transpose, causal', async () => {
    const d = 4;
    const cAttn = t([d, 3 * d]);
    const file = await readSafetensors(
      writeSafetensors({
        'h.2.attn.c_attn.weight': cAttn,
        'h.2.attn.c_attn.bias': t([3 * d]),
        'h.2.attn.c_proj.weight': t([d, d]),
        'h.2.attn.c_proj.bias': t([d]),
      }),
    );
    const { config, weights } = await fromCheckpoint(file, {
      format: 'gpt2',
      prefix: 'h.2.attn.',
      config: { n_embd: d, n_head: 2, scale_attn_by_inverse_layer_idx: true },
    });
    expect(config).toMatchObject({ dModel: 4, numHeads: 2, causal: true, scale: 1 / Math.sqrt(2) / 3 });
    const wv = weights.wv as { data: Float32Array };
    for (let i = 0; i < d; i++)
      for (let o = 0; o < d; o++)
        expect(wv.data[i * d + o]).toBe(Math.fround(cAttn.data[i * 3 * d + 2 * d + o] as number));
  });

  it('llama: GQA, head_dim ≠ d/H, rope_theta, and the biases the file has (Qwen2: q/k/v, no o)', async () => {
    const [d, H, KVH, hd] = [8, 2, 1, 6];
    const p = 'model.layers.0.self_attn.';
    const file = await readSafetensors(
      writeSafetensors({
        [`${p}q_proj.weight`]: t([H * hd, d], 'BF16'),
        [`${p}q_proj.bias`]: t([H * hd], 'BF16'),
        [`${p}k_proj.weight`]: t([KVH * hd, d], 'BF16'),
        [`${p}k_proj.bias`]: t([KVH * hd], 'BF16'),
        [`${p}v_proj.weight`]: t([KVH * hd, d], 'BF16'),
        [`${p}v_proj.bias`]: t([KVH * hd], 'BF16'),
        [`${p}o_proj.weight`]: t([d, H * hd], 'BF16'),
      }),
    );
    const cfg = {
      model_type: 'qwen2',
      hidden_size: d,
      num_attention_heads: H,
      num_key_value_heads: KVH,
      head_dim: hd,
      rope_theta: 1e6,
    };
    const { config, weights } = await fromCheckpoint(file, { format: 'llama', prefix: p, config: cfg });
    expect(config).toEqual({
      dModel: 8,
      numHeads: 2,
      numKVHeads: 1,
      headDim: 6,
      causal: true,
      bias: ['bq', 'bk', 'bv'],
      positionalEncoding: 'rotary',
      rotaryPairing: 'half',
      rotaryBase: 1e6,
    });
    expect(weights.bo).toBeUndefined();
    expect(weights.wo.shape).toEqual([H * hd, d]);
  });
});

describe('fromCheckpoint refuses what does not fit', () => {
  const gpt2File = () =>
    readSafetensors(
      writeSafetensors({
        'h.0.attn.c_attn.weight': t([4, 12]),
        'h.0.attn.c_attn.bias': t([12]),
        'h.0.attn.c_proj.weight': t([4, 4]),
        'h.0.attn.c_proj.bias': t([4]),
        'h.1.attn.c_attn.weight': t([4, 12]),
      }),
    );
  const cfg = { n_embd: 4, n_head: 2 };

  it('a prefix under which nothing is stored, naming the key looked for and where it is', async () => {
    await refusedWith(
      fromCheckpoint(await gpt2File(), { format: 'gpt2', prefix: 'h.7.attn.', config: cfg }),
      'INVALID_CHECKPOINT',
      /no tensor "h\.7\.attn\.c_attn\.weight" \(format gpt2, prefix "h\.7\.attn\.", key "c_attn\.weight"\); no tensor starts with prefix "h\.7\.attn\."; "c_attn\.weight" is found under prefix "h\.0\.attn\.", "h\.1\.attn\."/,
    );
  });
  it('a tensor missing under the prefix, listing what is there', async () => {
    await refusedWith(
      fromCheckpoint(await gpt2File(), { format: 'gpt2', prefix: 'h.1.attn.', config: cfg }),
      'INVALID_CHECKPOINT',
      /no tensor "h\.1\.attn\.c_attn\.bias" .*under that prefix the file has "c_attn\.weight"/,
    );
  });
  it('shapes that disagree with the config', async () => {
    await refusedWith(
      fromCheckpoint(await gpt2File(), { format: 'gpt2', prefix: 'h.0.attn.', config: { n_embd: 8, n_head: 2 } }),
      'INVALID_CHECKPOINT',
      /tensor "h\.0\.attn\.c_attn\.weight": expected \[8, 24\] \(n_embd × 3·n_embd\) from the gpt2 config, got \[4, 12\]/,
    );
  });
  it('config fields that are missing or of the wrong type, and options it does not know', async () => {
    const f = await gpt2File();
    await refusedWith(
      fromCheckpoint(f, { format: 'gpt2', prefix: 'h.0.attn.', config: { n_head: 2 } }),
      'INVALID_CONFIG',
      /gpt2 config\.n_embd: expected a positive integer, got undefined/,
    );
    await refusedWith(
      fromCheckpoint(f, { format: 'gtp2' as never, config: cfg }),
      'INVALID_OPTION',
      /options\.format: expected one of 'torch-mha', 'gpt2', 'bert', 'llama', got "gtp2"/,
    );
    await refusedWith(
      fromCheckpoint(f, { format: 'gpt2', config: cfg, layer: 0 } as never),
      'UNKNOWN_OPTION',
      /unknown option "layer"/,
    );
  });
  it('framework options qkv does not implement (never silently ignored)', async () => {
    const f = await readSafetensors(writeSafetensors({ 'q_proj.weight': t([4, 4]) }));
    await refusedWith(
      fromCheckpoint(f, {
        format: 'llama',
        config: { hidden_size: 4, num_attention_heads: 2, rope_scaling: { type: 'linear', factor: 2 } },
      }),
      'CAPABILITY',
      /llama config\.rope_scaling = \{"type":"linear","factor":2\}: scaled RoPE/,
    );
    await refusedWith(
      fromCheckpoint(f, { format: 'torch-mha', config: { embed_dim: 4, num_heads: 2, add_bias_kv: true } }),
      'CAPABILITY',
      /torch-mha config\.add_bias_kv = true/,
    );
    await refusedWith(
      fromCheckpoint(f, {
        format: 'bert',
        config: { hidden_size: 4, num_attention_heads: 2, position_embedding_type: 'relative_key' },
      }),
      'CAPABILITY',
      /position_embedding_type = "relative_key"/,
    );
  });
  it('Llama attention_bias true without the bias tensors', async () => {
    const f = await readSafetensors(
      writeSafetensors({
        'q_proj.weight': t([4, 4]),
        'k_proj.weight': t([4, 4]),
        'v_proj.weight': t([4, 4]),
        'o_proj.weight': t([4, 4]),
      }),
    );
    await refusedWith(
      fromCheckpoint(f, { format: 'llama', config: { hidden_size: 4, num_attention_heads: 2, attention_bias: true } }),
      'INVALID_CHECKPOINT',
      /no tensor "q_proj\.bias"/,
    );
  });
});
