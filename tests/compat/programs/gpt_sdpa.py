# A tiny character-level GPT (token + position embeddings, pre-norm blocks, causal attention via
# F.scaled_dot_product_attention(is_causal=True)), trained with AdamW and sampled greedily.
import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

text = "hello world. the quick brown fox jumps over the lazy dog. " * 4
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = [stoi[c] for c in text]
vocab, block, n_embd, n_head = len(chars), 8, 16, 2


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(n_embd, dim=2)
        q = q.view(B, T, n_head, C // n_head).transpose(1, 2)
        k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
        v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(vocab, n_embd)
        self.pos = nn.Embedding(block, n_embd)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok(idx) + self.pos(torch.arange(T))
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, vocab), targets.view(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, n):
        for _ in range(n):
            logits, _ = self(idx[:, -block:])
            nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


model = GPT()
r = random.Random(5)
with torch.no_grad():
    for name, p in model.named_parameters():
        scale = 1.0 if "ln" in name and name.endswith("weight") else 0.0 if "ln" in name else 0.3
        base = 1.0 if scale == 1.0 else 0.0
        vals = [base if scale in (0.0, 1.0) else r.gauss(0, scale) for _ in range(p.numel())]
        p.copy_(torch.tensor(vals).reshape(p.shape))
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
batches = random.Random(6)
losses = []
for _ in range(15):
    starts = [batches.randrange(len(data) - block - 1) for _ in range(4)]
    xb = torch.tensor([data[s : s + block] for s in starts])
    yb = torch.tensor([data[s + 1 : s + block + 1] for s in starts])
    _, loss = model(xb, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    losses.append(loss.item())
print(f"final loss {losses[-1]:.4f} (uniform would be {math.log(vocab):.4f})")
out = model.generate(torch.tensor([[stoi["t"]]]), 10)[0].tolist()
RESULT = {"losses": losses, "generated": out}
