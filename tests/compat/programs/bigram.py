# The character-level bigram model of the "makemore" lectures: count table with int32 counts,
# a one-layer neural version trained by hand (W.data += -lr * W.grad), and sampling names with
# torch.multinomial.
import random

import torch
import torch.nn.functional as F

rng = random.Random(4)
syllables = ["ka", "ri", "mo", "an", "el", "su", "ta", "no", "li", "ve"]
words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(200)]
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
V = len(stoi)

N = torch.zeros((V, V), dtype=torch.int32)
xs, ys = [], []
for w in words:
    cs = ["."] + list(w) + ["."]
    for c1, c2 in zip(cs, cs[1:]):
        N[stoi[c1], stoi[c2]] += 1
        xs.append(stoi[c1])
        ys.append(stoi[c2])
P = (N + 1).float()
P /= P.sum(1, keepdims=True)

xs, ys = torch.tensor(xs), torch.tensor(ys)
num = xs.nelement()
W = torch.tensor([[rng.gauss(0, 1) for _ in range(V)] for _ in range(V)], requires_grad=True)
losses = []
for _ in range(30):
    xenc = F.one_hot(xs, num_classes=V).float()
    logits = xenc @ W
    counts = logits.exp()
    probs = counts / counts.sum(1, keepdims=True)
    loss = -probs[torch.arange(num), ys].log().mean() + 0.01 * (W**2).mean()
    losses.append(loss.item())
    W.grad = None
    loss.backward()
    W.data += -10 * W.grad

g = torch.Generator().manual_seed(2147483647)
samples = []
for _ in range(5):
    out, ix = [], 0
    while True:
        p = P[ix]
        ix = torch.multinomial(p, num_samples=1, replacement=True, generator=g).item()
        if ix == 0 or len(out) > 20:
            break
        out.append(itos[ix])
    samples.append("".join(out))
# the draws differ between libraries; each sample must use only letters the model can produce
assert all(set(s) <= set(chars) for s in samples)
RESULT = {"count_table_row0": N[0].tolist(), "P_row1": P[1].tolist(), "losses": losses}
