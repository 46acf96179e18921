"""Training loop: surrogate-gradient BPTT with Adam, a checkpoint per epoch, resume.

Learning rate: constant, or cosine-annealed over the phase's epochs
(:func:`learning_rate`, a function of the epoch alone, so a resumed run continues
the same schedule).

Loss: cross-entropy over the output layer's spike counts times ``logit_scale``. A checkpoint
(``checkpoints/epoch_NNN.pt``: model, optimiser, history, RNG state) is written
atomically after every epoch, so a killed run resumes from its last finished epoch.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurodeploy.checks import OutputDirError

logger = logging.getLogger(__name__)


@dataclass
class History:
    epoch: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    train_accuracy: List[float] = field(default_factory=list)
    test_accuracy: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    phase: List[str] = field(default_factory=list)
    #: sparse backward: fraction of active (sample, step, neuron) entries over the
    #: epoch's training batches, all sparse layers together (None: no sparse layer)
    active_fraction: List[Optional[float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate(model, dataset, batch_size: int = 256, device="cpu") -> float:
    """Float test accuracy: argmax of output spike counts (ties -> lowest index).
    In a distributed run each rank scores its slice of the test set."""
    from neurodeploy.train import distributed

    ctx = distributed.current()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        if ctx.enabled:
            mine = distributed.shard(np.arange(len(dataset)), ctx)
            batches = ((torch.from_numpy(dataset.encode(i)), torch.from_numpy(dataset.labels[i]))
                       for i in np.array_split(mine, max(1, -(-len(mine) // batch_size))) if len(i))
        else:
            batches = dataset.batches(batch_size, shuffle=False)
        for x, y in batches:
            pred = model.scores(x.to(device)).argmax(dim=1).cpu()
            correct += int((pred == y).sum())
            total += len(y)
    correct, total = distributed.all_sum([correct, total], ctx)
    model.train()
    return correct / max(total, 1)


def batch_loss(model, x, y, logit_scale: float, global_batch: int, world_size: int = 1):
    """(loss, class scores) of one (slice of a) batch. The loss is the cross-entropy
    over spike counts x ``logit_scale``, summed over this slice, divided by the global
    batch size and multiplied by the world size: DistributedDataParallel averages
    gradients over ranks, so the result is the global batch's mean-loss gradient."""
    counts = model(x)[-1].sum(dim=1)
    if world_size == 1 and len(y) == global_batch:
        return F.cross_entropy(counts * logit_scale, y), counts
    loss = F.cross_entropy(counts * logit_scale, y, reduction="sum") * (world_size / global_batch)
    return loss, counts


def latest_checkpoint(directory: Path, phase: str = "float") -> Optional[Path]:
    files = sorted(Path(directory).glob(f"{phase}_epoch_*.pt"))
    return files[-1] if files else None


def load_checkpoint(path: Path, device="cpu") -> dict:
    """A checkpoint written by :func:`fit`, loaded with ``torch.load(weights_only=True)``:
    tensors and plain data only, so a file whose unpickling would run code is
    refused (:class:`~neurodeploy.errors.InputError`) and nothing in it runs."""
    import pickle

    from neurodeploy.errors import InputError
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # a damaged pickle stream, not a foreign object
            raise InputError(f"{path}: not a readable checkpoint (damaged); remove it or run "
                             "without --resume") from None
        lines = [line.strip() for line in str(e).splitlines()]
        why = next((line.split(":", 1)[-1].strip() for line in lines if "Unsupported global" in line), "")
        raise InputError(f"{path}: refused: not a neurodeploy checkpoint of tensors and plain data "
                         f"(loading it would run Python code{': ' + why[:120] if why else ''}); "
                         "remove it or run without --resume") from None
    except Exception as e:  # truncated or not a torch file
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''}); remove it or run "
                         "without --resume") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "history"} <= set(state):
        raise InputError(f"{path}: not a neurodeploy checkpoint (expected a dict with model, "
                         "optimizer, epoch, history); remove it or run without --resume")
    return state


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def learning_rate(lr: float, epoch: int, epochs: int, schedule: str = "constant") -> float:
    """Adam's learning rate in epoch ``epoch`` (0-based) of ``epochs``: ``lr`` throughout
    ("constant"), or lr x (1 + cos(pi epoch / epochs)) / 2 ("cosine": lr in the first
    epoch, falling towards 0 in the last)."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (expected constant or cosine)")


def _train_epoch(trained, optimizer, batches, n_batches: int, desc: str, logit_scale: float,
                 device, ctx):
    """One pass over ``batches`` of (x, y, global batch size); returns (summed loss,
    correct, seen) over this rank's samples."""
    total_loss = correct = seen = 0
    bar = tqdm(batches, total=n_batches, desc=desc, leave=False, dynamic_ncols=True,
               disable=None if ctx.is_main else True)
    for x, y, global_batch in bar:
        x, y = x.to(device), y.to(device)
        loss, counts = batch_loss(trained, x, y, logit_scale, global_batch, ctx.world_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * global_batch / ctx.world_size
        correct += int((counts.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return total_loss, correct, seen


def _resume(model, optimizer, checkpoint_dir: Path, phase: str, epochs: int, history: History,
            run_id: Optional[str], device, ctx) -> int:
    """Load the last checkpoint of ``phase`` (if any) into model, optimiser and
    history; returns the number of epochs it had finished (0 without one)."""
    ckpt = latest_checkpoint(checkpoint_dir, phase)
    if ckpt is None:
        return 0
    state = load_checkpoint(ckpt, device)
    if run_id is not None and state.get("run_id") != run_id:
        raise OutputDirError(f"{ckpt}: a checkpoint of another run (run id {state.get('run_id')}, "
                             f"this run {run_id}); use --force or another output directory")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as e:
        raise OutputDirError(f"cannot resume from {ckpt}: it does not match this model or is "
                             f"damaged ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                             "use another output directory or run without --resume") from None
    history.__dict__.update(state["history"])
    if ctx.is_main:
        logger.info(f"resumed {phase} training from {ckpt.name} (epoch {state['epoch']}/{epochs})")
    return state["epoch"]


def fit(model, train_set, test_set, *, epochs: int, lr: float, batch_size: int, seed: int,
        logit_scale: float = 1.0, lr_schedule: str = "constant",
        checkpoint_dir: Path, resume: bool = False, device="cpu", phase: str = "float",
        history: Optional[History] = None, run_id: Optional[str] = None) -> History:
    """Train ``model`` for ``epochs`` epochs (continuing from the last checkpoint of
    this ``phase`` when ``resume``). Returns the history (all phases so far).

    ``run_id``: written into every checkpoint; resuming from a checkpoint of
    another run id is refused (:class:`~neurodeploy.checks.OutputDirError`).
    Under torch.distributed (:mod:`neurodeploy.train.distributed`) each rank trains
    on its slice of every global batch of ``batch_size``; rank 0 writes checkpoints and
    logs a line per epoch (logger ``neurodeploy.train.loop``, level INFO).
    ``lr_schedule``: "constant" or "cosine" (:func:`learning_rate`)."""
    from neurodeploy.train import distributed

    ctx = distributed.current()
    checkpoint_dir = Path(checkpoint_dir)
    if ctx.is_main:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    history = history if history is not None else History()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start = _resume(model, optimizer, checkpoint_dir, phase, epochs, history, run_id, device, ctx) if resume else 0
    model.to(device).train()
    trained = distributed.wrap(model, ctx, device)
    counted = [m.active_counts for m in model.modules() if hasattr(m, "active_counts")]
    for epoch in range(start, epochs):
        for c in counted:
            c.clear()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(lr, epoch, epochs, lr_schedule)
        t0 = time.perf_counter()
        if ctx.enabled:
            batches = ((torch.from_numpy(train_set.encode(i)), torch.from_numpy(train_set.labels[i]), g)
                       for i, g in distributed.global_batches(len(train_set), batch_size, seed + epoch, ctx))
        else:
            batches = ((x, y, len(y)) for x, y in train_set.batches(batch_size, shuffle=True, seed=seed + epoch))
        total_loss, correct, seen = _train_epoch(trained, optimizer, batches, -(-len(train_set) // batch_size),
                                                 f"{phase} epoch {epoch + 1}/{epochs}", logit_scale, device, ctx)
        total_loss, correct, seen = distributed.all_sum([total_loss, correct, seen], ctx)
        test_acc = evaluate(model, test_set, device=device)
        history.epoch.append(len(history.epoch) + 1)
        history.loss.append(total_loss / max(seen, 1))
        history.train_accuracy.append(correct / max(seen, 1))
        history.test_accuracy.append(test_acc)
        history.seconds.append(time.perf_counter() - t0)
        history.phase.append(phase)
        active, entries = distributed.all_sum([sum(c.get("active", 0) for c in counted),
                                               sum(c.get("entries", 0) for c in counted)], ctx)
        active = active / entries if entries else None
        history.active_fraction += [None] * (len(history.epoch) - 1 - len(history.active_fraction))
        history.active_fraction.append(active)
        if ctx.is_main:
            _save(checkpoint_dir / f"{phase}_epoch_{epoch + 1:03d}.pt",
                  {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "epoch": epoch + 1, "history": history.as_dict(), "run_id": run_id})
        if ctx.is_main:
            logger.info(f"{phase} epoch {epoch + 1}/{epochs}: loss {history.loss[-1]:.4f} "
                        f"train {history.train_accuracy[-1]:.3f} test {test_acc:.3f} "
                        + (f"active {100 * active:.1f} % " if active is not None else "")
                        + f"({history.seconds[-1]:.1f} s)")
    return history
