"""Start-up time of the command line and of reading a netx file, each in a fresh
interpreter (what a user waits for): ``neurodeploy --help``, ``neurodeploy
simulate --help``, reading a ``.net`` file with :func:`neurodeploy.export.netx.read_netx`,
and, for comparison, ``import torch`` alone. Also records whether each imported
torch. JSON to benchmarks/results/.

    python benchmarks/cli_startup.py [--repeats 7] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from neurodeploy.machine import cpu_model as _cpu_model  # noqa: E402


def _time(cmd, repeats: int) -> dict:
    """Wall times of ``repeats`` fresh runs (one warm-up run first, not counted)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return {"min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
            "runs_s": times}


def _imports_torch(code: str) -> bool:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('torch' in sys.modules)"],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()[-1] == "True"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/cli_startup.json")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    load_before = list(os.getloadavg())

    from neurodeploy.export.netx import write_netx
    from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Network
    rng = np.random.default_rng(0)
    net = Network((Conv(2 * rng.integers(-20, 20, (8, 2, 3, 3)), CubaNeuron(4096, 100, 40), shape=(8, 15, 15),
                        stride=(2, 2)), Flatten(shape=(8, 15, 15)),
                   Dense(2 * rng.integers(-20, 20, (128, 8 * 15 * 15)), CubaNeuron(1024, 100, 40)),
                   Dense(2 * rng.integers(-20, 20, (10, 128)), CubaNeuron(1024, 100, 40))), (2, 32, 32))
    tmp = Path(tempfile.mkdtemp())
    path = write_netx(net, tmp / "conv.net")
    exe = shutil.which("neurodeploy") or None
    cli = [exe] if exe else [sys.executable, "-m", "neurodeploy.cli"]
    read = f"from neurodeploy.export.netx import read_netx; read_netx({str(path)!r})"
    cases = {
        "neurodeploy --help": (cli + ["--help"], "from click.testing import CliRunner\n"
                               "from neurodeploy.cli import main\nCliRunner().invoke(main, ['--help'])"),
        "neurodeploy simulate --help": (cli + ["simulate", "--help"],
                                        "from click.testing import CliRunner\nfrom neurodeploy.cli import main\n"
                                        "CliRunner().invoke(main, ['simulate', '--help'])"),
        "read_netx (conv network)": ([sys.executable, "-c", read], read),
        "python -c 'import torch' (reference)": ([sys.executable, "-c", "import torch"], "import torch"),
    }
    results = []
    for name, (cmd, code) in cases.items():
        r = _time(cmd, a.repeats)
        r.update(case=name, command=" ".join(map(str, cmd)), imports_torch=_imports_torch(code))
        results.append(r)
        print(f"{name:40s} median {r['median_s']:.3f} s (min {r['min_s']:.3f}, max {r['max_s']:.3f}); "
              f"imports torch: {r['imports_torch']}")
    shutil.rmtree(tmp)
    out = {
        "machine": {"platform": platform.platform(), "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "loadavg_before": load_before, "note": a.note},
        "repeats": a.repeats,
        "results": results,
    }
    out["machine"]["loadavg_after"] = list(os.getloadavg())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
