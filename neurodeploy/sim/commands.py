"""`neurodeploy simulate` and `neurodeploy validate`, and the library function
:func:`validate` they call (the pipeline calls it too)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import click
import numpy as np
from tqdm.auto import tqdm

from neurodeploy import checks
from neurodeploy.errors import InputError
from neurodeploy.layout import check_samples
from neurodeploy.sim.samples import classify, lava_outputs, simulated_outputs

# the simulator (torch) is imported inside the functions that run it, so that
# `neurodeploy --help` and reading a file do not import torch


TIMELINES = ("samples", "raw")


def validate(model_path, inputs: np.ndarray, labels: np.ndarray, lava_samples: int = 4,
             steps: Optional[int] = None, batch_size: int = 256, metrics_path=None,
             timeline: str = "samples", inputs_name: str = "inputs", labels_name: str = "labels",
             device: str = "cpu") -> dict:
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
    per synapse. With ``metrics_path`` the result is merged into that JSON file. Inputs
    and labels are checked first (:mod:`neurodeploy.checks`: integers, shape, count, labels
    in the output's classes); errors name ``inputs_name`` / ``labels_name``. ``device``:
    where the simulator runs (``cpu``, ``cuda``; the same results)."""
    from neurodeploy.sim.simulator import simulate

    if timeline not in TIMELINES:
        raise InputError(f"--timeline: expected one of {TIMELINES}, got {timeline!r}")
    if timeline == "samples" and steps is not None:
        raise InputError("--steps applies to the raw timeline (the samples timeline runs each "
                         "sample's own T steps)")
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps}: expected >= 1")
    if device != "cpu":
        from neurodeploy.sim.cuda import device_for
        device_for(device)
    net = checks.load_network(model_path)
    # a memory map stays one: batches are read as they run
    inputs = checks.check_inputs(inputs, net.input_shape, inputs_name, order="netx")
    labels = checks.check_labels(labels, inputs.shape[0], checks.num_classes(net), labels_name)
    if metrics_path is not None:
        checks.check_output_file(metrics_path, "--metrics")
    n_lava = min(int(lava_samples), len(labels))
    preds, sim_out = [], []
    starts = range(0, inputs.shape[0], batch_size)
    for s in tqdm(starts, desc=f"simulator, batches of {batch_size}", leave=False, disable=None):
        batch = np.asarray(inputs[s:s + batch_size])
        if timeline == "samples":
            check_samples(batch, net, "inputs", allow_single=False)
            out = simulated_outputs(net, batch, device=device)
        else:
            out = simulate(net, batch, steps=steps, device=device).spikes
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
            run = (lava_adapter.run_src_netx if is_src_network(net) else
                   lava_adapter.run_residual_netx if net.shortcuts else lava_adapter.run_netx)
            lava = [run(model_path, first[j], steps=steps).spikes
                    for j in tqdm(range(n_lava), desc="Lava samples", leave=False, disable=None)]
        same = sum(int(np.array_equal(a, b)) for a, b in zip(lava, sim_out))
        correct = sum(int(classify(a[None])[0] == y) for a, y in zip(lava, labels))
        metrics["agreement"]["sim_vs_lava"] = same / n_lava
        metrics["accuracy"]["lava"] = correct / n_lava
        metrics["samples"]["lava"] = n_lava
    if metrics_path is not None:
        _merge_metrics(Path(metrics_path), metrics)
    return metrics


def _merge_metrics(path: Path, metrics: dict) -> None:
    """Merge ``metrics`` into the JSON object at ``path`` (created if missing)."""
    old = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"--metrics {path}: exists and is not readable JSON ({e}); expected a "
                             "metrics file to merge into, or a new path") from None
        if not isinstance(old, dict):
            raise InputError(f"--metrics {path}: holds a JSON {type(old).__name__}; expected an object")
    for k, v in metrics.items():
        old.setdefault(k, {}).update(v) if isinstance(v, dict) else old.__setitem__(k, v)
    checks.atomic_write_text(path, json.dumps(old, indent=2))


def _npz_bytes(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@click.command("simulate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "input_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="NPY array (batch, *input_shape, T) or (*input_shape, T), netx order. "
                   "Optional with --bias (the image enters through the bias; then give --steps).")
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
@click.option("--device", default="cpu", show_default=True,
              help="cpu, or cuda / cuda:N: the same simulation on a GPU (identical results).")
def simulate_command(model, input_path, output_path, record, steps, bias_path, reset_interval,
                     reset_offset, skip_layers, input_message_bits, device):
    """Run MODEL.net on the bit-accurate simulator (same spikes as Lava fixed_pt)."""
    from neurodeploy.sim.simulator import SimulationInputError, simulate

    if input_path is None and bias_path is None:
        raise click.UsageError("give --input IN.npy, or --bias IMG.npy (with --steps) for a network "
                               "driven through its input layer's bias")
    if input_path is None and steps is None:
        raise click.UsageError("--bias without --input needs --steps (the number of time steps to run)")
    checks.check_output_file(output_path, "--output")
    if device != "cpu":
        from neurodeploy.sim.cuda import device_for
        device_for(device)
    net = checks.load_network(model, skip_layers=skip_layers)
    if input_message_bits is not None:
        net = dataclasses.replace(net, input_message_bits=input_message_bits)
    bias = None if bias_path is None else checks.load_array(bias_path, "--bias")
    if input_path is not None:
        x = checks.load_array(input_path, "--input")
        checks.check_values(x, f"--input {input_path}")
    else:  # no input stream: the bias is the only drive (zeros into the input layer)
        x = np.zeros(tuple(net.input_shape_netx) + (1,), dtype=np.int8)
    try:
        r = simulate(net, x, steps=steps, reset_interval=reset_interval, reset_offset=reset_offset,
                     record=record == "all", input_bias=bias, progress=True, device=device)
    except ValueError as e:  # the simulator's checks of the inputs against this network
        if isinstance(e, InputError):
            raise
        raise SimulationInputError(f"{model}: {e}") from None
    checks.atomic_write_bytes(output_path, _npz_bytes(spikes=r.spikes, **r.records))
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
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False), default=None,
              help="Also merge the result into this JSON file (default: print it only).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, or cuda / cuda:N: the simulator on a GPU (identical results).")
def validate_command(model, input_path, labels_path, lava_samples, timeline, steps, metrics_path, device):
    """Accuracy of MODEL.net on the simulator and its agreement with Lava.

    The result is printed as JSON; with --metrics FILE it is also merged into FILE."""
    if metrics_path is not None:
        checks.check_output_file(metrics_path, "--metrics")
    # memory-mapped: the simulator reads one batch of a large test set at a time
    x = checks.load_array(input_path, "--input", mmap=True)
    y = checks.load_array(labels_path, "--labels")
    m = validate(model, x, y, lava_samples=lava_samples, steps=steps, metrics_path=metrics_path,
                 timeline=timeline, inputs_name=f"--input {input_path}", labels_name=f"--labels {labels_path}",
                 device=device)
    click.echo(json.dumps(m, indent=2))
