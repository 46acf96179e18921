"""NIR import of snnTorch and Norse models: float reproduction and quantised agreement.

Trains the peer models of ``tests/test_nir_peers.py`` (same settings and seeds),
exports each with its library's own NIR exporter, imports it and records: spike
mismatches of the imported float model against the source's forward (every layer,
step and test sample), the quantised network's class agreement with the source on
the digits test set (bit-accurate simulator), accuracies, and the timings.

    uv run python benchmarks/nir_peers.py --json benchmarks/results/nir_peers.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_nir_peers as peers  # noqa: E402

from neurodeploy.export.nir import nir_to_float, nir_to_network  # noqa: E402
from neurodeploy.machine import cpu_model as _cpu_model  # noqa: E402
from neurodeploy.sim.samples import simulated_outputs  # noqa: E402
from neurodeploy.train.imported import FloatImportedNetwork  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    load_before = os.getloadavg()
    xtr, ytr, xte, labels = peers.load_digits()
    results = {}
    for name, (build, forward, export, dt, lr, floor) in peers.PEERS.items():
        t0 = time.perf_counter()
        torch.manual_seed(0)
        net = peers._train(build(), forward, xtr, ytr, lr)
        train_s = time.perf_counter() - t0
        with torch.no_grad():
            source = [s.numpy() for s in forward(net, xte)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = export(net)
        t0 = time.perf_counter()
        ours = FloatImportedNetwork(nir_to_float(graph, dt))(xte)
        network = nir_to_network(graph, dt, name=name)
        import_s = time.perf_counter() - t0
        mismatches = int(sum((a.numpy() != b).sum() for a, b in zip(ours, source)))
        sim = simulated_outputs(network, xte.numpy().transpose(0, 2, 1))
        pq, ps = sim.sum(-1).argmax(1), source[-1].sum(1).argmax(1)
        results[name] = {
            "dt": dt, "hidden": peers.HIDDEN, "epochs": peers.EPOCHS,
            "float_spike_mismatches": mismatches,
            "float_spikes_compared": int(sum(b.size for b in source)),
            "agreement_quantized_vs_source": float((pq == ps).mean()),
            "agreement_floor_in_test": floor,
            "accuracy_source": float((ps == labels).mean()),
            "accuracy_quantized": float((pq == labels).mean()),
            "weight_exponents": network.metadata["weight_exponents"],
            "train_s": round(train_s, 2), "import_and_quantize_s": round(import_s, 3),
        }
        print(name, json.dumps(results[name]))
    out = {
        "benchmark": "nir_peers", "test_samples": int(len(labels)),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "versions": {m: __import__(m).__version__ for m in ("torch", "nir", "snntorch", "norse", "numpy")},
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print("wrote", args.json)


if __name__ == "__main__":
    main()
