"""The default-pipeline numbers over seeds (README results table, docs/benchmarks.md), as a user runs them:

    uv run python benchmarks/pipeline_seeds.py --seeds 0 1 2 --out /tmp/seeds \
        --json benchmarks/results/pipeline_digits_seeds.json

runs ``uv run neurodeploy pipeline <copy of examples/digits.yaml with seed S> --out DIR``
for each seed and writes one JSON: per seed the float / bit-exact / Lava accuracies,
Lava-vs-simulator agreement, the pipeline's own timings and the wall time, with the
machine (CPU model, cores) and ``os.getloadavg()`` before and after each run, since the
machine may be shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


from neurodeploy.machine import cpu_model  # noqa: E402


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def summarize(run_dir: Path, seed: int, wall_s: float, load_before, load_after) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    acc, ag = m["accuracy"], m["agreement"]
    return {"seed": seed, "float": acc["float"], "bit_exact_sim": acc["quantized"],
            "post_training_quantized": acc["post_training_quantized"],
            "hardware_aware_fine_tuned": acc["cotrained"], "lava": acc["lava"],
            "lava_vs_sim": ag["lava_vs_quantized"], "lava_samples": ag["samples"],
            "timings_s": m["timings_s"], "wall_s": wall_s,
            "loadavg_before": list(load_before), "loadavg_after": list(load_after)}


def ranges(runs: list) -> dict:
    out = {}
    for key in ("float", "bit_exact_sim", "lava", "wall_s"):
        vals = [r[key] for r in runs if r[key] is not None]
        out[key] = [min(vals), max(vals)] if vals else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--config", default=str(ROOT / "examples" / "digits.yaml"))
    p.add_argument("--out", required=True, help="directory for the configs and run directories")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.config).read_text())
    runs = []
    for seed in args.seeds:
        cfg = out / f"digits_seed{seed}.yaml"
        cfg.write_text(yaml.safe_dump({**base, "name": f"digits_seed{seed}", "seed": seed}, sort_keys=False))
        run_dir = out / f"run_seed{seed}"
        before = os.getloadavg()
        t0 = time.perf_counter()
        subprocess.run(["uv", "run", "neurodeploy", "pipeline", str(cfg), "--out", str(run_dir), "--force"],
                       cwd=ROOT, check=True)
        runs.append(summarize(run_dir, seed, time.perf_counter() - t0, before, os.getloadavg()))
    Path(args.json).write_text(json.dumps({"command": "uv run neurodeploy pipeline <digits.yaml, seed S>",
                                           "machine": machine(), "runs": runs, "range": ranges(runs)},
                                          indent=2) + "\n")


if __name__ == "__main__":
    main()
