"""Depth study (after Ledinauskas et al. 2020, arXiv 2006.04436): plain conv stacks
against residual stacks of the same layers, at several depths, each with and without
the paper's two tools (surrogate heights tuned to unit backward gain per layer, and
batch norm on the neurons' input currents), same data, epochs and seeds.

Each network: a 3x3 conv stem, ``(L - 2) / 2`` blocks of two 3x3 conv CUBA-LIF
layers in three stages (``width``, ``2 width`` and ``4 width`` channels, stride 2
into the second and third), the output layer: L spiking layers. ``plain`` is the
same network without shortcuts. All layers use current_decay 1.0 (which batch norm
needs to fold exactly) in both arms, so only tuning + batch norm differ.

Per run: float test accuracy after training; the backward gain of every tuning step
(a layer, or a residual block's whole gain for its second layer) on a training
batch at initialisation (after tuning when tuned) and after training; the spikes
per inference of the quantised network in the bit-accurate simulator (all layers,
mean over test samples); and the Loihi 2 cores of its mapping. JSON (with the
machine) to benchmarks/results/, and a plot of accuracy and gain against depth
beside it (``--plot-only JSON`` redraws it).

    python benchmarks/depth_study.py [--depths 8 18 34 50] [--epochs 15] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def stages(depth: int, width: int):
    blocks = (depth - 2) // 2
    if depth < 4 or (depth - 2) % 2:
        raise ValueError(f"depth {depth}: needs L = 2 + 2 * blocks spiking layers")
    counts = [blocks // 3 + (1 if k < blocks % 3 else 0) for k in range(3)]
    return [dict(channels=width * 2 ** k, count=c, stride=1 if k == 0 else 2)
            for k, c in enumerate(counts) if c > 0]


def run_one(depth, residual, tools, seed, args, train_set, test_set):
    from neurodeploy.export.quantize_residual import quantize_residual_model
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.mapper import map_network
    from neurodeploy.layout import encoded_to_netx
    from neurodeploy.sim.samples import sample_stream, simulated_outputs, stream_steps
    from neurodeploy.sim.simulator import simulate
    from neurodeploy.train.depth import backward_gains, tune_surrogate_heights
    from neurodeploy.train.loop import evaluate, fit
    from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
    from neurodeploy.train.residual import ResidualNetwork

    torch.manual_seed(seed)
    np.random.seed(seed)
    neuron = CubaFloatParameters(current_decay=1.0, voltage_decay=0.1, threshold=1.0)
    model = ResidualNetwork((1, 8, 8), [dict(channels=args.width, kernel=3, padding=1)],
                            stages(depth, args.width), [], train_set.num_classes, neuron,
                            SurrogateParameters(scale=3.0), batch_norm=tools, shortcuts=residual)
    assert model.num_spiking_layers == depth
    x, _ = next(iter(train_set.batches(args.batch_size, shuffle=True, seed=seed)))
    heights = tune_surrogate_heights(model, x) if tools else None
    gains_init = backward_gains(model, x)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        history = fit(model, train_set, test_set, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      seed=seed, logit_scale=args.logit_scale, lr_schedule=args.lr_schedule,
                      checkpoint_dir=Path(tmp))
    train_s = time.perf_counter() - t0
    model.eval()
    acc = evaluate(model, test_set)
    gains_trained = backward_gains(model, x)
    net = quantize_residual_model(model, name=f"{'residual' if residual else 'plain'}{depth}")
    n = min(args.sim_samples, len(test_set))
    enc = test_set.encode(np.arange(n))
    samples = encoded_to_netx(enc.reshape(*enc.shape[:2], 1, 8, 8), net.input_shape)
    q = simulated_outputs(net, samples)
    q_acc = float((q.sum(-1).argmax(1) == np.asarray(test_set.labels)[:n]).mean())
    p = samples.shape[-1]
    layers = net.neuron_layers
    streams = np.stack([sample_stream(s[None]) for s in samples])
    rec = simulate(net, streams, steps=stream_steps(1, p, len(layers)), reset_interval=p, record=True).records
    spikes = [float(np.asarray(rec[f"s/{i}"]).reshape(n, -1, rec[f"s/{i}"].shape[-1])[..., p + l: 2 * p + l]
                    .sum() / n) for l, (i, _) in enumerate(layers)]
    cores = map_network(net, load_hardware_config("loihi2")).total_cores
    return {"depth": depth, "architecture": "residual" if residual else "plain",
            "tuning_and_batch_norm": tools, "seed": seed, "accuracy_float": acc, "accuracy_quantized": q_acc,
            "quantized_samples": n, "test_accuracy_per_epoch": history.test_accuracy,
            "surrogate_heights": heights, "backward_gain_init": gains_init,
            "backward_gain_trained": gains_trained, "spikes_per_inference": float(sum(spikes)),
            "spikes_per_layer": spikes, "loihi2_cores": int(cores), "train_seconds": train_s}


def plot(result: dict, path: Path) -> None:
    """Float test accuracy and the product of the backward gains at initialisation,
    against depth, one line per arm."""
    import math

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_gain) = plt.subplots(1, 2, figsize=(10, 4))
    for arch in ("plain", "residual"):
        for tools in (False, True):
            runs = sorted((r for r in result["runs"] if r["architecture"] == arch
                           and r["tuning_and_batch_norm"] == tools), key=lambda r: r["depth"])
            if not runs:
                continue
            label = f"{arch}, {'tuning + BN' if tools else 'neither'}"
            style = dict(marker="o", linestyle="-" if tools else "--", label=label)
            depths = [r["depth"] for r in runs]
            ax_acc.plot(depths, [r["accuracy_float"] for r in runs], **style)
            ax_gain.plot(depths, [max(math.prod(r["backward_gain_init"]), 1e-300) for r in runs], **style)
    ax_acc.axhline(0.1, color="grey", linewidth=0.8)
    ax_acc.set(xlabel="spiking layers", ylabel="float test accuracy", ylim=(0, 1))
    ax_gain.set(xlabel="spiking layers", ylabel="backward gain, output to input (init)", yscale="log")
    ax_acc.legend(fontsize=8)
    s = result["settings"]
    fig.suptitle(f"digits, {s['epochs']} epochs, {s['steps']} steps, lr {s['lr']}, "
                 f"{s['limit'] or 'all'} samples per split")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 18, 34, 50])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--limit", type=int, default=None, help="train/test samples per split (default: all)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="cosine")
    ap.add_argument("--logit-scale", type=float, default=0.6)
    ap.add_argument("--sim-samples", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "depth_study_digits.json"))
    ap.add_argument("--plot-only", type=Path, default=None, metavar="JSON",
                    help="draw the plot of a results file and exit")
    args = ap.parse_args()
    if args.plot_only is not None:
        plot(json.loads(args.plot_only.read_text()), args.plot_only.with_suffix(".png"))
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    from neurodeploy.data import DataSpec, load_dataset
    from neurodeploy.pipeline import machine_description

    train_set, test_set = load_dataset(DataSpec(name="digits", steps=args.steps, seed=0, limit=args.limit))
    out = Path(args.out)
    result = {"benchmark": "depth_study", "dataset": "digits (scikit-learn, 8x8, rate-coded)",
              "settings": vars(args), "machine": machine_description(),
              "where": "CPU of the machine above (no GPU)", "runs": []}
    for seed in args.seeds:
        for depth in args.depths:
            for residual in (False, True):
                for tools in (False, True):
                    r = run_one(depth, residual, tools, seed, args, train_set, test_set)
                    result["runs"].append(r)
                    print(f"L={depth:2d} {r['architecture']:8s} tools={tools!s:5s} acc {r['accuracy_float']:.3f} "
                          f"q {r['accuracy_quantized']:.3f} gain[0] {r['backward_gain_init'][0]:.3g} "
                          f"spikes {r['spikes_per_inference']:.0f} cores {r['loihi2_cores']} "
                          f"({r['train_seconds']:.0f} s)", flush=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
