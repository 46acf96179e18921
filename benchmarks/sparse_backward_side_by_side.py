"""The sparse backward's CPU timings of two checkouts of this project side by side.

Runs ``benchmarks/sparse_backward.py`` of each checkout (``--before``, ``--after``; the
same Python environment, each checkout's own ``neurodeploy`` first on the path) in
alternating order (before, after, after, before, ...) so that a shared machine's slow
spells hit both, and writes per run and per checkout (min over runs) the sparse
backward of the whole network, of its last hidden layer alone, and the dense backward
as a yardstick of the machine's speed during each run, with each checkout's commit.

    python benchmarks/sparse_backward_side_by_side.py --before ../old-checkout \\
        --json benchmarks/results/sparse_backward_cpu_side_by_side.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurodeploy.machine import describe  # noqa: E402

#: per network, the timings kept from each run of benchmarks/sparse_backward.py
KEPT = {
    "sparse_backward_s": lambda r: r["sparse_backward_s"],
    "dense_backward_s": lambda r: r["dense_backward_s"],
    "hidden_layer_sparse_backward_s":
        lambda r: r["hidden_layer_timing_stats"]["sparse"]["backward_min"],
}


def commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def run_once(tree: Path, bench_args: list, out: Path) -> dict:
    """One run of ``tree``'s benchmark -> {network: {kept timing: seconds}}."""
    subprocess.run([sys.executable, str(tree / "benchmarks" / "sparse_backward.py"),
                    "--json", str(out), *bench_args], check=True, cwd=tree,
                   stdout=subprocess.DEVNULL)
    summary = json.loads(out.read_text())
    return {r["network"]: {k: f(r) for k, f in KEPT.items()} for r in summary["networks"]}


def order(rounds: int) -> list:
    """before, after, after, before, ...: each checkout runs first in half the rounds."""
    pairs = (("before", "after"), ("after", "before"))
    return [name for i in range(rounds) for name in pairs[i % 2]]


def summarise(runs: list) -> dict:
    """Min over runs per checkout, network and timing, and the after/before ratios."""
    best: dict = {}
    for run in runs:
        for net, timings in run["timings"].items():
            slot = best.setdefault(run["tree"], {}).setdefault(net, {})
            for key, value in timings.items():
                slot[key] = min(value, slot.get(key, value))
    ratios = {net: {key: best["after"][net][key] / best["before"][net][key]
                    for key in best["after"][net]}
              for net in best["after"]}
    return {"min_over_runs": best, "after_over_before": ratios}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="the other checkout")
    ap.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    ap.add_argument("--json", type=Path, required=True, help="output JSON file")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each checkout")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--networks", nargs="*", default=["shd_700_200rec_20", "fmnist_784_200_200_10"])
    args = ap.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        if not (tree / "benchmarks" / "sparse_backward.py").is_file():
            ap.error(f"--{name} {tree}: expected a checkout with benchmarks/sparse_backward.py")
    bench_args = ["--device", "cpu", "--no-slayer", "--batch", str(args.batch), "--steps",
                  str(args.steps), "--reps", str(args.reps), "--networks", *args.networks]
    commits = {name: commit(tree) for name, tree in trees.items()}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(order(args.rounds)):
            timings = run_once(trees[name], bench_args, Path(tmp) / f"{k}.json")
            runs.append({"tree": name, "timings": timings})
            print(name, json.dumps(timings), flush=True)
    result = {
        "measures": "CPU sparse backward (benchmarks/sparse_backward.py) of two checkouts, "
                    "runs alternating; seconds, min over each run's reps",
        "commits": commits,
        "machine": describe(),
        "settings": {"rounds": args.rounds, "order": order(args.rounds),
                     "benchmark_args": bench_args},
        **summarise(runs),
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
