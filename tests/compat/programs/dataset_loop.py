# A map-style Dataset, a DataLoader with a sampler, an MLP trained with RMSprop and a step LR
# schedule, a nested checkpoint saved and loaded mid-way, and evaluation under inference_mode.
import json
import os
import random
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

rng = random.Random(2)
POINTS = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(96)]
LABELS = [int(p[0] * p[1] > 0) + int(p[0] + p[1] > 0.5) for p in POINTS]  # 3 classes


class Points(Dataset):
    def __init__(self, points, labels):
        self.points, self.labels = points, labels

    def __len__(self):
        return len(self.points)

    def __getitem__(self, i):
        return torch.tensor(self.points[i]), self.labels[i]


class EpochShuffle(Sampler):
    """The same order in both libraries: drawn from Python's random, seeded per epoch."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def __iter__(self):
        order = list(range(self.n))
        random.Random(100 + self.epoch).shuffle(order)
        self.epoch += 1
        return iter(order)

    def __len__(self):
        return self.n


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def init_from_lists(model, seed):
    r = random.Random(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor([r.uniform(-0.5, 0.5) for _ in range(p.numel())]).reshape(p.shape))


device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = MLP()
init_from_lists(model, 3)
model.to(device)
optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.5)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
loader = DataLoader(Points(POINTS, LABELS), batch_size=16, sampler=EpochShuffle(len(POINTS)), num_workers=0)

losses = []
ckpt_dir = tempfile.mkdtemp()
path = os.path.join(ckpt_dir, "ckpt.pt")
for epoch in range(4):
    model.train()
    total = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
    scheduler.step()
    losses.append(total / len(POINTS))
    print(f"epoch {epoch}: loss {losses[-1]:.4f}")
    if epoch == 1:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "config": {"lr": 0.01, "hidden": [16]},
            },
            path,
        )
        ckpt = torch.load(path, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        assert ckpt["epoch"] == 1 and ckpt["config"] == {"lr": 0.01, "hidden": [16]}

model.eval()
with torch.inference_mode():
    logits = model(torch.tensor(POINTS))
    accuracy = (logits.argmax(dim=1) == torch.tensor(LABELS)).float().mean().item()
RESULT = {"losses": losses, "accuracy": accuracy, "logits0": logits[0].tolist()}
print(json.dumps(RESULT)[:80])
