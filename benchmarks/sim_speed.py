"""Simulator vs Lava (Loihi2SimCfg fixed_pt): same network, same inputs, side by
side in one process run. Reports sample-steps per second for each, the ratio and
whether the spikes of the Lava samples were identical. Lava's time includes building
its processes (as a user's run of one sample does); ``speedup_vs_lava_steady`` divides
by Lava's marginal rate instead (one more Lava run of steps // 5 steps, the build
excluded), the figure for long runs. JSON to benchmarks/results/.

    python benchmarks/sim_speed.py [--steps 1000] [--batch 256] [--out FILE]

With ``--device cuda`` the simulator runs on the GPU (no Lava: the CPU simulator is the
reference there): per network the best of three runs from numpy inputs (the transfer
to the GPU and the input checks included) and from inputs already on the GPU, and
whether the spikes of the first ``--check-batch`` samples are identical to the CPU
simulator's.

    python benchmarks/sim_speed.py --device cuda --batch 4096 --out benchmarks/results/sim_speed_cuda_h200.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.lava_adapter import lava_dl_test_data, run_netx
from neurodeploy.machine import describe
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network
from neurodeploy.sim.simulator import LavaConvOverflowWarning, simulate


def dense_net(sizes, rng):
    layers = [Dense(weight=2 * rng.integers(-40, 40, (o, i)), neuron=CubaNeuron(1024, 256, 80))
              for i, o in zip(sizes[:-1], sizes[1:])]
    return Network(layers=tuple(layers), input_shape=(sizes[0],), name="-".join(map(str, sizes)))


def sparse_net(rng):
    """SHD-like: 700 input channels at 3 % density, 3-7 % activity in the layers below
    (the event-driven synapse's regime)."""
    sizes, thresholds = [700, 512, 512, 20], [1200, 1300, 1000]
    layers = [Dense(weight=2 * rng.integers(-40, 40, (o, i)), neuron=CubaNeuron(1024, 256, th))
              for i, o, th in zip(sizes[:-1], sizes[1:], thresholds)]
    return Network(layers=tuple(layers), input_shape=(700,), name="700-512-512-20 sparse")


def recurrent_net(rng):
    """SHD-like with a recurrent hidden layer (dense_rec): 700-256(rec)-20, 3 % input."""
    hidden = Dense(weight=2 * rng.integers(-40, 40, (256, 700)),
                   weight_rec=2 * rng.integers(-20, 20, (256, 256)), neuron=CubaNeuron(1024, 256, 1000))
    out = Dense(weight=2 * rng.integers(-40, 40, (20, 256)), neuron=CubaNeuron(1024, 256, 1000))
    return Network(layers=(hidden, out), input_shape=(700,), name="700-256rec-20 sparse")


def pilotnet_sdnn(rng):
    """lava-dl's PilotNet SDNN (its netx test network: graded sigma-delta, 4 conv and 4
    dense blocks), 32 samples of 16 noisy frames around lava-dl's test image, repeated
    cyclically; None when lava-dl's test data is not installed."""
    base = lava_dl_test_data()
    if base is None:
        return None
    g = base / "gts" / "pilotnet_sdnn"
    img = np.load(g / "input.npy")  # (100, 33, 3, 1) netx order
    noise = rng.integers(-20, 21, (32,) + img.shape[:-1] + (16,))  # the image's scale (-52..64)
    return g / "network.net", (img[None] + noise).astype(np.int32)


def conv_net(rng):
    c1 = Conv(weight=2 * rng.integers(-30, 30, (8, 2, 3, 3)), neuron=CubaNeuron(1024, 256, 60),
              shape=(8, 15, 15), stride=(2, 2))
    c2 = Conv(weight=2 * rng.integers(-30, 30, (16, 8, 3, 3)), neuron=CubaNeuron(1024, 256, 60),
              shape=(16, 7, 7), stride=(2, 2))
    d = Dense(weight=2 * rng.integers(-30, 30, (10, 16 * 49)), neuron=CubaNeuron(1024, 256, 60))
    return Network(layers=(Input(shape=(2, 32, 32), neuron=CubaNeuron(4096, 0, 0)), c1, c2,
                           Flatten(shape=(16 * 49,)), d), input_shape=(2, 32, 32),
                   name="conv 2x32x32-8c3s2-16c3s2-10")


def prepare(net, steps, batch, rng, tmp, density=0.2):
    path = write_netx(net, Path(tmp) / f"{abs(hash(net.name))}.net")
    feed = tuple(net.input_shape[::-1])
    x = (rng.random((batch,) + feed + (steps,)) < density).astype(np.int8)
    return path, x


def bench_sim(path, x, steps, repeats=3):
    """Best of ``repeats`` runs (the machine is shared), whole batch -> (spikes,
    seconds, the layers named by LavaConvOverflowWarnings: conv sums beyond int32 in
    some sample, where Lava's Conv model would give -2**31, so its spikes would differ
    from these exact ones)."""
    model = read_netx(path)
    simulate(model, x[:2], steps=5)  # warm-up
    best, out = float("inf"), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LavaConvOverflowWarning)
        for _ in range(repeats):
            t = time.perf_counter()
            out = simulate(model, x, steps=steps).spikes
            best = min(best, time.perf_counter() - t)
    overflow = sorted({str(w.message).split(":")[0] for w in caught
                       if issubclass(w.category, LavaConvOverflowWarning)})
    return out, best, overflow


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def bench_device(path, x, steps, device, check_batch, repeats=3) -> dict:
    """GPU simulator: best of ``repeats`` from numpy inputs and from inputs already on
    the device (synchronised), and spikes against the CPU simulator on the first
    ``check_batch`` samples."""
    model = read_netx(path)
    simulate(model, x[:32], steps=5, device=device)  # warm-up: kernels compiled
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LavaConvOverflowWarning)
        best_np, out = float("inf"), None
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            out = simulate(model, x, steps=steps, device=device).spikes
            best_np = min(best_np, time.perf_counter() - t)
        xd = torch.from_numpy(x).to(device)
        best_dev = float("inf")
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            out_dev = simulate(model, xd, steps=steps, device=device).spikes
            best_dev = min(best_dev, time.perf_counter() - t)
        del xd
        k = min(check_batch, x.shape[0])
        t = time.perf_counter()
        ref = simulate(model, x[:k], steps=steps).spikes
        t_cpu = time.perf_counter() - t
    overflow = sorted({str(w.message).split(":")[0] for w in caught
                       if issubclass(w.category, LavaConvOverflowWarning)})
    return {"sim_seconds": best_np, "sim_sample_steps_per_s": x.shape[0] * steps / best_np,
            "sim_seconds_input_on_device": best_dev,
            "sim_sample_steps_per_s_input_on_device": x.shape[0] * steps / best_dev,
            "checked_samples": k, "spikes_identical_to_cpu_simulator":
                bool(np.array_equal(ref, out[:k])) and bool(np.array_equal(out, out_dev)),
            "cpu_simulator_seconds_checked_samples": t_cpu,
            "cpu_simulator_sample_steps_per_s_here": k * steps / t_cpu,
            "output_spikes": int(out.sum()), "lava_conv_overflow_layers": overflow}


def main_device(a, nets) -> None:
    rng = np.random.default_rng(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        gen = torch.Generator(a.device).manual_seed(0)
        for net in nets:
            density = 0.03 if "sparse" in net.name else 0.2
            path = write_netx(net, Path(tmp) / f"{abs(hash(net.name))}.net")
            shape = (a.batch,) + tuple(net.input_shape[::-1]) + (a.steps,)
            # drawn on the GPU: numpy takes minutes for billions of draws
            x = (torch.rand(shape, generator=gen, device=a.device) < density).to(torch.int8).cpu().numpy()
            runs.append((net.name, path, x, density))
        pilotnet = pilotnet_sdnn(rng)
        if pilotnet is not None:
            runs.append(("PilotNet SDNN (lava-dl gts)",) + pilotnet + ("graded",))
        for name, path, x, density in runs:
            r = {"network": name, "input_density": density, "steps": a.steps, "batch": x.shape[0],
                 "device": a.device, **bench_device(path, x, a.steps, a.device, a.check_batch)}
            print(json.dumps(r), flush=True)
            results.append(r)
    machine = {**describe(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(a.device) if torch.cuda.is_available() else None,
               "cuda": torch.version.cuda, "note": a.note}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"wrote {a.out}")


def bench_lava(path, x, steps, lava_samples, ours):
    identical = True
    t = time.perf_counter()
    for j in range(lava_samples):
        lava = run_netx(path, x[j].astype(np.int32), steps=steps).spikes
        identical &= bool(np.array_equal(lava, ours[j]))
    return identical, time.perf_counter() - t


def lava_steady_rate(path, x, steps, t_full_per_sample):
    """Lava's marginal steps per second, building its processes excluded: one more
    run of steps // 5 steps, (steps - short) / (time of steps - time of short); None
    when the difference is too small to measure (short runs)."""
    short = steps // 5
    if short < 1:
        return None
    t = time.perf_counter()
    run_netx(path, x[0].astype(np.int32), steps=short)
    dt = t_full_per_sample - (time.perf_counter() - t)
    return (steps - short) / dt if dt > 0.05 * t_full_per_sample else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lava-samples", type=int, default=1,
                    help="samples run on Lava (its time includes building and compiling the network)")
    ap.add_argument("--out", default="benchmarks/results/sim_speed.json")
    ap.add_argument("--note", default="")
    ap.add_argument("--device", default="cpu", help="cpu (against Lava), or cuda (against the CPU simulator)")
    ap.add_argument("--check-batch", type=int, default=256,
                    help="with --device cuda: samples also run on the CPU simulator")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    nets = [dense_net([100, 50, 10], rng), dense_net([784, 512, 512, 10], rng), conv_net(rng),
            sparse_net(rng), recurrent_net(rng)]
    if a.device != "cpu":
        return main_device(a, nets)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # all simulator timings first: Lava's runtime leaves processes behind that
        # slow down whatever runs after it in the same process run
        runs = []
        for net in nets:
            density = 0.03 if "sparse" in net.name else 0.2
            path, x = prepare(net, a.steps, a.batch, rng, tmp, density=density)
            ours, t_sim, overflow = bench_sim(path, x, a.steps)
            runs.append((net.name, path, x, ours, t_sim, density, overflow))
        pilotnet = pilotnet_sdnn(rng)
        if pilotnet is not None:
            path, x = pilotnet
            ours, t_sim, overflow = bench_sim(path, x, a.steps)
            runs.append(("PilotNet SDNN (lava-dl gts)", path, x, ours, t_sim, "graded", overflow))
        from neurodeploy.lava_adapter import _import_lava
        _import_lava()  # import time (10-19 s) is not charged to Lava's run
        for name, path, x, ours, t_sim, density, overflow in runs:
            identical, t_lava = bench_lava(path, x, a.steps, a.lava_samples, ours)
            sim_rate = x.shape[0] * a.steps / t_sim
            lava_rate = a.lava_samples * a.steps / t_lava
            steady = lava_steady_rate(path, x, a.steps, t_lava / a.lava_samples)
            r = {"network": name, "input_density": density, "steps": a.steps, "batch": x.shape[0],
                 "lava_samples": a.lava_samples, "sim_seconds": t_sim, "lava_seconds": t_lava,
                 "sim_sample_steps_per_s": sim_rate, "lava_sample_steps_per_s": lava_rate,
                 "speedup": sim_rate / lava_rate, "spikes_identical": identical,
                 "lava_steady_sample_steps_per_s": steady,
                 "speedup_vs_lava_steady": None if steady is None else sim_rate / steady,
                 "output_spikes": int(ours.sum()),
                 # layers where some sample's conv sums leave int32 (Lava would give -2**31)
                 "lava_conv_overflow_layers": overflow}
            print(json.dumps(r))
            results.append(r)
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
               "note": a.note}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
