import { checkpointUrl, compareArrays, loadCheckpointCase } from '@qkv/conformance';
import { describe, expect, it } from 'vitest';
import { createAttention, fromCheckpoint, readSafetensors } from '../src/index.js';

describe('qkv exports readSafetensors and fromCheckpoint', () => {
  it('loads a shipped GPT-2 layer by file path and reproduces the framework output', async () => {
    const c = await loadCheckpointCase('gpt2_leftpad_b2_l8_d24_h3');
    const file = await readSafetensors(checkpointUrl(c.weights_file));
    expect(file.metadata).toEqual({ format: 'pt' });
    const { config, weights } = await fromCheckpoint(file, { format: 'gpt2', prefix: 'h.1.attn.', config: c.config });
    const attn = await createAttention(config, weights, { backend: 'cpu' });
    try {
      const mask = c.inputs.attention_mask as { shape: number[]; data: number[] };
      const out = await attn.run({
        query: { shape: c.inputs.hidden_states?.shape as number[], data: c.inputs.hidden_states?.data as number[] },
        keyPaddingMask: { shape: mask.shape, data: mask.data.map((m) => 1 - m) },
      });
      const cmp = compareArrays('attention', out.attention, c.outputs.attention, c.tolerance);
      expect(cmp.ok, cmp.message).toBe(true);
    } finally {
      await attn.dispose();
    }
  });
});
