# Fit y = sin(x) with a cubic by hand, the way the official "learning PyTorch with examples"
# tutorial does: tensors with requires_grad, loss.backward(), and the update `a -= lr * a.grad`
# under torch.no_grad(), then zeroing the gradients by assignment.
import math
import random

import torch

rng = random.Random(0)
xs = [-math.pi + 2 * math.pi * i / 199 for i in range(200)]
x = torch.tensor(xs, dtype=torch.float64)
y = torch.sin(x) if hasattr(torch, "sin") else x.sin()

a, b, c, d = (torch.tensor(rng.uniform(-1, 1), dtype=torch.float64, requires_grad=True) for _ in range(4))

learning_rate = 1e-6
losses = []
for t in range(300):
    y_pred = a + b * x + c * x**2 + d * x**3
    loss = (y_pred - y).pow(2).sum()
    if t % 50 == 49:
        losses.append(loss.item())
    loss.backward()
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad
        a.grad = None
        b.grad = None
        c.grad = None
        d.grad = None

print(f"Result: y = {a.item():.4f} + {b.item():.4f} x + {c.item():.4f} x^2 + {d.item():.4f} x^3")
RESULT = {"losses": losses, "coefficients": [a.item(), b.item(), c.item(), d.item()]}
