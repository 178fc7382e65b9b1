# nanoGPT's attention written out by hand: a registered tril buffer, masked_fill with -inf,
# softmax, and sampling with top-k and torch.multinomial.
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

text = "abracadabra cadabra abra " * 6
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = [stoi[c] for c in text]
vocab, block, n_embd = len(chars), 6, 8


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.key = nn.Linear(n_embd, n_embd, bias=False)
        self.query = nn.Linear(n_embd, n_embd, bias=False)
        self.value = nn.Linear(n_embd, n_embd, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block, block)))

    def forward(self, x):
        B, T, C = x.shape
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * C**-0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        return wei @ self.value(x)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(vocab, n_embd)
        self.head = Head()
        self.out = nn.Linear(n_embd, vocab)

    def forward(self, idx):
        return self.out(self.head(self.tok(idx)))


model = Model()
r = random.Random(7)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor([r.gauss(0, 0.5) for _ in range(p.numel())]).reshape(p.shape))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for step in range(10):
    s = (step * 5) % (len(data) - block - 1)
    xb, yb = torch.tensor([data[s : s + block]]), torch.tensor([data[s + 1 : s + block + 1]])
    logits = model(xb)
    B, T, C = logits.shape
    loss = F.cross_entropy(logits.view(B * T, C), yb.view(B * T))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())

idx = torch.tensor([[0]])
with torch.no_grad():
    for _ in range(8):
        logits = model(idx[:, -block:])[:, -1, :]
        v, _ = torch.topk(logits, 3)
        logits[logits < v[:, [-1]]] = -float("Inf")
        probs = F.softmax(logits, dim=-1)
        idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
assert idx.shape == (1, 9)
RESULT = {"losses": losses}
