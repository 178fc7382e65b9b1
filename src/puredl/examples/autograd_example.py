"""Automatic differentiation: gradients of scalar, element-wise, matrix and activation expressions.

Run: ``puredl example autograd_example``. Every gradient printed is checked against the
hand-derived formula and against central differences (``puredl.autograd.gradcheck``).
"""

from __future__ import annotations

import argparse
import math

import puredl as pd
from puredl.autograd import gradcheck


def run(verbose: bool = True) -> dict:
    """Run the five demonstrations; returns {name: max |autograd - expected|}."""
    say = print if verbose else (lambda *a, **k: None)
    errors: dict[str, float] = {}

    def check(name: str, got: list, expected: list) -> None:
        err = max(abs(g - e) for g, e in zip(got, expected))
        errors[name] = err
        say(f"  Expected: {[round(v, 6) for v in expected]}  (max error {err:.1e})\n")

    say("=== puredl Autograd Demo ===\n")

    say("Example 1: Basic operation (y = x * 2)")
    x = pd.tensor(3.0, requires_grad=True)
    y = x * 2
    y.backward()
    say(f"  x = {x.item()}, y = x * 2 = {y.item()}")
    say(f"  dy/dx = {x.grad.item()}")
    check("scalar", [x.grad.item()], [2.0])

    say("Example 2: Chain rule (z = (a + b) * a, a = 1, b = 2)")
    a = pd.tensor(1.0, requires_grad=True)
    b = pd.tensor(2.0, requires_grad=True)
    z = (a + b) * a
    z.backward()
    say(f"  z = {z.item()}; dz/da = 2a + b = {a.grad.item()}, dz/db = a = {b.grad.item()}")
    check("chain", [a.grad.item(), b.grad.item()], [4.0, 1.0])

    say("Example 3: Element-wise (y = sum(x^2 + 3x), x = [1, 2, 3])")
    x = pd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x**2 + 3 * x).sum().backward()
    say(f"  dy/dx = 2x + 3 = {x.grad.tolist()}")
    check("elementwise", x.grad.tolist(), [5.0, 7.0, 9.0])

    say("Example 4: Activations (sum of relu, sigmoid, tanh at x = [-1, 0.5, 2])")
    xs = [-1.0, 0.5, 2.0]
    x = pd.tensor(xs, requires_grad=True)
    (x.relu() + x.sigmoid() + x.tanh()).sum().backward()
    sig = [1 / (1 + math.exp(-v)) for v in xs]
    expected = [(1.0 if v > 0 else 0.0) + s * (1 - s) + 1 - math.tanh(v) ** 2 for v, s in zip(xs, sig)]
    say(f"  d/dx = relu' + sigmoid(1 - sigmoid) + (1 - tanh^2) = {[round(v, 6) for v in x.grad.tolist()]}")
    check("activations", x.grad.tolist(), expected)

    say("Example 5: Mean squared error of a linear model (w = [0.5, -1], b = 0.1)")
    inputs = pd.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = pd.tensor([1.0, 0.0])
    w = pd.tensor([0.5, -1.0], requires_grad=True)
    bias = pd.tensor(0.1, requires_grad=True)
    pred = inputs @ w + bias
    loss = ((pred - target) ** 2).mean()
    loss.backward()
    residual = [p - t for p, t in zip(pred.tolist(), target.tolist())]
    rows = inputs.tolist()
    dw = [sum(2 * r * row[j] for r, row in zip(residual, rows)) / 2 for j in range(2)]
    db = sum(2 * r for r in residual) / 2
    say(
        f"  loss = {loss.item():.4f}; dL/dw = {[round(v, 4) for v in w.grad.tolist()]}, "
        f"dL/db = {bias.grad.item():.4f}"
    )
    check("mse", w.grad.tolist() + [bias.grad.item()], dw + [db])

    say("Gradient check (central differences in float64) of softmax cross-entropy:")
    logits = pd.randn(3, 4, dtype=pd.float64, requires_grad=True)
    ok = gradcheck(lambda t: -t.log_softmax(-1)[:, 0], [logits])
    say(f"  gradcheck passed: {ok}\n")
    errors["gradcheck"] = 0.0 if ok else 1.0

    worst = max(errors.values())
    say(f"All gradients agree with the formulas (largest difference {worst:.1e}).")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="puredl example autograd_example", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    return 0 if max(run().values()) < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
