"""Layer building blocks: Linear, activations, Softmax, Dropout, LayerNorm, Embedding and Sequential.

Run: ``puredl example nn_layers_example``. Shows each layer's output on a small input, its
parameter count, and how train/eval mode changes Dropout.
"""

from __future__ import annotations

import argparse

import puredl as pd
from puredl import nn


def _fmt(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_fmt(v) for v in values) + "]"
    return f"{values:.4f}"


def run(verbose: bool = True) -> dict:
    """Demonstrate the layers; returns a few checked facts for the tests."""
    say = print if verbose else (lambda *a, **k: None)
    pd.manual_seed(0)
    facts: dict = {}
    say("=== puredl Neural Network Layers ===\n")

    x = pd.tensor([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    say(f"Input: {_fmt(x.tolist()[0])}\n")
    for layer in [nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.Softmax(dim=-1)]:
        out = layer(x).tolist()[0]
        say(f"  {str(layer):30s} -> {_fmt(out)}")
    probs = nn.Softmax(dim=-1)(x)
    facts["softmax_sum"] = probs.sum().item()
    say(f"  (softmax sums to {facts['softmax_sum']:.6f})\n")

    lin = nn.Linear(5, 3)
    say(f"Linear layer: {lin}")
    say(f"  weight {lin.weight.shape}, bias {lin.bias.shape}: {lin.num_parameters()} parameters")
    say(f"  init range: |w| <= 1/sqrt(5) = {5**-0.5:.4f} (largest {lin.weight.abs().max().item():.4f})")
    say(f"  output for the input above: {_fmt(lin(x).tolist()[0])}\n")
    facts["linear_params"] = lin.num_parameters()

    drop = nn.Dropout(p=0.5)
    ones = pd.ones(1, 10)
    say(f"Dropout(p=0.5), training mode: {_fmt(drop(ones).tolist()[0])}")
    drop.eval()
    say(f"Dropout(p=0.5), eval mode:     {_fmt(drop(ones).tolist()[0])}\n")
    facts["dropout_eval_identity"] = drop(ones).tolist() == ones.tolist()

    norm = nn.LayerNorm(5)
    y = norm(x)
    say(f"LayerNorm(5): {_fmt(y.tolist()[0])}")
    say(f"  mean {y.mean().item():+.4f}, std {y.std(correction=0).item():.4f}\n")
    facts["layernorm_mean"] = y.mean().item()

    emb = nn.Embedding(10, 3)
    tokens = pd.tensor([[1, 5, 1]])
    say(f"Embedding(10, 3) of token ids {tokens.tolist()[0]} -> shape {emb(tokens).shape}")
    say("  (the same id always maps to the same row)\n")

    model = nn.Sequential(
        nn.Linear(5, 8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(8, 8),
        nn.Tanh(),
        nn.Linear(8, 2),
        nn.Softmax(dim=-1),
    )
    say("Sequential model:")
    say(str(model))
    model.eval()
    out = model(pd.randn(4, 5))
    say(f"\nOutput for a batch of 4: shape {out.shape}, rows sum to {_fmt(out.sum(-1).tolist())}")
    say(f"model[0] is {model[0]}; model[-1] is {model[-1]}; len(model) = {len(model)}")
    facts["model_params"] = model.num_parameters()
    say("\nParameters by name:")
    for name, p in model.named_parameters():
        say(f"  {name:10s} {str(p.shape):10s} {p.numel():4d}")
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="puredl example nn_layers_example", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
