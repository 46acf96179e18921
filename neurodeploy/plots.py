"""Plots a run writes (matplotlib, Agg backend): training curve and spike raster."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from neurodeploy.sim.samples import output_windows, sample_stream, stream_steps  # noqa: E402
from neurodeploy.sim.simulator import simulate  # noqa: E402


def training_curve(history, path: Path) -> None:
    h = history.as_dict() if hasattr(history, "as_dict") else history
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = h["epoch"]
    a1.plot(epochs, h["loss"], marker="o")
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a1.grid(alpha=0.3)
    a2.plot(epochs, h["train_accuracy"], marker="o", label="train")
    a2.plot(epochs, h["test_accuracy"], marker="s", label="test (float)")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.legend()
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def raster(network, sample: np.ndarray, label: int, path: Path) -> None:
    """Spike raster of one sample (features, P) through every layer, from the
    bit-accurate simulator (what Lava and the chip produce)."""
    p = sample.shape[-1]
    layers = network.neuron_layers
    res = simulate(network, sample_stream(sample[None]), steps=stream_steps(1, p, len(layers)),
                   reset_interval=p, record=True)
    rows = [("input", sample)]
    for k, (i, block) in enumerate(layers):
        s = output_windows(res.records[f"s/{i}"], 1, p, k + 1)[0]
        rows.append((f"layer {i} ({block.num_neurons})", s))
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 1.6 + 1.4 * len(rows)), sharex=True)
    for ax, (name, s) in zip(np.atleast_1d(axes), rows):
        n, t = np.nonzero(s.reshape(-1, p))
        ax.scatter(t, n, s=3, marker="|", color="k")
        ax.set_ylabel(name, fontsize=8)
        ax.set_ylim(-1, s.reshape(-1, p).shape[0])
    np.atleast_1d(axes)[-1].set_xlabel("time step")
    fig.suptitle(f"spike raster, test sample 0 (label {label})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
