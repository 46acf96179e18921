"""Dense vs sparse backward in the pipeline itself (train, quantise, export, bit-exact
simulation of the whole test set) on the embedded digits example, over seeds and
surrogate bands; Lava off. Decides the pipeline's default backward: the issue asks
for sparse once it matches dense accuracy.

    python benchmarks/sparse_pipeline_digits.py [--bands 1.0 2.0 3.0] [--seeds 0 1 2]
        [--json benchmarks/results/sparse_pipeline_digits_cpu.json]

"dense" is BPTT with the untruncated surrogate (no band); "sparse band b" the sparse
backward with the surrogate truncated to |v - threshold| < b; everything else is the
example's config. Per run: float, bit-exact (= quantized) and post-training-quantized
test accuracy, the hidden layers' active fraction over the float epochs, and the
median float-epoch time.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurodeploy.config import DEFAULT_CONFIG, load_config  # noqa: E402
from neurodeploy.pipeline import machine_description, run_pipeline  # noqa: E402


def one_run(base, seed: int, band, out: Path) -> dict:
    backward = "dense" if band is None else "sparse"
    d = base.resolved()
    d["seed"] = seed
    d["model"]["surrogate"]["band"] = band
    d["train"]["backward"] = backward
    d["lava"]["enabled"] = False
    d["hardware"]["config"] = None  # no resource report
    cfg = type(base).model_validate(d)
    m = run_pipeline(cfg, out).metrics
    h = m["history"]
    float_epochs = [s for s, p in zip(h["seconds"], h["phase"]) if p == "float"]
    active = [a for a, p in zip(h.get("active_fraction", []), h["phase"]) if p == "float" and a is not None]
    acc = m["accuracy"]
    return {"seed": seed, "backward": backward, "band": band,
            "float": acc["float"], "sim": acc["sim"], "post_training_quantized": acc["post_training_quantized"],
            "active_fraction_mean": sum(active) / len(active) if active else None,
            "float_epoch_s_median": sorted(float_epochs)[len(float_epochs) // 2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--bands", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", default="benchmarks/results/sparse_pipeline_digits_cpu.json")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    base = load_config(a.config)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for band in [None] + list(a.bands):
            for seed in a.seeds:
                r = one_run(base, seed, band, Path(tmp) / f"b{band}_s{seed}")
                print(json.dumps(r), flush=True)
                runs.append(r)
    dense = {r["seed"]: r for r in runs if r["band"] is None}
    summary = []
    for band in a.bands:
        rs = [r for r in runs if r["band"] == band]
        diff = lambda k: [100 * (r[k] - dense[r["seed"]][k]) for r in rs]  # noqa: E731
        summary.append({"band": band,
                        "float_minus_dense_points": diff("float"),
                        "sim_minus_dense_points": diff("sim"),
                        "mean_float_minus_dense_points": sum(diff("float")) / len(rs),
                        "mean_sim_minus_dense_points": sum(diff("sim")) / len(rs),
                        "active_fraction_mean": sum(r["active_fraction_mean"] for r in rs) / len(rs),
                        "epoch_time_ratio_dense_over_sparse":
                            sum(dense[r["seed"]]["float_epoch_s_median"] for r in rs)
                            / sum(r["float_epoch_s_median"] for r in rs)})
        print(json.dumps(summary[-1]))
    out = {"config": a.config, "machine": {**machine_description(), "processor": platform.processor(),
                                          "torch_threads": torch.get_num_threads(), "note": a.note},
           "runs": runs, "summary": summary}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
