"""Do deep stacks of Spiking Recurrent Cells train where deep CUBA-LIF stacks struggle?

Trains SRC networks and CUBA-LIF networks of equal width at several depths (hidden
layers) on scikit-learn's digits (rate-coded, the pipeline's dataset and split), with
the same epochs, batches, learning rate and seeds, and writes the float test accuracy
of each (after the last epoch and the best over epochs) side by side, with a plot.

- SRC: :class:`neurodeploy.train.src.SRCNetwork` (the paper's constants, leaky
  readout, cross-entropy on the readout's mean current);
- CUBA-LIF: :class:`neurodeploy.train.layers.SpikingNetwork` with the pipeline's
  defaults (examples/digits_dense.yaml: current decay 0.25, voltage decay 0.03,
  threshold 1, fast-sigmoid surrogate of scale 3, dense BPTT, cross-entropy on output
  spike counts x 0.3); ``--tune-height`` also sets each layer's surrogate height so its
  backward gain is 1 (train.depth), the project's remedy for deep LIF stacks.

    python benchmarks/src_depth.py --json benchmarks/results/src_depth_digits.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from neurodeploy.machine import cpu_model  # noqa: E402


def run_one(job: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from neurodeploy.data import DataSpec, load_dataset
    from neurodeploy.train.layers import SpikingNetwork
    from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
    from neurodeploy.train.src import SrcFloatParameters, SRCNetwork

    torch.set_num_threads(1)
    torch.manual_seed(job["seed"])
    train, test = load_dataset(DataSpec(name="digits", steps=job["steps"], seed=job["seed"]))
    hidden = [job["width"]] * job["depth"]
    if job["cell"] == "src":
        model = SRCNetwork(train.input_shape, hidden, train.num_classes,
                           SrcFloatParameters(initial_state=job["initial_state"]))
        logit_scale = 1.0
    else:
        model = SpikingNetwork(train.input_shape, hidden, train.num_classes,
                               CubaFloatParameters(0.25, 0.03, 1.0), SurrogateParameters(3.0, 1.0, None))
        logit_scale = 0.3
        if job["cell"] == "cuba_tuned":
            from neurodeploy.train.depth import tune_surrogate_heights
            x, _ = next(iter(train.batches(job["batch_size"], shuffle=True, seed=job["seed"])))
            tune_surrogate_heights(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=job["lr"])
    accs, t0 = [], time.perf_counter()
    for epoch in range(job["epochs"]):
        model.train()
        for x, y in train.batches(job["batch_size"], shuffle=True, seed=job["seed"] + epoch):
            loss = F.cross_entropy(model.scores(x) * logit_scale, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test.batches(256, shuffle=False):
                correct += int((model.scores(x).argmax(1) == y).sum())
                total += len(y)
        accs.append(correct / total)
    return {**job, "test_accuracy_per_epoch": accs, "final": accs[-1], "best": max(accs),
            "train_seconds": time.perf_counter() - t0}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for cell, style in (("src", "o-"), ("cuba", "s--"), ("cuba_tuned", "^:")):
        rows = [r for r in results["runs"] if r["cell"] == cell]
        if not rows:
            continue
        depths = sorted({r["depth"] for r in rows})
        mean = [np.mean([r["final"] for r in rows if r["depth"] == d]) for d in depths]
        lo = [min(r["final"] for r in rows if r["depth"] == d) for d in depths]
        hi = [max(r["final"] for r in rows if r["depth"] == d) for d in depths]
        ax.errorbar(depths, mean, yerr=[np.subtract(mean, lo), np.subtract(hi, mean)], fmt=style,
                    capsize=3, label={"src": "SRC", "cuba": "CUBA-LIF",
                                      "cuba_tuned": "CUBA-LIF, tuned surrogate"}[cell])
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("test accuracy (last epoch)")
    ax.set_title(f"digits, width {results['width']}, {results['epochs']} epochs, "
                 f"{len(results['seeds'])} seed(s)", fontsize=9)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4, 6, 8])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--cells", nargs="+", default=["src", "cuba"], choices=["src", "cuba", "cuba_tuned"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--initial-state", type=float, default=0.0, help="SRC h and h_s at the start")
    args = ap.parse_args(argv)
    jobs = [dict(cell=c, depth=d, seed=s, width=args.width, epochs=args.epochs, steps=args.steps,
                 batch_size=args.batch_size, lr=args.lr, initial_state=args.initial_state)
            for d in sorted(args.depths, reverse=True) for c in args.cells for s in args.seeds]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = []
        for r in pool.map(run_one, jobs):
            print(f"{r['cell']:>10} depth {r['depth']} seed {r['seed']}: final {r['final']:.3f} "
                  f"best {r['best']:.3f} ({r['train_seconds']:.0f} s)", flush=True)
            runs.append(r)
    import torch
    results = {
        "benchmark": "src_depth", "dataset": "digits (sklearn, rate-coded, 1437 train / 360 test)",
        "width": args.width, "epochs": args.epochs, "steps": args.steps, "seeds": args.seeds,
        "batch_size": args.batch_size, "lr": args.lr, "depths": sorted(args.depths),
        "src_initial_state": args.initial_state,
        "summary": {c: {str(d): {"final": [r["final"] for r in runs if r["cell"] == c and r["depth"] == d],
                                 "best": [r["best"] for r in runs if r["cell"] == c and r["depth"] == d]}
                        for d in sorted(args.depths)} for c in args.cells},
        "runs": runs,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "workers": args.workers, "wall_seconds": time.perf_counter() - t0},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.json.with_suffix(".png"))
    print(f"wrote {args.json} and {args.json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
