"""The simulator's two products for binary input, side by side in one run: the int8
GEMM (torch._int_mm) and the event-driven product (the sum of the active inputs' weight
rows), over layer shapes and input densities. Reports both times, which one the
simulator's cost model picks (``_events_win``) and the time a wrong pick costs, so the
model's constants can be checked (or refitted) on another machine. JSON to
benchmarks/results/.

    python benchmarks/sim_synapse.py [--rows 4096] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from neurodeploy.sim import products

SHAPES = [(784, 512), (700, 512), (512, 512), (512, 256), (512, 128), (512, 64), (512, 10),
          (100, 50)]
DENSITIES = [0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2]


def best_time(fn, repeats: int) -> float:
    """Least disturbed of ``repeats`` runs (the machine is shared)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096, help="sample rows per product (batch x steps)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/sim_synapse.json")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    kernel = products._compiled_event_loops()
    if kernel is None:
        raise SystemExit("numba is not installed: there is no event-driven product to measure")
    rng = np.random.default_rng(0)
    results = []
    for k, n in SHAPES:
        w = torch.from_numpy(rng.integers(-128, 128, (k, n)).astype(np.int8))
        for density in DENSITIES:
            x = torch.from_numpy((rng.random((a.rows, k)) < density).astype(np.int8))
            xn = x.numpy()
            words = xn.view(np.uint64) if k % 8 == 0 else np.zeros((a.rows, 0), np.uint64)
            out = np.empty((a.rows, n), np.int32)
            t_gemm = best_time(lambda: torch._int_mm(x, w), a.repeats)
            t_event = best_time(lambda: kernel(xn, words, w.numpy(), out, products.EVENT_GROUP),
                                a.repeats)
            exact = bool(np.array_equal(out, torch._int_mm(x, w).numpy()))
            events = products._events_win(float(xn.mean()), k, n)
            chosen, other = (t_event, t_gemm) if events else (t_gemm, t_event)
            r = {"inputs": k, "outputs": n, "density": density, "gemm_ms": 1e3 * t_gemm,
                 "event_ms": 1e3 * t_event, "chosen": "event" if events else "gemm",
                 "choice_right": chosen <= other, "lost_ms": 1e3 * max(0.0, chosen - other),
                 "event_exact": exact}
            print(json.dumps(r))
            results.append(r)
    machine = {"platform": platform.platform(), "processor": platform.processor() or "unknown",
               "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
               "note": a.note}
    summary = {"rows": a.rows, "choices_right": sum(r["choice_right"] for r in results),
               "choices": len(results),
               "worst_loss_fraction": max(r["lost_ms"] / min(r["gemm_ms"], r["event_ms"])
                                          for r in results)}
    print(json.dumps(summary))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "summary": summary,
                                       "results": results}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
