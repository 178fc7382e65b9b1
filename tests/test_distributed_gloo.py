"""puredl.distributed across two real processes (gloo on 127.0.0.1), checked against references.

One launch of two worker processes (this file run as a script, one per rank, with torchrun's
environment variables) records what each rank saw; the tests compare it with gradients that
torch computes here for each rank's shard, and with training in a single process.
The worker ends by running the example in the same group; a second test runs it through
torchrun itself (marked slow, ~10 s: torchrun's agent and two torch imports).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)  # a hung collective fails the test instead of stalling CI

WORLD = 2
LAUNCH_TIMEOUT_S = 150  # whole launch, both ranks; a hung collective fails the test, not CI
HIDDEN = 5
GLOBAL_BATCH = 8
N_ROWS = 24  # three global batches
TRAIN_STEPS = 6
MODES = ("pure", "torch")
# odd global batch: shards of 13 and 12 rows, which the example's share-weighted loss keeps exact
EXAMPLE_ARGS = ["--epochs", "3", "--batch-size", "25", "--samples", "120", "--quiet"]


# ============================================================================= shared by both sides


def dataset() -> tuple[list[list[float]], list[list[float]]]:
    """The same rows on every rank and in the test: 24 inputs of 3 features, 2 targets each."""
    rng = random.Random(3)
    x = [[rng.uniform(-2, 2) for _ in range(3)] for _ in range(N_ROWS)]
    y = [[rng.uniform(-1, 1) for _ in range(2)] for _ in range(N_ROWS)]
    return x, y


def global_batch(step: int) -> list[int]:
    start = (step * GLOBAL_BATCH) % N_ROWS
    return list(range(start, start + GLOBAL_BATCH))


def build_model(seed: int, hidden: int = HIDDEN):
    import puredl as pd
    from puredl import nn

    pd.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 2))


def weights(model) -> dict[str, list]:
    return {name: t.reshape(-1).tolist() for name, t in model.state_dict().items()}


# ============================================================================= the worker (one rank)


def worker(out_dir: str) -> None:
    import torch

    import puredl as pd
    from puredl import accel, nn, optim
    from puredl import distributed as dist

    world = dist.init(timeout_s=60)
    assert dist.init() is world
    r = world.rank
    out: dict = {"world": world._asdict()}
    x, y = dataset()

    # broadcast: each rank starts from its own weights
    model = build_model(seed=100 + r)
    out["before_broadcast"] = weights(model)
    out["spread_before"] = dist.max_parameter_difference(model)
    out["broadcast_count"] = dist.broadcast_parameters(model, src=1)  # not always rank 0
    out["after_broadcast"] = weights(model)
    out["spread_after"] = dist.max_parameter_difference(model)

    loss_fn = nn.MSELoss()
    for mode in MODES:
        accel.set_acceleration(mode)
        # one step's gradients: local (this rank's shard) and after averaging
        model.zero_grad()
        mine = dist.shard(global_batch(0))
        loss_fn(model(pd.tensor([x[i] for i in mine])), pd.tensor([y[i] for i in mine])).backward()
        local = {n: p.grad.reshape(-1).tolist() for n, p in model.named_parameters()}
        stats = dist.all_reduce_gradients(model)
        reduced = {n: p.grad.reshape(-1).tolist() for n, p in model.named_parameters()}
        out[f"grads_{mode}"] = {"shard": mine, "local": local, "reduced": reduced, "stats": stats._asdict()}

        # training: every rank steps on its shard of the same global batches
        trained = build_model(seed=7 if r == 0 else 8)
        dist.broadcast_parameters(trained)
        opt = optim.SGD(trained.parameters(), lr=0.1, momentum=0.9)
        for step in range(TRAIN_STEPS):
            mine = dist.shard(global_batch(step))
            opt.zero_grad()
            loss_fn(trained(pd.tensor([x[i] for i in mine])), pd.tensor([y[i] for i in mine])).backward()
            dist.all_reduce_gradients(trained)
            opt.step()
        out[f"trained_{mode}"] = weights(trained)
        out[f"trained_spread_{mode}"] = dist.max_parameter_difference(trained)
    accel.set_acceleration("pure")

    # parameters on different backends and dtypes, gradients missing on some ranks
    a = pd.tensor([1.0, 2.0, 3.0], dtype=pd.float64, requires_grad=True)
    b = pd.from_torch(torch.tensor([[1.0, -1.0], [0.5, 2.0]])).requires_grad_()
    c = pd.tensor([4.0, 5.0], dtype=pd.float64, requires_grad=True)
    d = pd.tensor([0.0], requires_grad=True)
    loss = (a * (r + 1.0)).sum() + (b * b * (r + 1.0)).sum()
    if r == 1:
        loss = loss + (c * c).sum()
    loss.backward()
    stats = dist.all_reduce_gradients([a, b, c, d])
    out["mixed"] = {
        "stats": stats._asdict(),
        "a": a.grad.tolist(),
        "b": b.grad.reshape(-1).tolist(),
        "b_backend": b.grad._be.NAME,
        "c": c.grad.tolist(),
        "d": None if d.grad is None else d.grad.tolist(),
    }
    out["mean_of_ranks"] = dist.mean_over_ranks(float(r + 1))

    # ranks that built different models get a clear error on every rank, not a hang
    try:
        dist.broadcast_parameters(build_model(seed=0, hidden=HIDDEN + r))
        out["mismatch_error"] = None
    except RuntimeError as exc:
        out["mismatch_error"] = str(exc)

    # last, the example in the same group (it ends with barrier() and destroy()): saves a launch
    from puredl.examples import data_parallel

    assert data_parallel.main([*EXAMPLE_ARGS, "--save", str(Path(out_dir) / "example.safetensors")]) == 0
    out["initialized_after_destroy"] = dist.is_initialized()
    tmp = Path(out_dir) / f"rank{r}.json.tmp"
    tmp.write_text(json.dumps(out))
    os.replace(tmp, Path(out_dir) / f"rank{r}.json")


# ============================================================================= launching


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",  # two ranks on two cores
        PYTHONUNBUFFERED="1",
    )
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo talks over loopback only
    return env


def launch(argv: list[str], world: int = WORLD, timeout_s: float = LAUNCH_TIMEOUT_S) -> list[str]:
    """Run ``python argv`` as ``world`` ranks; returns each rank's output, fails on any error."""
    for attempt in range(2):  # the free port can be taken between the check and rank 0's bind
        port = free_port()
        procs = [
            subprocess.Popen(
                [sys.executable, *argv],
                env=rank_env(r, world, port),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for r in range(world)
        ]
        outputs, deadline = [], time.monotonic() + timeout_s
        try:
            for p in procs:
                outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            details = "\n".join(f"--- rank {r}:\n{p.communicate()[0][-3000:]}" for r, p in enumerate(procs))
            pytest.fail(f"{world} ranks did not finish within {timeout_s:.0f} s\n{details}")
        codes = [p.returncode for p in procs]
        if all(c == 0 for c in codes):
            return outputs
        if attempt == 0 and any("address already in use" in o.lower() for o in outputs):
            continue
        details = "\n".join(
            f"--- rank {r} (exit {c}):\n{o[-3000:]}" for r, (c, o) in enumerate(zip(codes, outputs))
        )
        pytest.fail(f"a rank failed\n{details}")
    raise AssertionError("unreachable")


@pytest.fixture(autouse=True)
def no_torchrun_env(monkeypatch):
    """In-process runs here are single-process runs, whatever the calling shell had set."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[list[dict], list[str], Path]:
    """One launch of the worker on two ranks: (what each rank recorded, its output, the folder)."""
    pytest.importorskip("torch")
    out_dir = tmp_path_factory.mktemp("ranks")
    outputs = launch([__file__, "worker", str(out_dir)])
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(WORLD)], outputs, out_dir


@pytest.fixture(scope="module")
def ranks(launched) -> list[dict]:
    return launched[0]


# ============================================================================= references


def torch_grads(state: dict[str, list], rows: list[int]) -> dict[str, list]:
    """Gradients of the MSE on ``rows``, computed by torch in float64 from the given weights."""
    import torch

    x, y = dataset()
    net = torch.nn.Sequential(
        torch.nn.Linear(3, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 2)
    ).double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.tensor(state[name], dtype=torch.float64).reshape(p.shape))
    xs = torch.tensor([x[i] for i in rows], dtype=torch.float64)
    ys = torch.tensor([y[i] for i in rows], dtype=torch.float64)
    torch.nn.functional.mse_loss(net(xs), ys).backward()
    return {name: p.grad.reshape(-1).tolist() for name, p in net.named_parameters()}


def one_process_training(mode: str) -> dict[str, list]:
    """The same steps over the same global batches, in this process, no distribution."""
    import puredl as pd
    from puredl import accel, nn, optim

    accel.set_acceleration(mode)
    x, y = dataset()
    model = build_model(seed=7)  # rank 0's weights, which the workers broadcast
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(TRAIN_STEPS):
        rows = global_batch(step)
        opt.zero_grad()
        nn.MSELoss()(model(pd.tensor([x[i] for i in rows])), pd.tensor([y[i] for i in rows])).backward()
        opt.step()
    return weights(model)


def close(a: list, b: list, rel: float = 1e-5, abs_: float = 1e-6) -> bool:
    return a == pytest.approx(b, rel=rel, abs=abs_)


# ============================================================================= tests


def test_ranks_know_who_they_are(ranks):
    assert [r["world"]["rank"] for r in ranks] == [0, 1]
    assert all(r["world"]["world_size"] == 2 and r["world"]["backend"] == "gloo" for r in ranks)
    assert all(r["world"]["device"] == "cpu" for r in ranks)
    assert not any(r["initialized_after_destroy"] for r in ranks)


def test_broadcast_parameters_makes_the_ranks_equal(ranks):
    r0, r1 = ranks
    assert r0["before_broadcast"] != r1["before_broadcast"]  # different seeds, different weights
    assert r0["spread_before"] == r1["spread_before"] > 0
    assert r0["broadcast_count"] == 4
    assert r0["after_broadcast"] == r1["after_broadcast"] == r1["before_broadcast"]  # src=1's weights
    assert r0["spread_after"] == r1["spread_after"] == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_gradients_are_the_mean_of_the_per_rank_gradients(ranks, mode):
    state = ranks[0]["after_broadcast"]
    shards = [r[f"grads_{mode}"]["shard"] for r in ranks]
    assert shards == [[0, 1, 2, 3], [4, 5, 6, 7]]
    per_rank = [torch_grads(state, rows) for rows in shards]  # computed here, independently
    for r, rank in enumerate(ranks):
        got = rank[f"grads_{mode}"]
        for name in state:
            assert close(got["local"][name], per_rank[r][name]), (r, name, "local")
            mean = [(u + v) / 2 for u, v in zip(per_rank[0][name], per_rank[1][name])]
            assert close(got["reduced"][name], mean), (r, name, "reduced")
        assert got["stats"] == {
            "tensors": 4,
            "elements": 3 * HIDDEN + HIDDEN + HIDDEN * 2 + 2,
            "collectives": 1,
        }
    assert ranks[0][f"grads_{mode}"]["reduced"] == ranks[1][f"grads_{mode}"]["reduced"]  # bit for bit


@pytest.mark.parametrize("mode", MODES)
def test_two_process_training_matches_one_process(ranks, mode):
    reference = one_process_training(mode)
    for rank in ranks:
        assert rank[f"trained_spread_{mode}"] == 0.0
        for name, values in reference.items():
            assert close(rank[f"trained_{mode}"][name], values), name
    assert ranks[0][f"trained_{mode}"] == ranks[1][f"trained_{mode}"]


def test_mixed_dtypes_backends_and_missing_gradients(ranks):
    for rank in ranks:
        m = rank["mixed"]
        # groups: float64 pure (a, c), float32 torch-backed (b), float32 pure (d, no gradient anywhere)
        assert m["stats"] == {"tensors": 3, "elements": 3 + 4 + 2, "collectives": 3}
        assert m["a"] == [1.5, 1.5, 1.5]  # (1 + 2) / 2
        assert close(m["b"], [2 * v * 1.5 for v in (1.0, -1.0, 0.5, 2.0)])  # 2b(r+1), averaged
        assert m["b_backend"] == "torch"
        assert m["c"] == [4.0, 5.0]  # 2c on rank 1, zeros on rank 0: divided by the world size
        assert m["d"] is None
        assert rank["mean_of_ranks"] == 1.5


def test_different_models_are_reported_on_every_rank(ranks):
    for rank in ranks:
        message = rank["mismatch_error"]
        assert message is not None and "the ranks built different models" in message
        assert "build the same model" in message


# ============================================================================= the example


def _example_weights(path: Path) -> dict[str, list]:
    from puredl.io import load

    return {k: v.reshape(-1).tolist() for k, v in load(path).items()}


def test_example_two_processes_match_one(launched, tmp_path, capsys):
    """The example on two ranks (run by the worker) ends with the weights of a one-process run."""
    from puredl.examples import data_parallel

    _, outputs, out_dir = launched
    one = tmp_path / "one.safetensors"
    assert data_parallel.main([*EXAMPLE_ARGS, "--save", str(one)]) == 0
    assert "1 process(es) (no process group)" in capsys.readouterr().out
    assert "2 process(es) (gloo on cpu)" in outputs[0]
    assert "parameters on all 2 rank(s) differ by at most 0\n" in outputs[0]
    assert outputs[1].strip() == ""  # only rank 0 prints
    ref, got = _example_weights(one), _example_weights(out_dir / "example.safetensors")
    assert ref.keys() == got.keys()
    for name in ref:
        assert close(got[name], ref[name]), name


@pytest.mark.slow
def test_example_under_torchrun(tmp_path):
    """The documented command itself: torchrun --nproc-per-node 2 -m puredl.examples.data_parallel."""
    pytest.importorskip("torch")
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    cmd = [
        torchrun,
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "puredl.examples.data_parallel",
        "--epochs",
        "2",
        "--quiet",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es) (gloo on cpu)" in done.stdout
    assert "parameters on all 2 rank(s) differ by at most 0\n" in done.stdout


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    worker(sys.argv[2])
