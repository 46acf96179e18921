"""SparseProp speed: network spikes per second of wall time at N = 1e3 .. 1e6 (K = 100),
for the heap simulator (O(log N) per spike), the O(N)-per-spike exact event-driven
reference and Brian2 (clock-driven, same network), plus the peak memory of a 1e6-neuron
run to 1e5 spikes, in one run; writes JSON and a cost-per-spike plot.

    uv run --group bench python benchmarks/sparseprop.py --json benchmarks/results/sparseprop.json

Balanced inhibitory LIF network as in the SparseProp reference code: tau = 10 ms,
J0 = 1, drive from the balance condition for 1 Hz. All runs on one core.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurodeploy.sparseprop.models import ModelParams, balanced_drive  # noqa: E402
from neurodeploy.sparseprop.network import Network  # noqa: E402
from neurodeploy.sparseprop.simulate import HeapSimulator, ReferenceSimulator, initial_voltages  # noqa: E402

TAU, J0, RATE, K = 0.01, 1.0, 1.0, 100


def setup(model, n, seed=1):
    p = ModelParams(model, TAU, balanced_drive(model, TAU, J0, K, RATE))
    return p, Network(p, n, K, J0, seed), initial_voltages(p, n, seed + 1)


def machine():
    from neurodeploy.machine import cpu_model
    cpu = cpu_model()
    import numba
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "memory_gb": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def time_heap(model, n, spikes):
    p, net, v0 = setup(model, n)
    sim = HeapSimulator(p, v0, network=net)
    sim.run(min(spikes // 10, 10_000))  # compiled, past the initial transient's start
    t0, c0 = time.perf_counter(), time.process_time()
    out = sim.run(spikes)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"spikes": len(out), "wall_s": wall, "cpu_s": cpu, "spikes_per_s": len(out) / wall,
            "spikes_per_cpu_s": len(out) / cpu, "us_per_spike": 1e6 * wall / len(out),
            "simulated_s": float(out.times[-1] - out.times[0]),
            "mean_rate_hz": len(out) / n / float(out.times[-1] - out.times[0])}


def time_reference(model, n, spikes):
    p, net, v0 = setup(model, n)
    ref = ReferenceSimulator(p, v0, network=net)
    ref.run(5)
    t0, c0 = time.perf_counter(), time.process_time()
    out = ref.run(spikes)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # same network, same start: the heap simulator's first spikes
    heap = HeapSimulator(p, v0, network=net).run(5 + spikes)
    differ = np.flatnonzero(heap.neurons[5:] != out.neurons)
    prefix = int(differ[0]) if differ.size else len(out)  # QIF networks are chaotic
    rel = (float(np.max(np.abs(heap.times[5:5 + prefix] - out.times[:prefix]) / out.times[:prefix]))
           if prefix else None)
    return {"spikes": len(out), "wall_s": wall, "cpu_s": cpu, "spikes_per_s": len(out) / wall,
            "spikes_per_cpu_s": len(out) / cpu, "us_per_spike": 1e6 * wall / len(out),
            "same_sequence_as_heap": prefix == len(out), "same_leading_spikes": prefix,
            "max_relative_time_difference": rel}


def time_brian2(n, duration, dt=1e-4):
    """Clock-driven Brian2 (dt = 0.1 ms, cython code generation, numpy if that fails) on
    the same LIF network: same targets, jumps and initial voltages."""
    try:
        return _time_brian2(n, duration, dt, "cython")
    except ImportError:
        raise
    except Exception:  # no working compiler: numpy code generation
        return _time_brian2(n, duration, dt, "numpy")


def _time_brian2(n, duration, dt, target):
    import brian2 as b2
    b2.start_scope()
    p, net, v0 = setup("lif", n)
    b2.prefs.codegen.target = target
    b2.defaultclock.dt = dt * b2.second
    G = b2.NeuronGroup(n, "dv/dt = (-v + I) / tau : 1", threshold="v > 1", reset="v = 0",
                       method="exact", namespace={"I": p.drive, "tau": TAU * b2.second})
    G.v = v0
    csr = net.to_csr()
    S = b2.Synapses(G, G, on_pre=f"v_post += {net.J!r}")
    S.connect(i=np.repeat(np.arange(n), K), j=csr.indices)
    del csr
    mon = b2.SpikeMonitor(G)
    net_b2 = b2.Network(G, S, mon)
    net_b2.run(20 * dt * b2.second)  # build and compile
    before = mon.num_spikes
    t0, c0 = time.perf_counter(), time.process_time()
    net_b2.run(duration * b2.second)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    spikes = int(mon.num_spikes - before)
    return {"spikes": spikes, "wall_s": wall, "cpu_s": cpu, "spikes_per_s": spikes / wall,
            "spikes_per_cpu_s": spikes / cpu,
            "us_per_spike": 1e6 * wall / max(spikes, 1), "simulated_s": duration,
            "dt_s": dt, "codegen": target, "brian2": b2.__version__,
            "process_peak_rss_bytes": _status("VmHWM")}


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def memory_probe(model, n, spikes):
    """Run in a fresh process: peak RSS of a regenerated-connectivity run above the RSS
    after imports and compilation (the peak is reset through /proc/self/clear_refs)."""
    import tracemalloc
    p, net, v0 = setup(model, 1000)
    HeapSimulator(p, v0, network=net).run(100)  # compile before the baseline
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status("VmRSS")
    tracemalloc.start()
    p, net, v0 = setup(model, n)
    sim = HeapSimulator(p, v0, network=net)
    out = sim.run(spikes)
    traced = tracemalloc.get_traced_memory()[1]
    peak = _status("VmHWM")
    return {"neurons": n, "synapses_per_neuron": K, "spikes": len(out),
            "baseline_rss_bytes": base, "peak_rss_bytes": peak,
            "tracemalloc_peak_bytes": traced,
            "peak_minus_baseline_bytes": peak - base,
            "bytes_per_neuron": (peak - base) / n,
            "n_times_k_int32_matrix_bytes": 4 * n * K}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("heap", "o-"), ("reference", "s--"), ("brian2", "^:")):
        pts = [(r["neurons"], 1e6 * r[name]["cpu_s"] / r[name]["spikes"])
               for r in results if r.get(name)]
        if pts:
            x, y = zip(*pts)
            label = {"heap": "SparseProp heap, O(log N)", "reference": "exact event-driven, O(N)",
                     "brian2": "Brian2 clock-driven (dt 0.1 ms)"}[name]
            ax.loglog(x, y, style, label=label)
    heap = [(r["neurons"], 1e6 * r["heap"]["cpu_s"] / r["heap"]["spikes"]) for r in results]
    x0, y0 = heap[0]
    xs = np.array([r["neurons"] for r in results], dtype=float)
    ax.loglog(xs, y0 * np.log(xs) / math.log(x0), "k:", lw=0.8, label="∝ log N")
    ax.set_xlabel("neurons N (K = 100)")
    ax.set_ylabel("CPU time per network spike (µs)")
    ax.set_title("one core; CPU time, as the machine is shared (wall time in the JSON)",
                 fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot", default=None, help="PNG (default: next to the JSON)")
    ap.add_argument("--model", default="lif", choices=["lif", "qif"])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--spikes", type=int, default=200_000, help="timed heap spikes per size")
    ap.add_argument("--reference-budget", type=float, default=2e9,
                    help="neuron updates for the O(N) reference per size (spikes = budget/N)")
    ap.add_argument("--brian2-max", type=int, default=1_000_000,
                    help="largest N for Brian2 (N*K synapses: ~6 GB at 1e6)")
    ap.add_argument("--brian2-spikes", type=int, default=50_000)
    ap.add_argument("--memory-probe", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.model, args.memory_probe, 100_000)))
        return

    report = {"benchmark": "sparseprop", "model": args.model, "K": K, "tau_s": TAU, "J0": J0,
              "machine": machine(), "loadavg_start": os.getloadavg(), "sizes": []}
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        row = {"neurons": n}
        row["heap"] = time_heap(args.model, n, args.spikes)
        print(f"N={n:>8} heap {row['heap']['spikes_per_s']:.3g} spikes/s "
              f"({row['heap']['spikes_per_cpu_s']:.3g} per CPU second)", flush=True)
        ref_spikes = int(max(200, min(args.spikes, args.reference_budget / n)))
        row["reference"] = time_reference(args.model, n, ref_spikes)
        print(f"N={n:>8} O(N) reference {row['reference']['spikes_per_s']:.3g} spikes/s "
              f"(same first {row['reference']['same_leading_spikes']} spikes)", flush=True)
        row["speedup_vs_reference"] = row["heap"]["spikes_per_s"] / row["reference"]["spikes_per_s"]
        row["speedup_vs_reference_cpu"] = (row["heap"]["spikes_per_cpu_s"]
                                           / row["reference"]["spikes_per_cpu_s"])
        if args.model == "lif" and n <= args.brian2_max:
            duration = args.brian2_spikes / (n * row["heap"]["mean_rate_hz"])
            try:
                row["brian2"] = time_brian2(n, duration)
                row["speedup_vs_brian2"] = row["heap"]["spikes_per_s"] / row["brian2"]["spikes_per_s"]
                print(f"N={n:>8} brian2 {row['brian2']['spikes_per_s']:.3g} spikes/s", flush=True)
            except ImportError:
                row["brian2"] = None
        row["loadavg"] = os.getloadavg()
        report["sizes"].append(row)
    probe = subprocess.run([sys.executable, __file__, "--json", "-", "--model", args.model,
                            "--memory-probe", "1000000"], capture_output=True, text=True,
                           check=True)
    report["memory_1e6_neurons"] = json.loads(probe.stdout.strip().splitlines()[-1])
    print("memory:", report["memory_1e6_neurons"], flush=True)
    report["loadavg_end"] = os.getloadavg()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    png = Path(args.plot) if args.plot else out.with_suffix(".png")
    plot(report["sizes"], png)
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
