#!/usr/bin/python3
"""Trains the demo's learned-heads model: a 2-layer, attention-only transformer whose layer-1 head
learns to look at the previous token and whose layer-2 head learns induction (Olsson et al. 2022,
"In-context Learning and Induction Heads").

    pnpm --filter demo train          # = /usr/bin/python3 train/train.py (Debian's python3-torch 1.13.1)

Writes, next to the demo's static files:
    public/learned/model.safetensors  the weights, Hugging Face GPT-2 names and layouts (F32)
    public/learned/config.json        GPT-2 config names + the training settings and measured scores
    train/train-log.txt               this run's log (loss every LOG_EVERY steps, final scores)

The model, in the seed note's terms (dimensions: B batch, L tokens, d = N_EMBD, V = VOCAB):
    E       = wte.weight[tokens]                    [B, L, d]
    X       = E + wpe.weight[0 … L−1]               the learned positional encoding
    E'      = X  + attention_1(X)                   layer 1 (qkv: positionalEncoding 'learned')
    E''     = E' + attention_2(E')                  layer 2 (qkv: positionalEncoding 'none')
    logits  = E'' · lm_head.weightᵀ                 [B, L, V], the next-token prediction
No LayerNorm and no MLP: each layer is exactly one qkv attention call (causal, biased, scale
1/√hd), so the page can run the trained weights through qkv step by step with nothing hidden.

The data has no meaning to learn, only repeats: each training sequence is the start token (BOS),
then uniformly random word ids in which a random segment comes back (once, or over and over: the
dense repeats are what gets training past its plateau within a few hundred steps). The only way to
predict a token better than 1/WORDS is to find
the earlier occurrence of the current token and copy what followed it, which takes two heads in
sequence: a previous-token head in layer 1 (writes "the token before me was A" into every
position) and an induction head in layer 2 (whose query for the current token A matches that
written key, i.e. the position right after the earlier A).

Deterministic: one seed (SEED) drives the data and the initialisation, one thread, deterministic
algorithms; a rerun on the same machine writes the same bytes.
"""

import json
import math
import os
import struct
import sys
import time

try:
    import torch
except ImportError:
    sys.exit('train.py needs PyTorch: apt-get install -y python3-torch (Debian\'s 1.13.1, for /usr/bin/python3)')

SEED = 21
WORDS = 64  # token ids for words; the demo maps words onto them (see src/learned/vocabulary.ts)
BOS = WORDS  # one more id: the start token at position 0 of every sequence, as GPT-2's <|endoftext|>
VOCAB = WORDS + 1
N_EMBD = 32
N_HEAD = 1  # per layer: one head each, so each head's job is unambiguous
N_LAYER = 2
N_POSITIONS = 41  # rows of the learned positional table = the training sequences' length
# Longest sequence the model is used on (the start token + 32 words). A position's previous-token
# behaviour is learned only where a later query reads that position as an induction key, which
# the last rows of the table rarely are (the very last never): so training runs 8 rows past it.
CONTEXT = 33
BATCH = 32
STEPS = 2000
LR = 3e-3
WEIGHT_DECAY = 0.01
LOG_EVERY = 100
SCORE_SEQUENCES = 32  # repeated random sequences for the scores
SCORE_HALF = (CONTEXT - 1) // 2  # each is the start token, n = 16 distinct random tokens, the same 16 again

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, '..', 'public', 'learned')
LOG_PATH = os.path.join(HERE, 'train-log.txt')


class Attention(torch.nn.Module):
    """Hugging Face GPT2Attention's parameters and eager math (causal, Conv1D weights [in, out])."""

    def __init__(self):
        super().__init__()
        # Without LayerNorm nothing rescales the residual stream, so the initial scales are set
        # for a stream of unit-variance entries: projections keep that variance.
        std = 1 / math.sqrt(N_EMBD)
        self.c_attn_weight = torch.nn.Parameter(torch.randn(N_EMBD, 3 * N_EMBD) * std)
        self.c_attn_bias = torch.nn.Parameter(torch.zeros(3 * N_EMBD))
        self.c_proj_weight = torch.nn.Parameter(torch.randn(N_EMBD, N_EMBD) * std)
        self.c_proj_bias = torch.nn.Parameter(torch.zeros(N_EMBD))

    def forward(self, x):
        B, L, d = x.shape
        hd = d // N_HEAD
        qkv = x @ self.c_attn_weight + self.c_attn_bias  # (B, L, 3d): Q | K | V
        q, k, v = qkv.split(d, dim=2)
        q = q.view(B, L, N_HEAD, hd).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, N_HEAD, hd).transpose(1, 2)
        v = v.view(B, L, N_HEAD, hd).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, L, L)
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        weights = scores.masked_fill(~causal, float('-inf')).softmax(dim=-1)
        heads = (weights @ v).transpose(1, 2).reshape(B, L, d)  # (B, L, d), heads concatenated
        return heads @ self.c_proj_weight + self.c_proj_bias, weights


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Parameter(torch.randn(VOCAB, N_EMBD))
        self.wpe = torch.nn.Parameter(torch.randn(N_POSITIONS, N_EMBD))
        self.layers = torch.nn.ModuleList(Attention() for _ in range(N_LAYER))
        self.lm_head = torch.nn.Parameter(torch.randn(VOCAB, N_EMBD) / N_EMBD)

    def forward(self, tokens):
        B, L = tokens.shape
        x = self.wte[tokens] + self.wpe[:L]  # X = E + PE
        all_weights = []
        for layer in self.layers:
            delta, weights = layer(x)
            x = x + delta  # E' = E + ΔE
            all_weights.append(weights)
        return x @ self.lm_head.T, all_weights

    def state_dict_gpt2(self):
        """The weights under Hugging Face GPT-2 names (lm_head untied, so it is stored)."""
        out = {'wte.weight': self.wte, 'wpe.weight': self.wpe, 'lm_head.weight': self.lm_head}
        for i, layer in enumerate(self.layers):
            out[f'h.{i}.attn.c_attn.weight'] = layer.c_attn_weight
            out[f'h.{i}.attn.c_attn.bias'] = layer.c_attn_bias
            out[f'h.{i}.attn.c_proj.weight'] = layer.c_proj_weight
            out[f'h.{i}.attn.c_proj.bias'] = layer.c_proj_bias
        return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def training_batch(gen):
    """[BATCH, N_POSITIONS + 1] (inputs and their next tokens): the start token, then random
    tokens with repeats. In every row a random segment of k tokens (first … first + k − 1) comes
    back: in even rows once, somewhere later (second … second + k − 1); in odd rows over and over,
    right after itself, up to the end of the row. Every token of a repeat is predictable from the
    earlier copy, and only from it: the tokens themselves are uniformly random."""
    L = N_POSITIONS
    tokens = torch.randint(0, WORDS, (BATCH, L), generator=gen)
    u = torch.rand(BATCH, 3, generator=gen)
    k = 2 + (u[:, 0] * (L // 2 - 1)).long()  # segment length, 2 … L/2
    first = (u[:, 1] * (L - 2 * k + 1)).long()
    second = first + k + (u[:, 2] * (L - 2 * k - first + 1)).long()
    pos = torch.arange(L).expand(BATCH, L)
    once = (pos >= second[:, None]) & (pos < (second + k)[:, None])
    source_once = torch.where(once, pos - (second - first)[:, None], pos)
    tiled = pos >= (first + k)[:, None]
    source_tiled = torch.where(tiled, first[:, None] + (pos - first[:, None]) % k[:, None], pos)
    odd = (torch.arange(BATCH) % 2 == 1)[:, None]
    body = tokens.gather(1, torch.where(odd, source_tiled, source_once))
    return torch.cat([torch.full((BATCH, 1), BOS), body], dim=1)


def repeated_random(gen, count, n):
    """[count, 1 + 2n]: the start token, n distinct random tokens, then the same n again (the
    scores' test sequences)."""
    rows = [torch.randperm(WORDS, generator=gen)[:n] for _ in range(count)]
    x = torch.stack(rows)
    return torch.cat([torch.full((count, 1), BOS), x, x], dim=1)


@torch.no_grad()
def scores(model, gen):
    """Per layer and head, with the start token at position 0 and the copies at 1 … n and
    n + 1 … 2n: the mean weight on the previous token (queries 2 … 2n, whose previous token is a
    word) and on the induction target (queries n + 1 … 2n attending to key i − n + 1, the token
    after the earlier occurrence of the current one), plus the next-token accuracy on the second
    copy."""
    n = SCORE_HALF
    tokens = repeated_random(gen, SCORE_SEQUENCES, n)
    logits, weights = model(tokens)
    i_prev = torch.arange(2, 2 * n + 1)
    i_ind = torch.arange(n + 1, 2 * n + 1)
    out = []
    for layer, w in enumerate(weights):  # w: (B, H, L, L)
        for head in range(w.shape[1]):
            prev = w[:, head, i_prev, i_prev - 1].mean().item()
            ind = w[:, head, i_ind, i_ind - n + 1].mean().item()
            out.append({'layer': layer + 1, 'head': head + 1, 'previousToken': prev, 'induction': ind})
    predicted = logits[:, n + 1 : 2 * n].argmax(-1)
    accuracy = (predicted == tokens[:, n + 2 : 2 * n + 1]).float().mean().item()
    return out, accuracy


def write_safetensors(path, tensors, metadata):
    """The safetensors layout: u64 header length, JSON header (space-padded to 8), F32 data."""
    header = {'__metadata__': metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = t.numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(',', ':')).encode('utf-8')
    raw += b' ' * (-len(raw) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data_gen = torch.Generator().manual_seed(SEED)
    model = Model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    lines = []

    def log(line):
        print(line, flush=True)
        lines.append(line)

    log(f'qkv learned-heads model: torch {torch.__version__}, seed {SEED}, {N_LAYER} layers x {N_HEAD} head, '
        f'd {N_EMBD}, vocab {VOCAB}, positions {N_POSITIONS} (used: {CONTEXT}), batch {BATCH}, steps {STEPS}, lr {LR}')
    log(f'chance loss ln({WORDS}) = {math.log(WORDS):.4f} (uniformly random word ids)')
    start = time.time()
    cpu_start = time.process_time()
    for step in range(1, STEPS + 1):
        tokens = training_batch(data_gen)
        logits, _ = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % LOG_EVERY == 0 or step == 1:
            log(f'step {step:5d}  loss {loss.item():.4f}  {time.time() - start:6.1f} s wall  {time.process_time() - cpu_start:6.1f} s cpu')
    score_gen = torch.Generator().manual_seed(SEED + 1)
    head_scores, accuracy = scores(model, score_gen)
    for s in head_scores:
        log(f"layer {s['layer']} head {s['head']}: previous-token {s['previousToken']:.4f}  "
            f"induction {s['induction']:.4f}")
    log(f'next-token accuracy on the repeated half: {accuracy:.4f}')
    log(f'trained in {time.time() - start:.1f} s wall, {time.process_time() - cpu_start:.1f} s cpu (one thread)')

    # A cross-check for whoever loads the file: the first score sequence's next-token logits at
    # its last position, computed here by PyTorch (the demo's tests recompute them through qkv).
    probe_ids = repeated_random(torch.Generator().manual_seed(SEED + 2), 1, SCORE_HALF)
    with torch.no_grad():
        probe_logits = model(probe_ids)[0][0, -1]

    os.makedirs(OUT_DIR, exist_ok=True)
    metadata = {'format': 'pt', 'seed': str(SEED), 'trainer': 'apps/demo/train/train.py'}
    write_safetensors(os.path.join(OUT_DIR, 'model.safetensors'), model.state_dict_gpt2(), metadata)
    config = {
        'model_type': 'gpt2',
        'n_embd': N_EMBD,
        'n_head': N_HEAD,
        'n_layer': N_LAYER,
        'n_positions': N_POSITIONS,
        'n_ctx_used': CONTEXT,
        'vocab_size': VOCAB,
        'bos_token_id': BOS,
        'scale_attn_weights': True,
        'scale_attn_by_inverse_layer_idx': False,
        'reorder_and_upcast_attn': False,
        'tie_word_embeddings': False,
        'attention_only': True,
        'layer_norm': False,
        'training': {
            'script': 'apps/demo/train/train.py',
            'seed': SEED,
            'steps': STEPS,
            'batch': BATCH,
            'lr': LR,
            'weight_decay': WEIGHT_DECAY,
            'final_loss': round(loss.item(), 4),
            'scores': [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()} for s in head_scores],
            'accuracy_repeated_half': round(accuracy, 4),
        },
        'probe': {
            'ids': probe_ids[0].tolist(),
            'last_logits': [round(x, 6) for x in probe_logits.tolist()],
        },
    }
    with open(os.path.join(OUT_DIR, 'config.json'), 'w') as f:
        f.write(json.dumps(config, indent=2) + '\n')
    with open(LOG_PATH, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
