"""puredl.distributed in one process: shard, environment checks, a world of one, a gloo group of one.

The two-process tests (gradients averaged across ranks, broadcast, training equivalence) are in
test_distributed_gloo.py; these run in-process and take well under a second each.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import puredl as pd
from puredl import distributed as dist
from puredl._optional import MissingDependencyError

pytestmark = pytest.mark.timeout(120)  # a process group that waits for peers fails instead of stalling

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def setenv(monkeypatch):
    """Each test starts outside any torchrun environment and leaves no process group behind.

    Yields ``setenv(NAME=value, ...)``: variables set through it are undone after the test (a
    leaked RANK or WORLD_SIZE would make a later in-process init() wait for peers forever).
    """
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    dist.destroy()

    def set_vars(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    yield set_vars
    dist.destroy()


def flat(t) -> list:
    """A tensor's elements, row-major (pytest.approx wants flat lists)."""
    return t.reshape(-1).tolist()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- import


def test_import_needs_only_the_standard_library():
    code = "import sys, puredl.distributed; assert 'torch' not in sys.modules, 'torch was imported'"
    env = {k: v for k, v in os.environ.items() if k != "PUREDL_ACCEL"}  # the default mode
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- shard


def test_shard_hand_checked():
    seq = list(range(10))
    assert [dist.shard(seq, r, 3) for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [dist.shard(seq, r, 3, drop_remainder=True) for r in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert dist.shard("abcde", 1, 2) == "de"
    assert dist.shard(range(5), 0, 2) == range(0, 3)
    assert [dist.shard((1, 2), r, 4) for r in range(4)] == [(1,), (2,), (), ()]  # more ranks than items
    rows = dist.shard(pd.arange(12).reshape(6, 2), 1, 2)
    assert rows.tolist() == [[6, 7], [8, 9], [10, 11]]


@given(n=st.integers(0, 60), world=st.integers(1, 9), drop=st.booleans())
def test_shard_covers_the_sequence_in_order(n, world, drop):
    seq = list(range(n))
    parts = [dist.shard(seq, r, world, drop_remainder=drop) for r in range(world)]
    joined = [x for part in parts for x in part]
    sizes = [len(p) for p in parts]
    if drop:
        assert sizes == [n // world] * world
        assert joined == seq[: n // world * world]
    else:
        assert joined == seq
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)  # the bigger shares come first


def test_shard_defaults_to_this_process(setenv):
    setenv(RANK="1", WORLD_SIZE="2")
    assert dist.shard([1, 2, 3, 4]) == [3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rank=2, world=2), "rank=2"),
        (dict(rank=-1, world=2), "rank=-1"),
        (dict(rank=0, world=0), "world=0"),
        (dict(rank=True, world=2), "rank=True"),
        (dict(rank=0, world=1.5), "world=1.5"),
    ],
)
def test_shard_rejects_bad_ranks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dist.shard([1, 2, 3], **kwargs)


def test_shard_needs_a_length():
    with pytest.raises(TypeError, match="generator"):
        dist.shard((x for x in range(3)), 0, 1)


# ----------------------------------------------------------------------------- environment


def test_queries_read_torchruns_environment_before_init(setenv):
    setenv(RANK="3", WORLD_SIZE="4", LOCAL_RANK="1")
    assert (dist.rank(), dist.world_size(), dist.local_rank()) == (3, 4, 1)
    assert not dist.is_main_process()
    assert not dist.is_initialized()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (dict(WORLD_SIZE="2", RANK="2"), r"RANK=2 is outside the world of WORLD_SIZE=2"),
        (dict(WORLD_SIZE="two"), r"WORLD_SIZE='two' is not an integer"),
        (dict(WORLD_SIZE="0"), r"WORLD_SIZE=0"),
        (dict(WORLD_SIZE="2", RANK="0", LOCAL_RANK="-1"), r"LOCAL_RANK=-1"),
    ],
)
def test_bad_environment_is_named(setenv, env, message):
    setenv(**env)
    with pytest.raises(ValueError, match=message):
        dist.init()
    assert not dist.is_initialized()


def test_bad_timeout_is_named():
    with pytest.raises(ValueError, match="timeout_s=0 must be a positive number of seconds"):
        dist.init(timeout_s=0)


def test_missing_rendezvous_address_is_named(setenv):
    pytest.importorskip("torch")
    setenv(WORLD_SIZE="2", RANK="0")
    with pytest.raises(RuntimeError, match="MASTER_ADDR and MASTER_PORT not set.*torchrun"):
        dist.init(backend="gloo")
    assert not dist.is_initialized()


def test_unknown_backend_lists_the_choices():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="unknown distributed backend 'mpi'; expected one of nccl, gloo"):
        dist.init(backend="mpi")


def test_nccl_without_a_gpu_suggests_gloo():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="backend='gloo' on CPU"):
        dist.init(backend="nccl")


def test_missing_torch_names_the_extra(monkeypatch, setenv):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails, as on a pure install
    setenv(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    with pytest.raises(MissingDependencyError, match=r"pip install 'puredl\[torch\]'"):
        dist.init()


# ----------------------------------------------------------------------------- a world of one


def _tiny_model():
    from puredl import nn

    pd.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def test_world_of_one_without_torchrun():
    world = dist.init()
    assert world == dist.World(rank=0, world_size=1, local_rank=0, backend=None, device="cpu")
    assert dist.init() is world  # idempotent
    assert dist.is_initialized() and dist.is_main_process() and dist.backend() is None
    model = _tiny_model()
    model(pd.ones(2, 3)).sum().backward()
    before = [p.grad for p in model.parameters()]
    stats = dist.all_reduce_gradients(model)
    assert stats == dist.ReduceStats(tensors=4, elements=3 * 4 + 4 + 4 * 2 + 2, collectives=0)
    assert all(p.grad is g for p, g in zip(model.parameters(), before))  # untouched
    assert dist.broadcast_parameters(model) == 4
    assert dist.max_parameter_difference(model) == 0.0
    assert dist.mean_over_ranks(0.5) == 0.5
    dist.barrier()
    dist.destroy()
    assert not dist.is_initialized()


def test_bad_models_and_sources_are_named():
    dist.init()
    with pytest.raises(TypeError, match="model with .parameters"):
        dist.all_reduce_gradients(42)
    with pytest.raises(TypeError, match="expected puredl tensors, got float"):
        dist.all_reduce_gradients([1.0])
    with pytest.raises(ValueError, match=r"src=1 is not a rank of this world \(0..0\)"):
        dist.broadcast_parameters([pd.zeros(2)], src=1)


# ----------------------------------------------------------------------------- a gloo group of one


@pytest.fixture
def gloo_group_of_one(setenv):
    """A real gloo process group with one rank on 127.0.0.1: the collective path, in-process."""
    pytest.importorskip("torch")
    setenv(WORLD_SIZE="1", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    world = dist.init(backend="gloo", timeout_s=30)
    yield world
    dist.destroy()


def test_group_of_one_packs_and_unpacks_every_gradient(gloo_group_of_one):
    """With one rank the mean is the gradient itself, so any packing or offset error shows."""
    import torch

    assert gloo_group_of_one.backend == "gloo" and dist.init(backend="gloo") is gloo_group_of_one
    with pytest.raises(ValueError, match="already initialized with backend 'gloo'"):
        dist.init(backend="nccl")
    a = pd.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=pd.float64, requires_grad=True)
    b = pd.from_torch(torch.tensor([0.5, -1.5, 2.0])).requires_grad_()  # torch-backed storage
    c = pd.tensor([1.0, -2.0, 3.0], requires_grad=True)
    d = pd.tensor([7.0], requires_grad=True)  # never used: keeps grad None
    t = pd.arange(6, dtype=pd.float64).reshape(2, 3).T  # a strided parameter
    t.requires_grad_()
    ((a * a).sum() + (b * b * b).sum() + (c * 3.0).sum() + (t * t * 0.5).sum()).backward()
    expected = {"a": [2.0, 4.0, 6.0, 8.0], "b": [0.75, 6.75, 12.0], "c": [3.0] * 3, "t": flat(t)}
    stats = dist.all_reduce_gradients([a, b, c, d, t])
    # groups: float64 pure (a, t), float32 torch (b), float32 pure (c, d)
    assert stats == dist.ReduceStats(tensors=4, elements=4 + 3 + 3 + 6, collectives=3)
    for name, p in dict(a=a, b=b, c=c, t=t).items():
        assert flat(p.grad) == pytest.approx(expected[name]), name
        assert p.grad.shape == p.shape and p.grad.dtype == p.dtype
    assert d.grad is None
    assert a.grad._be.NAME == "pure" and b.grad._be is not a.grad._be  # each stays on its backend
    with pytest.raises(RuntimeError, match="attempting to assign a gradient of size"):
        c.grad = pd.zeros(2)  # refused on assignment, as torch refuses it
    c._grad = pd.zeros(2)  # past the check, the collective still refuses it
    with pytest.raises(ValueError, match="all_reduce_gradients: a gradient of shape"):
        dist.all_reduce_gradients([c])


def test_group_of_one_broadcast_and_sync_helpers(gloo_group_of_one):
    model = _tiny_model()
    want = [p.tolist() for p in model.parameters()]
    assert dist.broadcast_parameters(model, src=0) == 4
    assert [p.tolist() for p in model.parameters()] == want
    assert dist.max_parameter_difference(model) == 0.0
    assert dist.mean_over_ranks(3.0) == 3.0
    dist.barrier()


def test_optimizer_steps_on_reduced_gradients(gloo_group_of_one):
    """Gradients that all_reduce_gradients hands back drive SGD exactly like the originals."""
    from puredl import optim

    ref, model = _tiny_model(), _tiny_model()
    x = pd.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    for m, reduce in ((ref, False), (model, True)):
        opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            (m(x) ** 2).mean().backward()
            if reduce:
                dist.all_reduce_gradients(m)
            opt.step()
    for p, q in zip(ref.parameters(), model.parameters()):
        assert flat(q) == pytest.approx(flat(p), rel=1e-6, abs=1e-7)
