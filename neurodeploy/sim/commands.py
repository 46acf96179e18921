"""`neurodeploy simulate` and `neurodeploy validate`, and the library function
:func:`validate` they call (the pipeline calls it too)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click
import numpy as np

from neurodeploy.export.netx import read_netx
from neurodeploy.sim.simulator import simulate


def classify(spikes: np.ndarray) -> np.ndarray:
    """(batch, *out_shape, T) output messages -> predicted class per sample: the
    output neuron with the most spikes (sum of messages), ties to the lowest index."""
    b = spikes.shape[0]
    return spikes.reshape(b, -1, spikes.shape[-1]).sum(-1).argmax(-1)


def validate(model_path, inputs: np.ndarray, labels: np.ndarray, lava_samples: int = 4,
             steps: Optional[int] = None, batch_size: int = 256, metrics_path=None) -> dict:
    """Run the whole test set on the simulator and the first ``lava_samples``
    samples on Lava (``Loihi2SimCfg(fixed_pt)``) -> metrics dict with
    ``accuracy.sim`` and ``agreement.sim_vs_lava`` (fraction of the Lava samples
    whose output spikes are identical at every step), also ``accuracy.lava`` on
    those samples. inputs: (batch, *input_shape, T) netx order; labels: (batch,).
    With ``metrics_path`` the result is merged into that JSON file."""
    net = read_netx(model_path)
    inputs = np.asarray(inputs)
    labels = np.asarray(labels).reshape(-1)
    if inputs.shape[0] != labels.shape[0]:
        raise ValueError(f"{inputs.shape[0]} input samples but {labels.shape[0]} labels")
    preds, sim_out = [], {}
    for s in range(0, inputs.shape[0], batch_size):
        out = simulate(net, inputs[s:s + batch_size], steps=steps).spikes
        preds.append(classify(out))
        for j in range(s, min(s + batch_size, lava_samples)):
            sim_out[j] = out[j - s]
    preds = np.concatenate(preds)
    metrics = {"accuracy": {"sim": float((preds == labels).mean())},
               "agreement": {}, "samples": {"sim": int(len(labels))}}
    n_lava = min(int(lava_samples), len(labels))
    if n_lava > 0:
        from neurodeploy import lava_adapter
        same, correct = 0, 0
        for j in range(n_lava):
            lava = lava_adapter.run_netx(model_path, inputs[j], steps=steps).spikes
            same += int(np.array_equal(lava, sim_out[j]))
            correct += int(classify(lava[None])[0] == labels[j])
        metrics["agreement"]["sim_vs_lava"] = same / n_lava
        metrics["accuracy"]["lava"] = correct / n_lava
        metrics["samples"]["lava"] = n_lava
    if metrics_path is not None:
        p = Path(metrics_path)
        old = json.loads(p.read_text()) if p.exists() else {}
        for k, v in metrics.items():
            old.setdefault(k, {}).update(v) if isinstance(v, dict) else old.__setitem__(k, v)
        p.write_text(json.dumps(old, indent=2))
    return metrics


@click.command("simulate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="NPY array (batch, *input_shape, T) or (*input_shape, T), netx order.")
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="NPZ file to write: spikes and, with --record all, u/<i>, v/<i>, s/<i>.")
@click.option("--record", type=click.Choice(["none", "all"]), default="none", show_default=True)
@click.option("--steps", type=int, default=None, help="Time steps (default: T; input repeats).")
@click.option("--bias", "bias_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="NPY bias mantissa of the input layer's neurons (static image input).")
@click.option("--reset-interval", type=int, default=None, help="Reset state every N steps (netx).")
@click.option("--reset-offset", type=int, default=0, show_default=True)
def simulate_command(model, input_path, output_path, record, steps, bias_path, reset_interval,
                     reset_offset):
    """Run MODEL.net on the bit-accurate simulator (same spikes as Lava fixed_pt)."""
    net = read_netx(model)
    x = np.load(input_path)
    bias = None if bias_path is None else np.load(bias_path)
    r = simulate(net, x, steps=steps, reset_interval=reset_interval, reset_offset=reset_offset,
                 record=record == "all", input_bias=bias)
    np.savez_compressed(output_path, spikes=r.spikes, **r.records)
    click.echo(f"wrote {output_path}: spikes {r.spikes.shape}, {int(np.count_nonzero(r.spikes))} nonzero")


@click.command("validate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--lava-samples", type=int, default=4, show_default=True,
              help="Samples also run on Lava to measure agreement (0: none).")
@click.option("--steps", type=int, default=None)
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default="metrics.json",
              show_default=True)
def validate_command(model, input_path, labels_path, lava_samples, steps, metrics_path):
    """Accuracy of MODEL.net on the simulator and its agreement with Lava."""
    m = validate(model, np.load(input_path), np.load(labels_path), lava_samples=lava_samples,
                 steps=steps, metrics_path=metrics_path)
    click.echo(json.dumps(m, indent=2))
