"""Data-parallel training under ``torchrun`` (``torch.distributed``): one process per device.

``torchrun --nproc-per-node N -m admc train ...`` (or ``bench``) starts N copies of the command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set; :func:`data_parallel` sees them, joins the process
group (NCCL on CUDA devices, gloo on CPU) and runs the command in every process.  Each training
stage then does what one process does, with three changes (single process: none of them):

* :func:`wrap`: the stage's network in ``DistributedDataParallel`` (gradients averaged over the
  processes after every backward pass, so every copy takes the same optimizer step);
* :func:`batches`: each epoch's shuffled order (drawn identically in every process) split by
  ``DistributedSampler``: a process trains on every N-th sample of it, ``batch_size`` at a time, so
  one step sees N x ``batch_size`` samples and an epoch takes 1/N of the steps;
* :func:`agree`: model selection on rank 0 only: it computes the validation score, every process
  takes that number (so all stop at the same epoch and keep the same weights), and :func:`sync`
  copies rank 0's selected weights to the others at the end of a stage.

Rank 0 alone writes the run directory; the others wait at a barrier (:func:`session`).  Everything
that is not gradient training (standardization, the linear prior, calibration, OOD) runs in every
process on the same data and gives the same result.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

TIMEOUT = timedelta(minutes=30)       # a collective waits this long for the other processes
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Context:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_CTX = Context()


def current() -> Context:
    return _CTX


def from_env(environ=os.environ) -> Context:
    """The process's place in a ``torchrun`` job (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``);
    a single process when ``WORLD_SIZE`` is unset or 1."""
    vals = {}
    for key, default in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        raw = environ.get(key) or default
        try:
            vals[key] = int(raw)
        except ValueError:
            raise ValueError(f"environment variable {key}={raw!r}: expected an integer (set by torchrun)") from None
    world, rank, local = vals["WORLD_SIZE"], vals["RANK"], vals["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"environment variables WORLD_SIZE={world} RANK={rank} LOCAL_RANK={local}: "
                         "need 0 <= RANK < WORLD_SIZE")
    return Context(world, rank, local)


@contextmanager
def session(device: torch.device):
    """Join the process group for ``device`` (NCCL on CUDA: the process's own GPU ``LOCAL_RANK``;
    gloo otherwise); yields ``(context, device)``; at the end every process waits for the others
    (rank 0 may still be writing) and leaves the group.  A single process: nothing happens."""
    global _CTX
    ctx = from_env()
    if not ctx.active:
        yield ctx, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if os.environ.get("MASTER_ADDR", "") in LOOPBACK and "GLOO_SOCKET_IFNAME" not in os.environ:
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"   # one machine: gloo talks over loopback, not the hostname's address
    dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world, timeout=TIMEOUT,
                            device_id=device if device.type == "cuda" else None)
    _CTX = Context(ctx.world, ctx.rank, ctx.local_rank, backend)
    try:
        yield _CTX, device
        dist.barrier()
    finally:
        _CTX = Context()
        dist.destroy_process_group()


def describe() -> dict:
    """What run.json records of a data-parallel run."""
    return {"processes": _CTX.world, "backend": _CTX.backend}


# ---- inside the training stages -----------------------------------------------------------------

def wrap(net: nn.Module) -> nn.Module:
    """``net`` in ``DistributedDataParallel`` (the module itself in a single process)."""
    if not _CTX.active:
        return net
    device = next(net.parameters()).device
    return nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)


def batches(n: int, batch_size: int, rng: np.random.Generator, idx: np.ndarray | None = None):
    """This process's batches of one epoch: :func:`admc.batching.batches` over its
    ``DistributedSampler`` share of the shuffled ``idx`` (all of it in a single process)."""
    from torch.utils.data import DistributedSampler

    from admc.batching import batches as plain

    order = rng.permutation(np.arange(n) if idx is None else np.asarray(idx))
    if _CTX.active:
        mine = list(DistributedSampler(order, num_replicas=_CTX.world, rank=_CTX.rank, shuffle=False))
        order = order[mine]
    yield from plain(len(order), batch_size, idx=order)


def agree(score):
    """``score()`` computed on rank 0 and given to every process (called directly in a single process)."""
    if not _CTX.active:
        return score()
    box = [score() if _CTX.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def sync(net: nn.Module) -> None:
    """Every process takes rank 0's weights and buffers of ``net``."""
    if _CTX.active:
        for t in net.state_dict().values():
            dist.broadcast(t, src=0)


def rank_seed(seed: int) -> int:
    """``seed`` for rank 0 (and a single process), a different one for each other rank."""
    return seed + 1_000_003 * _CTX.rank


@contextmanager
def forward_through(obj, name: str, wrapped: nn.Module):
    """``obj.<name>`` is ``wrapped`` (a DDP wrapper of it) inside the block (no-op in a single process)."""
    if not _CTX.active:
        yield
        return
    old = getattr(obj, name)
    setattr(obj, name, wrapped)
    try:
        yield
    finally:
        setattr(obj, name, old)


# ---- commands ----------------------------------------------------------------------------------

def _listing(path: Path) -> str:
    files = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file()) \
        if path.is_dir() else []
    return hashlib.sha256(repr(files).encode()).hexdigest()


@contextmanager
def _private_out(args):
    """Ranks other than 0 write their copy of ``--out`` elsewhere (a snapshot of it, so that they
    reuse the same finished work as rank 0), removed at the end; all must see the same ``--out``."""
    out = Path(args.out)
    seen = [None] * _CTX.world
    dist.all_gather_object(seen, _listing(out))
    if len(set(seen)) > 1:
        raise ValueError(f"--out {out}: the processes see different contents (on several machines --out must "
                         "be on a filesystem they share)")
    if _CTX.main:
        dist.barrier()
        yield
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"admc-rank{_CTX.rank}-"))
    try:
        if out.is_dir():
            shutil.copytree(out, tmp / "out")
        args.out = str(tmp / "out")
        dist.barrier()                    # rank 0 writes nothing before every copy is taken
        yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def data_parallel(command, private_out: bool = False):
    """``command(args)`` in every process of a ``torchrun`` job (unchanged in a single process):
    its device is the process's own GPU on CUDA, only rank 0 prints; ``private_out``: the other ranks
    write ``--out`` to a private copy (``admc bench``, whose files are all written by rank 0)."""
    @functools.wraps(command)
    def run(args) -> int:
        if not from_env().active:
            return command(args)
        from admc.runtime import resolve_device, set_quiet

        with session(resolve_device(args.device)) as (ctx, device):
            args.device = str(device)
            if not ctx.main:
                args.quiet = True
                set_quiet(True)
            if not private_out:
                return command(args)
            with _private_out(args):
                return command(args)
    return run
