"""Data-parallel training and sharded evaluation on ``torch.distributed``.

One process per device; every process holds the whole model. The launcher is torch's own
(``torchrun`` / ``python -m torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; under SLURM's ``srun`` without
torchrun, ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` stand in for the first
three (``MASTER_ADDR`` / ``MASTER_PORT`` must then be exported by the job script).

Semantics (the same as one process with the same global batch):

- ``train.batch_size`` is the global batch. Every rank walks the same shuffled order and
  takes a contiguous slice of each global batch (:func:`shard`); its loss is the sum over
  its slice divided by the global batch size and multiplied by the world size, so that
  DistributedDataParallel's gradient average equals the single-process mean-loss gradient
  up to the float32 summation order.
- Evaluation (float accuracy, the bit-accurate simulator) splits the test set into
  contiguous slices, one per rank, and gathers the results in test-set order, so every
  metric equals a single-process run's.
- Rank 0 alone writes checkpoints, metrics and artifacts and logs.

Backends: NCCL for CUDA models, gloo for CPU models and for the small CPU-side
collectives (counts, gathered simulator outputs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """rank: this process's index (0..world_size-1); world_size: processes in the job;
    local_rank: index on this machine (selects the GPU); backend: 'gloo' or 'nccl'."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def as_dict(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}


_CPU_GROUP = None  # gloo group for CPU tensors when the default backend is NCCL


def _env_int(*names: str) -> Optional[int]:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def requested_world_size() -> int:
    """The world size the launcher asked for (1 outside torchrun / srun)."""
    return _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1


def current() -> Context:
    """This process's place in the job (rank 0 of 1 when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(),
                   _env_int("LOCAL_RANK", "SLURM_LOCALID") or 0, dist.get_backend())


def setup(device: str) -> tuple[Context, str, bool]:
    """Join the process group the launcher describes (if any and not yet joined).

    Returns ``(context, device, joined_here)``; ``device`` 'cuda' becomes this rank's
    GPU (``cuda:LOCAL_RANK``). ``joined_here`` says whether :func:`teardown` should
    leave the group again.
    """
    global _CPU_GROUP
    joined = False
    if requested_world_size() > 1 and not dist.is_initialized():
        rank = _env_int("RANK", "SLURM_PROCID")
        world = requested_world_size()
        if rank is None:
            raise RuntimeError("WORLD_SIZE > 1 but neither RANK nor SLURM_PROCID is set: "
                               "launch with torchrun or srun")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise RuntimeError(f"distributed run: {name} is not set (torchrun sets it; "
                                   "under srun export it in the job script)")
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        joined = True
    ctx = current()
    if ctx.enabled:
        if device.startswith("cuda"):
            torch.cuda.set_device(ctx.local_rank)
            device = f"cuda:{ctx.local_rank}"
        if ctx.backend == "nccl" and _CPU_GROUP is None:
            _CPU_GROUP = dist.new_group(backend="gloo")
    return ctx, device, joined


def teardown(joined_here: bool) -> None:
    global _CPU_GROUP
    if joined_here and dist.is_initialized():
        try:  # no rank tears gloo down while another still uses it (gloo aborts then)
            dist.barrier(group=_CPU_GROUP)
        except RuntimeError:  # a rank already gone: nothing left to wait for
            pass
        dist.destroy_process_group()
        _CPU_GROUP = None


def cpu_group():
    """The process group for collectives over CPU tensors."""
    return _CPU_GROUP


def shard(indices: np.ndarray, ctx: Context) -> np.ndarray:
    """This rank's contiguous slice of ``indices`` (sizes differ by at most one)."""
    if not ctx.enabled:
        return indices
    return np.array_split(np.asarray(indices), ctx.world_size)[ctx.rank]


def wrap(model: torch.nn.Module, ctx: Context, device) -> torch.nn.Module:
    """``model`` under DistributedDataParallel (itself when not distributed)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = str(device).startswith("cuda")
    return DistributedDataParallel(
        model, device_ids=[torch.device(device).index] if on_cuda else None,
        process_group=None if on_cuda else cpu_group())


def all_sum(values: Sequence[float], ctx: Context) -> list:
    """Element-wise sum of ``values`` over all ranks (float64)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, group=cpu_group())
    return t.tolist()


def gather_concat(local: np.ndarray, ctx: Context) -> np.ndarray:
    """Concatenate every rank's array along axis 0, in rank order, on every rank."""
    if not ctx.enabled:
        return local
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, local, group=cpu_group())
    return np.concatenate(parts)


def sharded_map(fn: Callable[[np.ndarray], np.ndarray], indices: np.ndarray, ctx: Context) -> np.ndarray:
    """``fn`` over this rank's slice of ``indices``, gathered in the order of ``indices``."""
    return gather_concat(fn(shard(indices, ctx)), ctx)


def broadcast_model(model: torch.nn.Module, ctx: Context) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``model`` (CPU model), so
    that quantisation sees bit-identical weights everywhere."""
    if not ctx.enabled:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0, group=cpu_group())


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier(group=cpu_group())


def global_batches(n: int, batch_size: int, seed: int, ctx: Context):
    """The shuffled global batches of one epoch (as ``SpikeDataset.batches`` draws them)
    -> (this rank's indices, global batch size). A trailing global batch with fewer
    samples than ranks is dropped (every rank must take part in each gradient average)."""
    order = np.arange(n)
    np.random.default_rng(seed).shuffle(order)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < ctx.world_size:
            return
        yield shard(idx, ctx), len(idx)


def launch_command(nproc: int, argv: Sequence[str]) -> list:
    """The command that runs ``neurodeploy ARGV`` in ``nproc`` processes on this machine
    through torch's launcher."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={int(nproc)}", "-m", "neurodeploy", *argv]


def unwrap(model: Any) -> torch.nn.Module:
    return getattr(model, "module", model)


def launch_environment(environ, nproc: int) -> dict:
    """``environ`` with torch's (OpenMP) and numba's thread counts set to the cores
    divided by ``nproc``, unless already set: processes whose parallel loops each use
    every core wait on each other's descheduled threads."""
    share = str(max(1, (os.cpu_count() or 1) // nproc))
    return dict(environ, OMP_NUM_THREADS=environ.get("OMP_NUM_THREADS", share),
                NUMBA_NUM_THREADS=environ.get("NUMBA_NUM_THREADS", share))
