"""Data-parallel training: each rank learns from its shard, gradients are averaged across ranks.

Run:  ``puredl example data_parallel``                                   (one process)
      ``torchrun --nproc-per-node 2 -m puredl.examples.data_parallel``   (two processes)

It follows the seed guide's multi-GPU patterns on torch.distributed. Data parallel: every rank
builds the same model, takes its shard of each global batch and runs forward and backward on
it. Gradient synchronisation: ``all_reduce_gradients`` sums the gradients over ranks and divides
by the world size. The guide then steps on the primary device and broadcasts the weights; here
every rank steps with the same averaged gradient instead, which gives the same weights
without sending them (``broadcast_parameters`` runs once, before the first step). Each rank's
loss is scaled by its share of the global batch, so N processes compute the same training as
one process over the same global batches. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import time

import puredl as pd
from puredl import accel, data, datasets, io, nn, optim
from puredl import distributed as dist


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="puredl example data_parallel", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="passes over the training set (default 40)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch, all ranks together (32)")
    parser.add_argument("--lr", type=float, default=0.3, help="SGD learning rate (default 0.3)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units (default 16)")
    parser.add_argument("--samples", type=int, default=200, help="two-moons points (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default 0)")
    parser.add_argument("--accel", choices=["pure", "torch", "auto"], default=None, help="acceleration mode")
    parser.add_argument(
        "--backend", choices=["gloo", "nccl"], default=None, help="default: nccl on GPU, else gloo"
    )
    parser.add_argument("--save", default=None, help="rank 0 writes the trained weights here (.safetensors)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "hidden", "samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _say(*parts: object) -> None:
    if dist.is_main_process():
        print(*parts, flush=True)


def _batches(n: int, size: int, seed: int):
    """Global batches of row indices, the same on every rank (same seed)."""
    order = data.permutation(n, seed=seed)
    return [order[i : i + size] for i in range(0, n, size)]


def _accuracy(model: nn.Module, x: pd.Tensor, y: pd.Tensor) -> float:
    with pd.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.accel:
        accel.set_acceleration(args.accel)
    world = dist.init(args.backend)
    n_ranks = world.world_size
    where = f"{world.backend} on {world.device}" if world.backend else "no process group"
    _say(f"puredl data parallel: {n_ranks} process(es) ({where}), accel {accel.get_current_mode().value}")

    x, y = datasets.two_moons(n=args.samples, noise=0.15, seed=args.seed)
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=args.seed)
    n_train = x_train.shape[0]
    per_rank = -(-min(args.batch_size, n_train) // n_ranks)
    _say(f"{n_train} training points; global batch {args.batch_size} -> up to {per_rank} per rank per step")

    # a different start on each rank, so that the broadcast below visibly matters
    pd.manual_seed(args.seed + 1000 * world.rank)
    model = nn.Sequential(nn.Linear(2, args.hidden), nn.Tanh(), nn.Linear(args.hidden, 2)).to(world.device)
    spread = dist.max_parameter_difference(model)
    count = dist.broadcast_parameters(model, src=0)
    _say(
        f"broadcast_parameters: {count} tensors from rank 0 (ranks differed by up to {spread:.3g}; "
        f"now {dist.max_parameter_difference(model):.3g})"
    )
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    on_device = x_train.to(world.device), y_train.to(world.device)  # for the accuracy log

    stats = None
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        seen = 0.0
        for batch in _batches(n_train, args.batch_size, seed=args.seed + epoch):
            mine = dist.shard(batch)  # this rank's rows of the global batch
            opt.zero_grad()
            loss = pd.tensor(0.0)
            if mine:
                xb, yb = data.take(x_train, mine).to(world.device), data.take(y_train, mine).to(world.device)
                # the share-weighted mean over ranks is the mean over the whole global batch
                loss = loss_fn(model(xb), yb) * (len(mine) * n_ranks / len(batch))
                loss.backward()
            stats = dist.all_reduce_gradients(model)
            opt.step()
            seen += dist.mean_over_ranks(loss.item()) * len(batch)
        if not args.quiet and (epoch == 1 or epoch % 10 == 0 or epoch == args.epochs):
            acc = dist.mean_over_ranks(_accuracy(model, *on_device))
            _say(f"epoch {epoch:4d}/{args.epochs}  loss {seen / n_train:.4f}  train accuracy {acc:.1%}")
    elapsed = time.perf_counter() - start

    steps = args.epochs * len(_batches(n_train, args.batch_size, 0))
    _say(
        f"all_reduce_gradients: {stats.collectives} collective(s) per step for {stats.tensors} tensors "
        f"({stats.elements} values); {steps} steps in {elapsed:.2f} s ({steps / elapsed:.1f} steps/s)"
    )
    test_acc = _accuracy(model, x_test.to(world.device), y_test.to(world.device))
    drift = dist.max_parameter_difference(model)
    _say(f"test accuracy {test_acc:.1%}; parameters on all {n_ranks} rank(s) differ by at most {drift:.3g}")
    if args.save and dist.is_main_process():
        io.save(model.to("cpu").state_dict(), args.save, metadata={"world_size": str(n_ranks)})
        _say(f"rank 0 saved the weights to {args.save}")
    dist.barrier()  # nobody leaves while rank 0 is still writing
    dist.destroy()
    return 0 if drift == 0.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
