"""Data parallel training of puredl models on ``torch.distributed`` (NCCL on GPU, gloo on CPU).

Start one process per GPU (or several on a CPU) with torchrun; each process builds the same
model, takes its shard of every global batch, runs forward and backward, averages gradients
with :func:`all_reduce_gradients` and steps its own optimizer. Because every rank starts from
the same weights (:func:`broadcast_parameters`) and applies the same averaged gradient, the
ranks stay identical without ever sending weights again.

>>> from puredl import distributed as dist
>>> dist.init().world_size           # without torchrun: a world of one process, no torch needed
1
>>> dist.shard(list(range(10)), rank=1, world=3)
[4, 5, 6]

Run with ``torchrun --nproc-per-node 2 -m puredl.examples.data_parallel``; docs/distributed.md
has the whole story. Importing this module needs the standard library only; torch is imported
when a process group is really needed (world size above one).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from puredl._optional import require
from puredl.backends import pure as _pure
from puredl.tensor import Tensor, _wrap

__all__ = [
    "World",
    "ReduceStats",
    "init",
    "is_initialized",
    "rank",
    "world_size",
    "local_rank",
    "is_main_process",
    "backend",
    "device",
    "barrier",
    "all_reduce_gradients",
    "broadcast_parameters",
    "max_parameter_difference",
    "mean_over_ranks",
    "shard",
    "destroy",
]

BACKENDS = ("nccl", "gloo")


class World(NamedTuple):
    """Where this process stands: what :func:`init` returns."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None  # None for a world of one without a process group
    device: str  # "cuda:LOCAL_RANK" with NCCL, else "cpu"


class ReduceStats(NamedTuple):
    """What one :func:`all_reduce_gradients` call did (handy for logs and tests)."""

    tensors: int  # parameters whose gradient was averaged
    elements: int  # gradient elements averaged (each rank sends this many)
    collectives: int  # all_reduce calls made (one per dtype/device group)


_world: World | None = None
_owns_group = False  # True when init() created the process group (destroy() then tears it down)


# =========================================================================== torch, lazily


def _dist():
    """``torch.distributed``, or a clear error naming the extra to install."""
    torch = require("torch", "torch", "puredl.distributed (data parallel on torch.distributed)")
    if not torch.distributed.is_available():
        raise RuntimeError(
            f"this torch build ({torch.__version__}) has no torch.distributed support; "
            "install the PyPI build with: pip install 'puredl[torch]'"
        )
    return torch.distributed


def _group_active() -> bool:
    """True when a default process group exists (never imports torch just to find out)."""
    d = sys.modules.get("torch.distributed")
    return d is not None and d.is_available() and d.is_initialized()


# =========================================================================== environment


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not an integer (torchrun sets it)"
        ) from None


def _env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, checked."""
    world = _env_int("WORLD_SIZE", 1)
    rank_ = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world}: the world needs at least one process")
    if not 0 <= rank_ < world:
        raise ValueError(
            f"RANK={rank_} is outside the world of WORLD_SIZE={world} processes (0..{world - 1})"
        )
    if local < 0:
        raise ValueError(f"LOCAL_RANK={local} is negative")
    return rank_, world, local


def _choose_backend(requested: str | None, dist) -> str:
    import torch

    if requested is None:
        gpu = torch.cuda.is_available() and dist.is_nccl_available()
        return "nccl" if gpu else "gloo"
    name = str(requested).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown distributed backend {requested!r}; expected one of {', '.join(BACKENDS)}")
    if name == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise RuntimeError(
            f"backend 'nccl' needs a CUDA GPU and a torch build with NCCL (torch {torch.__version__}, "
            f"CUDA available: {torch.cuda.is_available()}); use backend='gloo' on CPU"
        )
    return name


# =========================================================================== set-up and queries


def init(backend: str | None = None, *, timeout_s: float | None = None) -> World:
    """Join the process group that torchrun described in the environment; safe to call twice.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    ``backend=None`` picks NCCL when a GPU is visible and gloo otherwise; with NCCL the process
    binds ``cuda:LOCAL_RANK``. Without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) this is a
    world of one: no process group and no torch needed, and the collectives below do nothing.
    A group someone else created (``torch.distributed.init_process_group``) is adopted as is.

    >>> init().rank
    0
    """
    global _world, _owns_group
    if _world is not None:
        if backend is not None and _world.backend is not None and str(backend).lower() != _world.backend:
            raise ValueError(
                f"puredl.distributed is already initialized with backend {_world.backend!r}; "
                f"call destroy() before init(backend={backend!r})"
            )
        return _world
    if _group_active():  # adopted: rank and world come from the group, not the environment
        dist = _dist()
        name = str(dist.get_backend()).lower()
        local = _env_int("LOCAL_RANK", 0)
        _world = World(dist.get_rank(), dist.get_world_size(), local, name, _device_for(name, local))
        return _world
    if timeout_s is not None and not float(timeout_s) > 0:
        raise ValueError(f"init(): timeout_s={timeout_s!r} must be a positive number of seconds")
    rank_, world, local = _env_world()
    if world == 1 and backend is None:
        _world = World(rank_, 1, local, None, "cpu")
        return _world
    dist = _dist()
    name = _choose_backend(backend, dist)
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise RuntimeError(
            f"init(): {' and '.join(missing)} not set; start the processes with torchrun "
            "(it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) or set them yourself"
        )
    if name == "nccl":
        import torch

        count = torch.cuda.device_count()
        if local >= count:
            raise RuntimeError(
                f"LOCAL_RANK={local} but only {count} GPU(s) are visible; start at most {count} "
                "processes per node (torchrun --nproc-per-node) or check CUDA_VISIBLE_DEVICES"
            )
        torch.cuda.set_device(local)  # NCCL collectives run on the current device
    kwargs: dict[str, Any] = {"backend": name, "rank": rank_, "world_size": world}
    if timeout_s is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
    dist.init_process_group(**kwargs)
    _owns_group = True
    _world = World(rank_, world, local, name, _device_for(name, local))
    return _world


def _device_for(backend_name: str | None, local: int) -> str:
    return f"cuda:{local}" if backend_name == "nccl" else "cpu"


def is_initialized() -> bool:
    """True after :func:`init` (a world of one counts) until :func:`destroy`."""
    return _world is not None


def rank() -> int:
    """This process's rank, 0..world_size()-1 (torchrun's ``RANK`` before :func:`init`)."""
    return _current_rank()


def _current_rank() -> int:
    if _world is not None:
        return _world.rank
    if _group_active():
        return sys.modules["torch.distributed"].get_rank()
    return _env_world()[0]


def world_size() -> int:
    """How many processes train together (torchrun's ``WORLD_SIZE`` before :func:`init`)."""
    if _world is not None:
        return _world.world_size
    if _group_active():
        return sys.modules["torch.distributed"].get_world_size()
    return _env_world()[1]


def local_rank() -> int:
    """This process's index on its own machine: which GPU it uses."""
    return _world.local_rank if _world is not None else _env_world()[2]


def is_main_process() -> bool:
    """True on rank 0: the process that prints, writes files and saves checkpoints."""
    return rank() == 0


def backend() -> str | None:
    """The backend in use: nccl, gloo, or None for a world of one."""
    return _world.backend if _world is not None else None


def device() -> str:
    """The device this rank should put its model on: "cuda:LOCAL_RANK" with NCCL, else "cpu"."""
    return _world.device if _world is not None else "cpu"


def _active() -> bool:
    """True when a process group exists (a group of one still runs the collectives, cheaply)."""
    return _world is not None and _world.backend is not None


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a world of one)."""
    if not _active():
        return
    dist = _dist()
    if _world.backend == "nccl":
        dist.barrier(device_ids=[_world.local_rank])
    else:
        dist.barrier()


def destroy() -> None:
    """Leave the process group that :func:`init` created; :func:`init` may be called again after."""
    global _world, _owns_group
    if _owns_group and _group_active():
        sys.modules["torch.distributed"].destroy_process_group()
    _world = None
    _owns_group = False


# =========================================================================== parameters and gradients


def _tensors(model: Any, what: str) -> list[Tensor]:
    """The distinct tensors of ``model`` (an object with ``.parameters()`` or an iterable)."""
    source = model.parameters() if hasattr(model, "parameters") else model
    if isinstance(source, Tensor) or not isinstance(source, Iterable):
        raise TypeError(
            f"{what}: expected a model with .parameters() or an iterable of tensors, "
            f"got {type(model).__name__}"
        )
    out, seen = [], set()
    for t in source:
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: expected puredl tensors, got {type(t).__name__}")
        if id(t) not in seen:  # tied weights appear once
            seen.add(id(t))
            out.append(t)
    return out


def _groups(tensors: list[Tensor]) -> dict[tuple, list[Tensor]]:
    """Tensors grouped by (dtype, device, on pure storage), in model order: one collective each."""
    groups: dict[tuple, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device, t._be is _pure), []).append(t)
    return groups


def _comm(flat, dist):
    """``flat`` on the device the collective needs (NCCL: this rank's GPU; gloo: the CPU)."""
    want = f"cuda:{_world.local_rank}" if _world.backend == "nccl" else "cpu"
    return flat if str(flat.device) == want else flat.to(want)


def all_reduce_gradients(model: Any) -> ReduceStats:
    """Replace every parameter's ``.grad`` by its mean over all ranks (sum / world size).

    Gradients are packed into one flat buffer per dtype and device, so a model costs one or two
    collectives, not one per tensor. Pure-tier gradients cross to torch without a Python-level
    copy and come back as pure tensors; torch-backed ones stay on their device. A rank with no
    gradient for a parameter contributes zeros (like DDP); a parameter that no rank has a
    gradient for keeps ``grad = None``. Each ``.grad`` is a new tensor after the call.
    Every rank must call this with the same model, in the same order of steps.

    >>> import puredl as pd
    >>> w = pd.tensor([1.0, 2.0], requires_grad=True); (w * w).sum().backward()
    >>> all_reduce_gradients([w]).tensors, w.grad.tolist()    # a world of one: unchanged
    (1, [2.0, 4.0])
    """
    params = [p for p in _tensors(model, "all_reduce_gradients") if p.requires_grad]
    if not _active():
        have = [p for p in params if p.grad is not None]
        return ReduceStats(len(have), sum(p.numel() for p in have), 0)
    dist = _dist()
    tb = _torch_backend()
    world = _world.world_size
    stats = [0, 0, 0]
    for (dtype, _dev, on_pure), members in _groups(params).items():
        n = sum(p.numel() for p in members)
        total = n + len(members)  # the tail counts how many ranks had each gradient
        if on_pure:  # an array the pure tier can use afterwards, seen by torch without a copy
            buf = _pure.full((total,), 0, dtype).buf
            flat = tb.from_pure(_pure.PureArray(buf, (total,)))
        else:
            flat = tb.torch.zeros(total, dtype=tb.TORCH_DTYPE[dtype], device=members[0]._impl.device)
        offset = 0
        for i, p in enumerate(members):
            m = p.numel()
            if p.grad is not None:
                _check_grad(p)
                flat[offset : offset + m].view(p.shape).copy_(_as_torch(p.grad, tb))
                flat[n + i] = 1.0
            offset += m
        comm = _comm(flat, dist)
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        comm[:n].div_(world)
        if comm is not flat:
            flat.copy_(comm)
        counts = flat[n:].tolist()
        offset = 0
        for i, p in enumerate(members):
            m = p.numel()
            if counts[i] > 0:
                if on_pure:
                    p.grad = _wrap(
                        _pure.PureArray(buf, p.shape, _pure.contiguous_strides(p.shape), offset), _pure
                    )
                else:
                    p.grad = _wrap(flat[offset : offset + m].view(p.shape), tb.backend_for(flat))
                stats[0] += 1
                stats[1] += m
            else:
                p.grad = None
            offset += m
        stats[2] += 1
    return ReduceStats(*stats)


def _check_grad(p: Tensor) -> None:
    if p.grad.shape != p.shape:
        raise ValueError(
            f"all_reduce_gradients: a gradient of shape {p.grad.shape} on a parameter of shape {p.shape}"
        )


def broadcast_parameters(model: Any, src: int = 0) -> int:
    """Copy rank ``src``'s parameters (and buffers) into every rank's model, in place.

    Call it once after building the model, before the first step, so that every rank starts
    from the same weights. It first checks that every rank built the same structure (shapes and
    dtypes in the same order) and says so clearly when not. Returns how many tensors it copied.

    >>> import puredl as pd
    >>> broadcast_parameters([pd.zeros(3)])     # a world of one: nothing to send
    1
    """
    tensors = _tensors(model, "broadcast_parameters")
    if hasattr(model, "buffers"):
        seen = {id(t) for t in tensors}
        tensors += [b for b in model.buffers() if isinstance(b, Tensor) and id(b) not in seen]
    world = world_size() if _world is not None else 1
    if not isinstance(src, int) or not 0 <= src < world:
        raise ValueError(f"broadcast_parameters: src={src!r} is not a rank of this world (0..{world - 1})")
    if not _active():
        return len(tensors)
    dist = _dist()
    tb = _torch_backend()
    _check_same_structure(tensors, dist, tb)
    for members in _groups(tensors).values():
        flat = tb.torch.cat([_as_torch(t, tb).reshape(-1) for t in members])
        comm = _comm(flat, dist)
        dist.broadcast(comm, src=src)
        if _world.rank == src:
            continue
        offset = 0
        for t in members:
            m = t.numel()
            # writes land in the tensor's own storage (pure arrays through a zero-copy view)
            _as_torch(t, tb).copy_(comm[offset : offset + m].view(t.shape))
            offset += m
    return len(tensors)


def max_parameter_difference(model: Any) -> float:
    """The largest absolute difference between this rank's parameters and rank 0's (0.0 = in sync).

    Every rank gets the same answer. Use it after training to show that the ranks ended with
    the same model; it costs one broadcast per dtype/device group plus one tiny all_reduce.

    >>> import puredl as pd
    >>> max_parameter_difference([pd.ones(2)])
    0.0
    """
    tensors = _tensors(model, "max_parameter_difference")
    if not _active():
        return 0.0
    dist = _dist()
    tb = _torch_backend()
    torch = tb.torch
    worst = 0.0
    for members in _groups(tensors).values():
        own = torch.cat([_as_torch(t, tb).reshape(-1) for t in members]).to(torch.float64)
        ref = _comm(own.clone(), dist)
        dist.broadcast(ref, src=0)
        if own.numel():
            worst = max(worst, float((own - ref.to(own.device)).abs().max()))
    probe = _comm(torch.tensor([worst], dtype=torch.float64), dist)
    dist.all_reduce(probe, op=dist.ReduceOp.MAX)
    return float(probe.item())


def mean_over_ranks(value: float) -> float:
    """The mean of a number over all ranks (a loss, an accuracy); itself in a world of one.

    >>> mean_over_ranks(0.25)
    0.25
    """
    value = float(value)
    if not _active():
        return value
    dist = _dist()
    torch = _torch_backend().torch
    probe = _comm(torch.tensor([value], dtype=torch.float64), dist)
    dist.all_reduce(probe, op=dist.ReduceOp.SUM)
    return float(probe.item()) / _world.world_size


def _check_same_structure(tensors: list[Tensor], dist, tb) -> None:
    """Raise on every rank when the ranks' models differ (one small collective)."""
    signature = ";".join(f"{tuple(t.shape)}:{t.dtype.name}" for t in tensors)
    h = int.from_bytes(hashlib.sha256(signature.encode()).digest()[:7], "big")
    torch = tb.torch
    probe = torch.tensor([h, -h, len(tensors), -len(tensors)], dtype=torch.int64)
    comm = _comm(probe, dist)
    dist.all_reduce(comm, op=dist.ReduceOp.MAX)
    hi, neg_lo, most, neg_least = comm.tolist()
    if hi != -neg_lo or most != -neg_least:
        raise RuntimeError(
            f"broadcast_parameters: the ranks built different models (rank {_world.rank} has "
            f"{len(tensors)} tensors; the ranks have between {-neg_least} and {most}, and their shapes "
            "or dtypes differ); build the same model with the same arguments on every rank"
        )


def _as_torch(t: Tensor, tb):
    """``t``'s storage as a torch tensor that shares memory (pure arrays included)."""
    return tb.from_pure(t._impl) if t._be is _pure else t._impl


def _torch_backend():
    from puredl import accel

    return accel.torch_backend()


# =========================================================================== data


def shard(seq: Sequence, rank: int | None = None, world: int | None = None, *, drop_remainder: bool = False):
    """Rank ``rank``'s contiguous share of ``seq`` out of ``world`` near-equal shares.

    Defaults to this process's rank and world size. With ``len(seq) % world != 0`` the first
    shares get one item more; ``drop_remainder=True`` cuts the tail so every share is the same
    size (then the mean of per-rank mean losses is exactly the global mean). Works on anything
    that slices: lists, tuples, ranges, strings and puredl tensors (sharded on dim 0).

    >>> shard(list(range(7)), rank=0, world=2), shard(list(range(7)), rank=1, world=2)
    ([0, 1, 2, 3], [4, 5, 6])
    >>> shard("abcdefg", rank=1, world=2, drop_remainder=True)
    'def'
    """
    rank = _current_rank() if rank is None else rank
    world = world_size() if world is None else world
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"shard: world={world!r} must be a positive integer")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"shard: rank={rank!r} must be an integer in 0..{world - 1}")
    try:
        n = len(seq)
    except TypeError:
        raise TypeError(f"shard: expected a sequence with a length, got {type(seq).__name__}") from None
    if drop_remainder:
        size = n // world
        start = rank * size
        return seq[start : start + size]
    size, extra = divmod(n, world)
    start = rank * size + min(rank, extra)
    return seq[start : start + size + (1 if rank < extra else 0)]
