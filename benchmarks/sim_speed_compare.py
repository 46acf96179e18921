"""The CPU simulator of two source trees side by side in one run: benchmarks/sim_speed.py's
networks (and lava-dl's PilotNet SDNN when installed), the same inputs, each tree timed in
its own process, the trees alternating (A B B A ...) over several rounds so that the
shared machine's load falls on both alike. Reports per network and tree the best and
median sample-steps per second over the rounds, the ratio after / before, and whether
both trees gave the same output. JSON to benchmarks/results/.

    python benchmarks/sim_speed_compare.py --before /path/to/other/checkout [--after .]
        [--rounds 4] [--steps 200] [--batch 128] [--out FILE]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _worker(tmp: Path, repeats: int) -> None:
    """In a tree's process: each network's best of ``repeats`` runs after a warm-up."""
    import warnings

    from neurodeploy.export.netx import read_netx
    from neurodeploy.sim.simulator import simulate
    warnings.simplefilter("ignore")  # LavaConvOverflowWarning on the PilotNet inputs
    spec = json.loads((tmp / "runs.json").read_text())
    out = {}
    for run in spec:
        net, x = read_netx(run["net"]), np.load(run["inputs"])
        simulate(net, x[:2], steps=5)  # compiles (or loads) the numba loops
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            spikes = simulate(net, x, steps=run["steps"]).spikes
            best = min(best, time.perf_counter() - t)
        out[run["name"]] = {"seconds": best, "output_sha256": hashlib.sha256(spikes.tobytes()).hexdigest()}
    print(json.dumps({"source": str(Path(simulate.__code__.co_filename).resolve()), "runs": out}))


def _prepare(tmp: Path, steps: int, batch: int) -> list:
    sys.path.insert(0, str(HERE))
    import sim_speed

    from neurodeploy.export.netx import write_netx
    rng = np.random.default_rng(0)
    nets = [sim_speed.dense_net([100, 50, 10], rng), sim_speed.dense_net([784, 512, 512, 10], rng),
            sim_speed.conv_net(rng), sim_speed.sparse_net(rng), sim_speed.recurrent_net(rng)]
    runs = []
    for k, net in enumerate(nets):
        density = 0.03 if "sparse" in net.name else 0.2
        x = (rng.random((batch,) + tuple(net.input_shape[::-1]) + (steps,)) < density).astype(np.int8)
        np.save(tmp / f"x{k}.npy", x)
        runs.append({"name": net.name, "net": str(write_netx(net, tmp / f"n{k}.net")),
                     "inputs": str(tmp / f"x{k}.npy"), "steps": steps, "input_density": density})
    pilotnet = sim_speed.pilotnet_sdnn(rng)
    if pilotnet is not None:
        path, x = pilotnet
        np.save(tmp / "pilotnet.npy", x[: max(1, batch // 4)])
        runs.append({"name": "PilotNet SDNN (lava-dl gts)", "net": str(path), "inputs": str(tmp / "pilotnet.npy"),
                     "steps": steps, "input_density": "graded"})
    (tmp / "runs.json").write_text(json.dumps(runs))
    return runs


def _commit(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "neurodeploy"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="source tree of the code before the change")
    ap.add_argument("--after", default=str(HERE.parent), help="source tree of the code after it")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="runs per network in each tree's process")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/sim_speed_side_by_side.json")
    ap.add_argument("--note", default="")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return _worker(Path(a.worker), a.repeats)
    from neurodeploy.machine import describe
    trees = {"before": Path(a.before).resolve(), "after": Path(a.after).resolve()}
    times = {label: {} for label in trees}
    hashes = {label: {} for label in trees}
    with tempfile.TemporaryDirectory() as tmp:
        runs = _prepare(Path(tmp), a.steps, a.batch)
        for r in range(a.rounds):
            for label in (("before", "after") if r % 2 == 0 else ("after", "before")):
                env = {**os.environ, "PYTHONPATH": str(trees[label])}
                done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--before", ".",
                                       "--worker", tmp, "--repeats", str(a.repeats)],
                                      capture_output=True, text=True, env=env, cwd=trees[label], check=True)
                report = json.loads(done.stdout.strip().splitlines()[-1])
                if not report["source"].startswith(str(trees[label])):
                    raise SystemExit(f"{label}: the worker ran {report['source']}, not {trees[label]}'s code")
                for name, v in report["runs"].items():
                    times[label].setdefault(name, []).append(v["seconds"])
                    hashes[label].setdefault(name, set()).add(v["output_sha256"])
                print(f"round {r + 1} {label} done", flush=True)
    results = []
    for run in runs:
        name = run["name"]
        row = {"network": name, "input_density": run["input_density"], "steps": run["steps"]}
        for label in trees:
            t = times[label][name]
            row[label] = {"best_seconds": min(t), "median_seconds": statistics.median(t), "seconds_per_round": t}
        row["after_over_before_best"] = row["before"]["best_seconds"] / row["after"]["best_seconds"]
        row["after_over_before_median"] = row["before"]["median_seconds"] / row["after"]["median_seconds"]
        row["outputs_identical"] = len(hashes["before"][name] | hashes["after"][name]) == 1
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in trees}))
    doc = {"machine": {**describe(), "note": a.note},
           "what": "simulate() wall time per network, best of --repeats runs in each tree's process, "
                   "trees alternating over --rounds; after_over_before_*: speed of after relative to "
                   "before (> 1: after faster)",
           "batch": a.batch, "steps": a.steps, "rounds": a.rounds, "repeats": a.repeats,
           "commits": {label: _commit(tree) for label, tree in trees.items()}, "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
