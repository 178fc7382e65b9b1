"""Training on cuda:0 through puredl's torch backend equals torch on the same GPU.

The fused linear, cross-entropy and relu-gradient kernels and the in-place optimizer update run
the same CUDA kernels as torch's own step, so after a few steps the parameters agree to float32
rounding (on the CPU they are bit-identical; cuBLAS may pick other algorithms between runs).
"""

from __future__ import annotations

import pytest

import puredl as pd
from puredl import nn, optim

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_mlp_training_on_cuda_matches_torch(torch_cuda, opt_name):
    torch = torch_cuda
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to("cuda:0")
    ref = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).cuda()
    with torch.no_grad():
        for p_ref, p in zip(ref.parameters(), model.parameters()):
            p_ref.copy_(p.to_torch())
    kwargs = {"lr": 0.05, "momentum": 0.9} if opt_name == "SGD" else {"lr": 1e-3}
    opt = getattr(optim, opt_name)(model.parameters(), **kwargs)
    opt_ref = getattr(torch.optim, opt_name)(ref.parameters(), foreach=False, **kwargs)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(10):
        x = torch.randn(32, 64, device="cuda", generator=gen)
        y = torch.randint(0, 10, (32,), device="cuda", generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(pd.from_torch(x)), pd.from_torch(y))
        loss.backward()
        opt.step()
        opt_ref.zero_grad()
        loss_ref = torch.nn.functional.cross_entropy(ref(x), y)
        loss_ref.backward()
        opt_ref.step()
        assert abs(loss.item() - loss_ref.item()) < 1e-5
    for p_ref, p in zip(ref.parameters(), model.parameters()):
        assert p.device == "cuda:0"
        torch.testing.assert_close(p.to_torch(), p_ref.detach(), rtol=1e-5, atol=1e-6)
