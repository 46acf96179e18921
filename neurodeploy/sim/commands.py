"""`neurodeploy simulate` and `neurodeploy validate`, and the library function
:func:`validate` they call (the pipeline calls it too)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Optional

import click
import numpy as np
from tqdm.auto import tqdm

from neurodeploy.export.netx import read_netx
from neurodeploy.sim.samples import lava_outputs, simulated_outputs
from neurodeploy.sim.simulator import SimulationInputError, simulate


def classify(spikes: np.ndarray) -> np.ndarray:
    """(batch, *out_shape, T) output messages -> predicted class per sample: the
    output neuron with the most spikes (sum of messages), ties to the lowest index."""
    b = spikes.shape[0]
    return spikes.reshape(b, -1, spikes.shape[-1]).sum(-1).argmax(-1)


TIMELINES = ("samples", "raw")


def validate(model_path, inputs: np.ndarray, labels: np.ndarray, lava_samples: int = 4,
             steps: Optional[int] = None, batch_size: int = 256, metrics_path=None,
             timeline: str = "samples") -> dict:
    """Run the whole test set on the simulator and the first ``lava_samples``
    samples on Lava (``Loihi2SimCfg(fixed_pt)``) -> metrics dict with
    ``accuracy.sim`` and ``agreement.sim_vs_lava`` (fraction of the Lava samples
    whose output spikes are identical at every step), also ``accuracy.lava`` on
    those samples. inputs: (batch, *input_shape, T) netx order; labels: (batch,).

    timeline "samples" (default): every sample alone from a fresh state, its layers
    aligned by netx's reset offsets (:mod:`neurodeploy.sim.samples`), which is how the
    pipeline and ``deploy`` evaluate (and, for networks trained here, how training
    sees them); the Lava samples run as one stream. "raw": each sample's T steps (``steps``, the input repeating)
    fed into a fresh network and its output as a Lava sink records it, one step later
    per synapse. With ``metrics_path`` the result is merged into that JSON file."""
    if timeline not in TIMELINES:
        raise ValueError(f"timeline must be one of {TIMELINES}, got {timeline!r}")
    if timeline == "samples" and steps is not None:
        raise ValueError("steps applies to the raw timeline (the samples timeline runs each "
                         "sample's own T steps)")
    net = read_netx(model_path)
    inputs = np.asarray(inputs)  # a memory map stays one: batches are read as they run
    labels = np.asarray(labels).reshape(-1)
    if inputs.shape[0] != labels.shape[0]:
        raise ValueError(f"{inputs.shape[0]} input samples but {labels.shape[0]} labels")
    n_lava = min(int(lava_samples), len(labels))
    preds, sim_out = [], []
    starts = range(0, inputs.shape[0], batch_size)
    for s in tqdm(starts, desc=f"simulator, batches of {batch_size}", leave=False, disable=None):
        batch = np.asarray(inputs[s:s + batch_size])
        if timeline == "samples":
            _check_sample_shape(net, batch)
            out = simulated_outputs(net, batch)
        else:
            out = simulate(net, batch, steps=steps).spikes
        preds.append(classify(out))
        sim_out.extend(out[:max(0, n_lava - s)])
    preds = np.concatenate(preds)
    metrics = {"accuracy": {"sim": float((preds == labels).mean())},
               "agreement": {}, "samples": {"sim": int(len(labels))}, "timeline": timeline}
    if n_lava > 0:
        first = np.asarray(inputs[:n_lava])
        if timeline == "samples":
            lava = lava_outputs(model_path, net, first)
        else:
            from neurodeploy import lava_adapter
            from neurodeploy.export.quantize_src import is_src_network
            run = lava_adapter.run_src_netx if is_src_network(net) else lava_adapter.run_netx
            lava = [run(model_path, first[j], steps=steps).spikes
                    for j in tqdm(range(n_lava), desc="Lava samples", leave=False, disable=None)]
        same = sum(int(np.array_equal(a, b)) for a, b in zip(lava, sim_out))
        correct = sum(int(classify(a[None])[0] == y) for a, y in zip(lava, labels))
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


def _check_sample_shape(net, batch: np.ndarray) -> None:
    feed = tuple(net.input_shape)
    feed_netx = feed[::-1]
    if batch.ndim != len(feed) + 2 or tuple(batch.shape[1:-1]) != feed_netx:
        raise SimulationInputError(
            f"inputs must have shape (batch, {', '.join(map(str, feed_netx))}, T) in netx order; "
            f"got {batch.shape}")


def _load_array(path, option: str, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise click.ClickException(f"{option} {path}: not a readable .npy array ({e})") from None


@contextlib.contextmanager
def _clear_errors():
    """Bad files, shapes and parameters (ValueError and its kinds: netx format,
    bit widths, simulator input) and unsupported blocks: one line, no traceback."""
    try:
        yield
    except (ValueError, NotImplementedError) as e:
        raise click.ClickException(str(e)) from None


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
@click.option("--skip-layers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out the first blocks and feed the next one's synapse (netx's skip_layers; "
                   "e.g. a recording of the input layer's output).")
@click.option("--input-message-bits", type=click.IntRange(0, 32), default=None,
              help="Bits of the messages fed to the first synapse (netx's input_message_bits; "
                   "0: spikes). Default: 0, or the skipped blocks' output message bits.")
def simulate_command(model, input_path, output_path, record, steps, bias_path, reset_interval,
                     reset_offset, skip_layers, input_message_bits):
    """Run MODEL.net on the bit-accurate simulator (same spikes as Lava fixed_pt)."""
    with _clear_errors():
        net = read_netx(model, skip_layers=skip_layers)
        if input_message_bits is not None:
            net = dataclasses.replace(net, input_message_bits=input_message_bits)
        x = _load_array(input_path, "--input")
        bias = None if bias_path is None else _load_array(bias_path, "--bias")
        r = simulate(net, x, steps=steps, reset_interval=reset_interval, reset_offset=reset_offset,
                     record=record == "all", input_bias=bias, progress=True)
    np.savez_compressed(output_path, spikes=r.spikes, **r.records)
    click.echo(f"wrote {output_path}: spikes {r.spikes.shape}, {int(np.count_nonzero(r.spikes))} nonzero")


@click.command("validate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--lava-samples", type=click.IntRange(min=0), default=4, show_default=True,
              help="Samples also run on Lava to measure agreement (0: none).")
@click.option("--timeline", type=click.Choice(TIMELINES), default="samples", show_default=True,
              help="samples: each sample alone from a fresh state, layers aligned by netx's reset "
                   "offsets (as the pipeline and deploy evaluate, and as neurodeploy's training "
                   "sees it); raw: each sample's T steps into a fresh network, output as a Lava "
                   "sink records it.")
@click.option("--steps", type=int, default=None, help="With --timeline raw: steps per sample.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default="metrics.json",
              show_default=True)
def validate_command(model, input_path, labels_path, lava_samples, timeline, steps, metrics_path):
    """Accuracy of MODEL.net on the simulator and its agreement with Lava."""
    with _clear_errors():
        # memory-mapped: the simulator reads one batch of a large test set at a time
        m = validate(model, _load_array(input_path, "--input", mmap=True),
                     _load_array(labels_path, "--labels"), lava_samples=lava_samples,
                     steps=steps, metrics_path=metrics_path, timeline=timeline)
    click.echo(json.dumps(m, indent=2))
