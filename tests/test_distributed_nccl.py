"""puredl.distributed on NCCL (GPU only: marked `gpu`, skipped cleanly without a CUDA GPU).

A group of one on cuda:0 runs the real NCCL collectives in-process: the mean over one rank is
the gradient itself, so any packing, device or copy-back error shows. With two or more GPUs
the two-rank worker of test_distributed_gloo.py runs again on NCCL.
"""

from __future__ import annotations

import json
import os

import pytest

import puredl as pd
from puredl import distributed as dist

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]


@pytest.fixture
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU for torch here")
    if not torch.distributed.is_nccl_available():
        pytest.skip("this torch build has no NCCL")
    return torch


@pytest.fixture
def nccl_group_of_one(torch_cuda, monkeypatch):
    from test_distributed import free_port

    for name, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.destroy()
    world = dist.init(backend="nccl", timeout_s=60)
    yield world
    dist.destroy()


def flat(t) -> list:
    return t.cpu().reshape(-1).tolist()


def test_nccl_reduces_gpu_and_pure_gradients_in_place(nccl_group_of_one):
    from puredl import nn

    assert nccl_group_of_one.device == "cuda:0" and nccl_group_of_one.backend == "nccl"
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to("cuda:0")
    cpu_param = pd.tensor([1.0, -2.0], requires_grad=True)  # pure tier: crosses to the GPU and back
    x = pd.randn(5, 4).to("cuda:0")
    ((model(x) ** 2).mean() + (cpu_param * cpu_param).sum()).backward()
    params = [*model.parameters(), cpu_param]
    want = [flat(p.grad) for p in params]
    stats = dist.all_reduce_gradients(params)
    assert stats.collectives == 2 and stats.tensors == 5
    for p, w in zip(params, want):
        assert flat(p.grad) == pytest.approx(w, rel=1e-6, abs=1e-7)
        assert p.grad.device == p.device
    assert dist.broadcast_parameters(model) == 4
    assert dist.max_parameter_difference(model) == 0.0
    dist.barrier()


def test_nccl_two_ranks_on_two_gpus(torch_cuda, tmp_path):
    if torch_cuda.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    from test_distributed_gloo import WORLD, launch

    launch([os.path.join(os.path.dirname(__file__), "test_distributed_gloo.py"), "worker", str(tmp_path)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["world"]["backend"] for r in ranks] == ["nccl", "nccl"]
    assert [r["world"]["device"] for r in ranks] == ["cuda:0", "cuda:1"]
    assert ranks[0]["grads_pure"]["reduced"] == ranks[1]["grads_pure"]["reduced"]
    assert ranks[0]["trained_pure"] == ranks[1]["trained_pure"]
