"""Data-parallel training on torch.distributed (2 CPU processes, gloo) against one process
with the same global batch: gradients, the pipeline's metrics, resume, rank-0-only writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.train import distributed
from neurodeploy.train.layers import SpikingNetwork
from neurodeploy.train.loop import batch_loss
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters

GLOBAL_BATCH = 23  # odd: the two ranks get slices of 12 and 11 samples
# float32 gradients summed in another order (two partial sums + gloo's all-reduce
# instead of one sum over the batch): agreement to a few ulps of the largest entry
RTOL, ATOL = 1e-5, 1e-6


def _model(backward: str) -> SpikingNetwork:
    torch.manual_seed(3)
    return SpikingNetwork((40,), [32], 5, CubaFloatParameters(0.25, 0.03, 1.0),
                          SurrogateParameters(3.0, 1.0, 3.0), backward=backward)


def _batch():
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(GLOBAL_BATCH, 25, 40, generator=g) < 0.2).float()
    y = torch.randint(0, 5, (GLOBAL_BATCH,), generator=g)
    return x, y


def _gradients_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        ctx = distributed.current()
        grads = {}
        for backward in BACKWARDS:
            model = _model(backward)
            ddp = distributed.wrap(model, ctx, "cpu")
            x, y = _batch()
            mine = distributed.shard(np.arange(GLOBAL_BATCH), ctx)
            loss, _ = batch_loss(ddp, x[mine], y[mine], 0.3, GLOBAL_BATCH, ctx.world_size)
            loss.backward()
            grads[backward] = {n: p.grad for n, p in model.named_parameters()}
        if rank == 0:
            torch.save(grads, out)
        torch.distributed.barrier()  # no rank tears gloo down while the other still uses it
    finally:
        torch.distributed.destroy_process_group()
    # leave without the interpreter's teardown: a spawned child's native thread pools can
    # abort there ("terminate called without an active exception") after the work is done
    sys.stdout.flush()
    os._exit(0)


BACKWARDS = ("dense", "sparse")


@pytest.fixture(scope="module")
def ddp_gradients(tmp_path_factory):
    """Each backward's parameter gradients after one step of 2 processes (gloo)."""
    tmp = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_gradients_worker, args=(2, str(tmp / "init"), str(tmp / "grads.pt")),
                                nprocs=2, join=True)
    return torch.load(tmp / "grads.pt")


@pytest.mark.parametrize("backward", BACKWARDS)
def test_two_process_gradients_equal_one_process_with_the_same_global_batch(ddp_gradients, backward):
    model = _model(backward)
    x, y = _batch()
    loss, _ = batch_loss(model, x, y, 0.3, GLOBAL_BATCH)
    loss.backward()
    single = {n: p.grad for n, p in model.named_parameters()}
    ddp = ddp_gradients[backward]
    assert single.keys() == ddp.keys()
    for name, g in single.items():
        assert g.abs().max() > 0, name  # the test would be empty on a dead layer
        torch.testing.assert_close(ddp[name], g, rtol=RTOL, atol=ATOL, msg=name)


def test_shards_cover_the_batch_in_order():
    idx = np.arange(23)
    parts = [distributed.shard(idx, distributed.Context(r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [8, 8, 7]
    assert np.array_equal(np.concatenate(parts), idx)


def test_a_trailing_batch_smaller_than_the_world_is_dropped():
    ctx = distributed.Context(1, 4)
    sizes = [g for _, g in distributed.global_batches(10, 7, 0, ctx)]
    assert sizes == [7]  # the trailing 3 samples cannot feed 4 ranks


def _pipeline(tmp_path, name, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "neurodeploy", "pipeline", str(tmp_path / "cfg.yaml"),
           "--out", str(tmp_path / name), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads((tmp_path / name / "metrics.json").read_text()), done.stdout


def _descendants(pid: int) -> list:
    """Every live descendant of ``pid`` (from /proc), children first found first."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _killed_after_first_epoch(tmp_path, name, *extra):
    """Start the pipeline and SIGKILL its whole process group (launcher and ranks) as
    soon as the first float checkpoint is in place."""
    import signal
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "neurodeploy", "pipeline", str(tmp_path / "cfg.yaml"),
           "--out", str(tmp_path / name), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    first = tmp_path / name / "checkpoints" / "float_epoch_001.pt"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in _descendants(proc.pid) + [proc.pid]:  # torch's launcher starts ranks in sessions of their own
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert first.exists() and not first.with_name("float_epoch_002.pt").exists()


@pytest.mark.slow
@pytest.mark.lava
def test_two_process_digits_pipeline_resumed_matches_one_process_and_lava(tmp_path):
    """`pipeline --nproc 2` (torch's launcher, gloo), killed after one epoch and resumed:
    the same training history and float / bit-exact accuracy as one uninterrupted
    process, spike-exact against Lava, world size recorded, rank 0 alone reporting."""
    pytest.importorskip("lava.lib.dl")
    import yaml

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "name": "ddp", "seed": 0,
        "data": {"name": "digits", "steps": 8, "limit": 150},
        "model": {"hidden": [24], "surrogate": {"band": 3.0}},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "backward": "sparse",
                  "hardware_aware_epochs": 1},
        "lava": {"samples": 30}, "hardware": {"config": None}}))
    one, _ = _pipeline(tmp_path, "one")
    _killed_after_first_epoch(tmp_path, "two", "--nproc", "2")
    two, out = _pipeline(tmp_path, "two", "--nproc", "2", "--resume")
    assert "resumed float training from float_epoch_001.pt" in out
    assert out.count("== neurodeploy pipeline") == 1  # rank 0 alone reports
    assert two["distributed"]["world_size"] == 2 and one["distributed"]["world_size"] == 1
    assert two["history"]["loss"] == pytest.approx(one["history"]["loss"], rel=1e-5)
    for key in ("float", "quantized", "post_training_quantized", "cotrained"):
        assert abs(two["accuracy"][key] - one["accuracy"][key]) <= 0.01, key
    assert two["agreement"]["lava_vs_quantized"] == 1.0 and two["agreement"]["samples"] == 30
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == [
        "float_epoch_001.pt", "float_epoch_002.pt", "hardware_epoch_001.pt"]


def test_launched_processes_share_the_cores_unless_told_otherwise(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    env = distributed.launch_environment({"PATH": "/bin"}, 4)
    assert env["OMP_NUM_THREADS"] == "2" and env["NUMBA_NUM_THREADS"] == "2" and env["PATH"] == "/bin"
    assert distributed.launch_environment({}, 16)["NUMBA_NUM_THREADS"] == "1"
    mine = distributed.launch_environment({"OMP_NUM_THREADS": "3", "NUMBA_NUM_THREADS": "5"}, 4)
    assert (mine["OMP_NUM_THREADS"], mine["NUMBA_NUM_THREADS"]) == ("3", "5")
