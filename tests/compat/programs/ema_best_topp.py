# Habits of everyday training scripts: an EMA copy of the model made with copy.deepcopy, the best
# weights kept with copy.deepcopy(model.state_dict()) and restored, gradient-norm logging with
# torch.norm / torch.linalg.vector_norm, and nucleus (top-p) filtering of logits with sort + cumsum
# as GPT sampling code writes it; plus flip, repeat, new_zeros and round on the way.
import copy
import json
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

rng = random.Random(5)
X = [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(64)]
Y = [int(sum(x) > 0) + int(x[0] > 0.3) for x in X]  # 3 classes


def init_from_lists(model, seed):
    r = random.Random(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor([r.uniform(-0.5, 0.5) for _ in range(p.numel())]).reshape(p.shape))


model = nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Linear(12, 3))
init_from_lists(model, 7)
ema = copy.deepcopy(model)
for p in ema.parameters():
    p.requires_grad_(False)
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
x, y = torch.tensor(X), torch.tensor(Y)
x_aug = torch.cat([x, x.flip(1)])  # a mirrored copy of every point
y_aug = y.repeat(2)

losses, grad_norms, best_loss, best_state = [], [], float("inf"), None
for step in range(12):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x_aug), y_aug)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    grad_norms.append(torch.norm(torch.stack([torch.norm(g, 2) for g in grads]), 2).item())
    optimizer.step()
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.mul_(0.9).add_(pm, alpha=0.1)
    losses.append(loss.item())
    if loss.item() < best_loss and step < 6:  # "best" of the first half: an earlier model to restore
        best_loss, best_state = loss.item(), copy.deepcopy(model.state_dict())

with torch.no_grad():
    final = F.cross_entropy(model(x), y).item()
    model.load_state_dict(best_state)
    restored = F.cross_entropy(model(x_aug), y_aug).item()
    ema_loss = F.cross_entropy(ema(x), y).item()

    # nucleus filtering: keep the smallest set of tokens whose probability reaches top_p
    logits = model(x[:5]) * 3.0
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative > 0.8
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    filtered = sorted_logits.masked_fill(remove, float("-inf"))
    probs = F.softmax(filtered, dim=-1)
    kept = (~remove).sum(-1)
    padding = logits.new_zeros(2, 3)
    weight_l2 = torch.linalg.vector_norm(model[0].weight, dim=1)

RESULT = {
    "losses": losses,
    "grad_norms": grad_norms,
    "final": final,
    "restored": restored,
    "best_loss": best_loss,
    "ema_loss": ema_loss,
    "sorted_indices": sorted_indices.tolist(),
    "probs": probs.tolist(),
    "kept": kept.tolist(),
    "padding": padding.tolist(),
    "weight_l2": weight_l2.round(decimals=3).tolist(),
}
print(json.dumps(RESULT)[:80])
