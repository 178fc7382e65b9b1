# Train in float32, then serve in half precision, as inference code does: the trained model is cast
# with .half() (and .to(torch.bfloat16)), inputs likewise, under torch.inference_mode(); the half
# weights are saved and loaded back, and keep their dtype.
import os
import random
import tempfile

import torch
from torch import nn

rng = random.Random(5)
CENTRES = [(1.5, 0.0), (-1.0, 1.2), (-0.5, -1.5)]


def make(n):
    xs, ys = [], []
    for _ in range(n):
        label = rng.randrange(3)
        cx, cy = CENTRES[label]
        xs.append([cx + rng.gauss(0, 0.6), cy + rng.gauss(0, 0.6)])
        ys.append(label)
    return torch.tensor(xs), torch.tensor(ys)


x_train, y_train = make(96)
x_test, y_test = make(48)

model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
r = random.Random(6)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor([r.uniform(-0.5, 0.5) for _ in range(p.numel())]).reshape(p.shape))
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
loss_fn = nn.CrossEntropyLoss()
for _ in range(40):
    optimizer.zero_grad()
    loss = loss_fn(model(x_train), y_train)
    loss.backward()
    optimizer.step()
print(f"float32 training loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    logits32 = model(x_test)

model.half()  # in place, as torch's Module.half()
with torch.inference_mode():
    logits16 = model(x_test.half())
    probs16 = logits16.float().softmax(dim=1)
acc16 = (logits16.argmax(1) == y_test).float().mean().item()
print(f"float16 accuracy {acc16:.3f}, logits {logits16.dtype}")

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "half.pt")
    torch.save(model.state_dict(), path)
    loaded = torch.load(path)
saved_half = all(v.dtype == torch.float16 for v in loaded.values())

model.to(torch.bfloat16)
with torch.inference_mode():
    logits_bf16 = model(x_test.to(torch.bfloat16))
acc_bf16 = (logits_bf16.argmax(1) == y_test).float().mean().item()
print(f"bfloat16 accuracy {acc_bf16:.3f}")

RESULT = {
    "loss": loss.item(),
    "logits32": logits32[:6].tolist(),
    "logits16": logits16[:6].tolist(),
    "is_half": logits16.dtype == torch.float16 and model[0].weight.dtype == torch.bfloat16,
    "probs16": probs16[:6].tolist(),
    "acc16": acc16,
    "saved_half": saved_half,
    "logits_bf16": logits_bf16[:6].tolist(),
    "acc_bf16": acc_bf16,
}
