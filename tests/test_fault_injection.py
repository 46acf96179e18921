"""Fault injection: the pipeline, a real subprocess, is killed with SIGKILL at random
points (during training, in the middle of a checkpoint write, during export, while
Lava runs), resumed each time with ``--resume``, and must finish with the same
``model.net`` (every dataset, integer for integer) as an uninterrupted run.

Each run is its own process group (Lava forks workers), and the whole group is
killed. The kill points are drawn from a seeded random stream
(``NEURODEPLOY_FAULT_SEED``, printed on failure).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import LAVA

pytestmark = pytest.mark.slow

CONFIG = {"name": "fault", "seed": 3, "data": {"name": "digits", "steps": 6, "limit": 60},
          "model": {"hidden": [8]},
          "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "hardware_aware_epochs": 1},
          "lava": {"enabled": LAVA, "samples": 2}, "hardware": {"config": None}}
RUN_TIMEOUT_S = 600

# Runs the CLI with one fault armed (FAULT=kind:argument); the fault kills the whole
# process group with SIGKILL, as a user's `kill -9` or an out-of-memory killer would.
RUNNER = r"""
import os, signal, sys, threading
kind, arg = os.environ.get("FAULT", "none:0").split(":")
die = lambda: os.killpg(os.getpgid(0), signal.SIGKILL)
if kind == "checkpoint":  # the arg-th checkpoint write (or the first of a phase named arg)
    import torch             # stops halfway through its file
    real_save, calls = torch.save, [0]
    def save(obj, f, *a, **k):
        calls[0] += 1
        real_save(obj, f, *a, **k)
        if (calls[0] == int(arg)) if arg.isdigit() else os.path.basename(str(f)).startswith(arg):
            size = os.path.getsize(f)
            with open(f, "r+b") as fh:
                fh.truncate(size // 2)
            die()
    torch.save = save
elif kind == "export":  # model.net fully written to its temporary file, not yet in place
    real_replace = os.replace
    def replace(src, dst, *a, **k):
        if str(dst).endswith("model.net"):
            die()
        return real_replace(src, dst, *a, **k)
    os.replace = replace
elif kind == "lava":  # arg seconds after Lava starts running the test samples
    import neurodeploy.pipeline as P
    real_lava = P.lava_outputs
    def lava_outputs(*a, **k):
        threading.Timer(float(arg), die).start()
        return real_lava(*a, **k)
    P.lava_outputs = lava_outputs
from neurodeploy.cli import main
sys.argv = ["neurodeploy"] + sys.argv[1:]
main()
"""


def start(config: Path, out: Path, *extra, fault: str = "none:0") -> subprocess.Popen:
    env = dict(os.environ, FAULT=fault, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", RUNNER, "pipeline", str(config), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def finish(p: subprocess.Popen) -> tuple:
    try:
        out, _ = p.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail(f"run did not finish in {RUN_TIMEOUT_S} s:\n{out[-3000:]}")
    return p.returncode, out


def kill_after_line(p: subprocess.Popen, marker: str, delay: float) -> tuple:
    """Kill the run's process group ``delay`` s after it prints a line containing
    ``marker`` (or let it end if it never does)."""
    lines = []
    timer = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    for line in p.stdout:
        lines.append(line)
        if timer is None and marker in line:
            timer = threading.Timer(delay, lambda: _killpg(p.pid))
            timer.start()
        if time.monotonic() > deadline:
            _killpg(p.pid)
    p.wait()
    if timer is not None:
        timer.cancel()
    return p.returncode, "".join(lines)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def netx_content(path: Path) -> dict:
    """Every dataset of an HDF5 file: name -> (dtype, shape, values)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                v = obj[()]
                out[name] = (str(obj.dtype), obj.shape, v.tobytes() if isinstance(v, np.ndarray) else v)
        f.visititems(visit)
    return out


def test_killed_runs_resume_to_the_uninterrupted_model(tmp_path):
    seed = int(os.environ.get("NEURODEPLOY_FAULT_SEED", "20"))
    rng = random.Random(seed)
    config = tmp_path / "fault.yaml"
    config.write_text(yaml.safe_dump(CONFIG))

    code, log = finish(start(config, tmp_path / "reference"))
    assert code == 0, log[-3000:]
    reference = netx_content(tmp_path / "reference" / "model.net")

    out = tmp_path / "killed"
    steps = [
        # (what is interrupted, how, arguments)
        ("a checkpoint write (float epoch 2, half written)", "fault", ["checkpoint:2"], []),
        ("the fine-tuning checkpoint write", "fault", ["checkpoint:hardware"], ["--resume"]),
        ("training, at a random moment of the fine-tuning epoch or after", "line",
         ["resumed float training", rng.uniform(0.0, 1.5)], ["--resume"]),
        ("export (model.net written, not yet in place)", "fault", ["export:0"], ["--resume"]),
    ]
    if LAVA:
        steps.append(("the Lava run", "fault", [f"lava:{rng.uniform(0.5, 3.0):.2f}"], ["--resume"]))
    history = []
    for what, how, args, extra in steps:
        if how == "fault":
            code, log = finish(start(config, out, *extra, fault=args[0]))
        else:
            code, log = kill_after_line(start(config, out, *extra), args[0], args[1])
        history.append((what, code))
        assert code in (0, -signal.SIGKILL), f"seed {seed}, {what}: exit {code}\n{log[-3000:]}"
        assert "Traceback" not in log, f"seed {seed}, {what}:\n{log[-3000:]}"
        if len(history) == 1:  # epoch 2's checkpoint is a half-written temporary, epoch 1's intact
            names = sorted(p.name for p in (out / "checkpoints").iterdir())
            assert names == ["float_epoch_001.pt", "float_epoch_002.tmp"], names
        if len(history) == 2:  # ... which resume ignores: it continues after epoch 1
            assert "resumed float training from float_epoch_001.pt (epoch 1/3)" in log, log[-3000:]
            assert "float epoch 1/3" not in log
    # the faults that must have fired did (a run that ends normally proves nothing)
    assert [c for (w, c) in history if "write" in w or "export" in w] == [-signal.SIGKILL] * 3, history

    code, log = finish(start(config, out, "--resume"))
    assert code == 0, f"seed {seed}: final --resume failed after {history}\n{log[-3000:]}"
    assert "resumed" in log
    got = netx_content(out / "model.net")
    assert got.keys() == reference.keys()
    for name in reference:
        assert got[name] == reference[name], f"seed {seed}: {name} differs after {history}"
