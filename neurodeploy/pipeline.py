"""The whole path for one config: train -> quantise -> netx -> bit-accurate
simulation -> Lava, with metrics, plots and a summary.

``run_pipeline(config, out_dir)`` writes into ``out_dir``: ``run.json`` (run id, resolved
configuration, data fingerprint: :mod:`neurodeploy.rundir`), ``config.yaml`` (resolved),
``checkpoints/``, ``model.net``, ``model.nir``, ``metrics.json``, ``training.png``, ``raster.png``.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from neurodeploy.checks import (
    OutputDirError,  # noqa: F401 (re-exported)
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
)
from neurodeploy.config import RunConfig
from neurodeploy.export.netx import write_netx
from neurodeploy.export.quantize import quantize_model
from neurodeploy.layout import encoded_to_netx
from neurodeploy.network import Network
from neurodeploy.rundir import CHECKPOINT_DIR, check_data, data_fingerprint, open_run_dir
from neurodeploy.sim.samples import classify, lava_outputs
from neurodeploy.sim.samples import simulated_outputs as quantized_outputs
from neurodeploy.train.layers import SpikingNetwork
from neurodeploy.train.loop import evaluate, fit, latest_checkpoint
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters

logger = logging.getLogger(__name__)

DEPLOY_SAMPLES = 512  # encoded test samples written to test_data.npz
EVAL_BATCH = 256  # test samples encoded and simulated at a time


def prepare_output_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` and prove it is writable, before any work starts."""
    return check_output_dir(Path(out_dir), "--out")


def build_model(cfg: RunConfig, input_shape, num_classes: int) -> SpikingNetwork:
    n, s = cfg.model.neuron, cfg.model.surrogate
    if cfg.model.input_shape is not None:
        if int(np.prod(cfg.model.input_shape)) != int(np.prod(input_shape)):
            raise ValueError(f"model.input_shape {cfg.model.input_shape} does not hold the dataset's "
                             f"input shape {tuple(input_shape)}")
        input_shape = cfg.model.input_shape
    if cfg.model.cell == "src":
        from neurodeploy.train.src import SrcFloatParameters, SRCNetwork
        c = cfg.model.src.model_dump()
        output = c.pop("output")
        return SRCNetwork(input_shape, cfg.model.hidden, num_classes, SrcFloatParameters(**c), output=output)
    if cfg.model.blocks:
        from neurodeploy.train.residual import ResidualNetwork
        return ResidualNetwork(
            input_shape, [c.model_dump() for c in cfg.model.conv], [b.model_dump() for b in cfg.model.blocks],
            cfg.model.hidden, num_classes, CubaFloatParameters(n.current_decay, n.voltage_decay, n.threshold),
            SurrogateParameters(s.scale, s.height, s.band), batch_norm=cfg.model.batch_norm,
            shortcuts=cfg.model.shortcuts, dense_stem=cfg.model.dense_stem)
    return SpikingNetwork(
        input_shape, cfg.model.hidden, num_classes,
        CubaFloatParameters(n.current_decay, n.voltage_decay, n.threshold),
        SurrogateParameters(s.scale, s.height, s.band),
        backward=cfg.train.backward,
        conv=[c.model_dump() for c in cfg.model.conv], batch_norm=cfg.model.batch_norm,
        recurrent=cfg.model.recurrent,
    )


def data_spec(cfg: RunConfig):
    from neurodeploy.data import DataSpec
    d = cfg.data
    kwargs = dict(name=d.name, dir=d.dir, encoding=d.encoding, steps=d.steps,
                  test_fraction=d.test_fraction, seed=cfg.seed, limit=d.limit,
                  polarity=d.polarity, counts=d.counts, image_size=d.image_size)
    if d.window is not None:
        kwargs["window"] = d.window
    return DataSpec(**kwargs)


def quantize_any(model, name: str = "network") -> Network:
    """The integer network of a trained model: CUBA-LIF or SRC."""
    if getattr(model, "cell", "cuba") == "src":
        from neurodeploy.export.quantize_src import quantize_src_model
        return quantize_src_model(model, name=name)
    if hasattr(model, "blocks"):
        from neurodeploy.export.quantize_residual import quantize_residual_model
        return quantize_residual_model(model, name=name)
    return quantize_model(model, name=name)


def netx_samples(encoded: np.ndarray, network: Network) -> np.ndarray:
    """Encoded samples (n, steps, ...) -> samples in the Lava input port's order,
    time last (n, *netx input shape, steps) (:func:`neurodeploy.layout.encoded_to_netx`)."""
    return encoded_to_netx(encoded, network.input_shape)


def training_forward_outputs(model, dataset, n: int, network: Optional[Network] = None) -> np.ndarray:
    """Output spikes (n, classes, steps) of the model's own training-mode forward (an
    SRC readout's currents in the integer units of ``network``)."""
    with torch.no_grad():
        x = torch.from_numpy(dataset.encode(np.arange(n)))
        out = model(x)[-1].permute(0, 2, 1).numpy()
    if getattr(model, "cell", "cuba") == "src":
        from neurodeploy.fixedpoint_src import units
        return np.round(out * units(network.metadata["weight_exponents"][-1])).astype(np.int64)
    return out.astype(np.uint8)


def first_mismatch(a: np.ndarray, b: np.ndarray) -> Optional[dict]:
    """First (sample, neuron, step) where two (n, neurons, steps) spike arrays differ."""
    diff = np.argwhere(a.reshape(a.shape[0], -1, a.shape[-1]) != b.reshape(b.shape[0], -1, b.shape[-1]))
    if len(diff) == 0:
        return None
    k, j, t = (int(v) for v in diff[np.lexsort((diff[:, 1], diff[:, 2], diff[:, 0]))][0])
    return {"sample": k, "neuron": j, "step": t,
            "quantized": int(a.reshape(a.shape[0], -1, a.shape[-1])[k, j, t]),
            "lava": int(b.reshape(b.shape[0], -1, b.shape[-1])[k, j, t])}


def machine_description() -> dict:
    from neurodeploy.machine import cpu_model
    return {"platform": platform.platform(), "processor": cpu_model(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


@dataclass
class PipelineResult:
    metrics: dict
    out_dir: Path


def _write_model_nir(network, path) -> None:
    """The network as a NIR graph next to model.net (time constants in steps, dt = 1);
    a network NIR cannot express is reported, not fatal."""
    from neurodeploy.errors import InputError
    from neurodeploy.export.nir import write_nir

    try:
        write_nir(network, path, dt=1.0)
    except InputError as e:
        logger.warning(f"model.nir not written: {e}")


def run_pipeline(cfg: RunConfig, out_dir, resume: bool = False, force: bool = False) -> PipelineResult:
    """Run ``cfg`` into ``out_dir``. A non-empty ``out_dir`` needs ``resume`` (same
    configuration and data, checkpoints of the same run) or ``force`` (cleared
    first); see :mod:`neurodeploy.rundir`. Under torchrun / srun every rank trains
    (:mod:`neurodeploy.train.distributed`) and rank 0 alone writes files.

    Progress lines go to the ``neurodeploy`` logger (INFO; what could not be done,
    such as a skipped Lava run, at WARNING): ``logging.basicConfig(level=logging.INFO)``
    shows them, ``logging.getLogger("neurodeploy").setLevel(logging.WARNING)`` silences them."""
    from neurodeploy.train import distributed

    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.train.device == "auto" else cfg.train.device
    ctx, device, joined = distributed.setup(device)  # a no-op outside torchrun / srun
    try:
        with _logs_on_main_rank_only(ctx.is_main):
            return _run_pipeline(cfg, out_dir, resume, force, device, ctx)
    finally:
        distributed.teardown(joined)


@contextlib.contextmanager
def _logs_on_main_rank_only(is_main: bool) -> Iterator[None]:
    """Log lines from rank 0 alone (other ranks: errors only), as files are written by rank 0 alone."""
    if is_main:
        yield
        return
    package = logging.getLogger("neurodeploy")
    level = package.level
    package.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package.setLevel(level)


def _run_pipeline(cfg: RunConfig, out_dir, resume: bool, force: bool, device: str,
                  ctx) -> PipelineResult:
    from neurodeploy.train import distributed

    out_dir = Path(out_dir)
    timings = {}
    record, train_set, test_set = _open_run(cfg, out_dir, resume, force, ctx, timings)

    model = build_model(cfg, train_set.input_shape, train_set.num_classes)
    if cfg.model.surrogate.tune_height:  # on the fresh model, so a resumed run gets the same heights
        _tune_surrogate_heights(cfg, model, train_set)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    last_float = latest_checkpoint(ckpt_dir, "float") if resume else None
    float_done = int(last_float.stem.rsplit("_", 1)[-1]) if last_float is not None else 0
    t0 = time.perf_counter()
    history = fit(model, train_set, test_set, epochs=cfg.train.epochs, lr=cfg.train.lr,
                  batch_size=cfg.train.batch_size, seed=cfg.seed, logit_scale=cfg.train.logit_scale,
                  lr_schedule=cfg.train.lr_schedule, checkpoint_dir=ckpt_dir, resume=resume, device=device,
                  run_id=record.run_id)
    timings["train"] = time.perf_counter() - t0
    model.cpu()
    distributed.broadcast_model(model, ctx)  # bit-identical weights on every rank
    float_acc = evaluate(model, test_set)
    labels = np.asarray(test_set.labels)
    test_samples, test_outputs = _bit_exact_evaluation(test_set, model.input_shape, device, ctx)

    # post-training quantisation of the float model, evaluated bit-exactly
    t0 = time.perf_counter()
    ptq_acc = float((classify(test_outputs(quantize_any(model))) == labels).mean())
    timings["quantized_eval"] = time.perf_counter() - t0

    cotrained_acc = None
    if cfg.train.hardware_aware_epochs > 0:
        # fine-tuning checkpoints are only valid on top of the same float model
        hw_resume = resume and float_done >= cfg.train.epochs
        history, cotrained_acc = _hardware_aware_fine_tuning(
            cfg, model, train_set, test_set, ckpt_dir, hw_resume, history, record.run_id, ctx, timings)

    t0 = time.perf_counter()
    network = quantize_any(model, name=cfg.name)
    net_path = None
    if ctx.is_main:
        net_path = write_netx(network, out_dir / "model.net")
        _write_model_nir(network, out_dir / "model.nir")
    timings["export"] = time.perf_counter() - t0
    q_out = test_outputs(network)
    if not ctx.is_main:  # rank 0 alone writes the artifacts and runs Lava
        return PipelineResult({}, out_dir)
    q_acc = float((classify(q_out) == labels).mean())
    # encoded test samples in the Lava port's order, for `neurodeploy deploy/bundle --data`
    keep = np.arange(min(len(test_set), DEPLOY_SAMPLES))
    first_samples = test_samples(network, keep)
    atomic_write_bytes(out_dir / "test_data.npz", npz_bytes(inputs=first_samples.astype(np.int16),
                                                            labels=labels[keep]))

    metrics = {
        "name": cfg.name,
        # quantized = sim: the bit-accurate simulator over the whole test set
        "accuracy": {"float": float_acc, "quantized": q_acc, "sim": q_acc,
                     "post_training_quantized": ptq_acc, "cotrained": cotrained_acc, "lava": None},
        "agreement": {"lava_vs_quantized": None, "samples": 0, "first_mismatch": None},
        "timings_s": timings, "network": _network_entry(network), "machine": machine_description(),
        "distributed": ctx.as_dict(), "history": history.as_dict(),
    }

    if cfg.hardware.config is not None:
        metrics["hardware"] = _hardware_entry(cfg, network, first_samples)

    if cfg.lava.enabled:
        n = len(test_set) if cfg.lava.samples is None else min(cfg.lava.samples, len(test_set))
        _check_on_lava(net_path, network, lambda: test_samples(network, np.arange(n)), q_out[:n],
                       labels[:n], metrics, out_dir,
                       (lambda: training_forward_outputs(model, test_set, n, network))
                       if cotrained_acc is not None else None)

    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    _write_plots(history, network, first_samples[0], int(labels[0]), out_dir)
    logger.info(summary(metrics, out_dir))
    return PipelineResult(metrics, out_dir)


def _open_run(cfg: RunConfig, out_dir: Path, resume: bool, force: bool, ctx, timings: dict):
    """The run directory's record (rank 0 opens it, the other ranks read the run id it
    recorded), the seeds, and the data set checked against the record -> (record,
    train set, test set)."""
    from neurodeploy.data import load_dataset
    from neurodeploy.rundir import read_record
    from neurodeploy.train import distributed

    record = (open_run_dir(out_dir, cfg.resolved(), resume=resume, force=force)
              if ctx.is_main else None)
    distributed.barrier(ctx)
    if record is None:  # the other ranks take the run id rank 0 recorded
        record = read_record(out_dir)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    t0 = time.perf_counter()
    train_set, test_set = load_dataset(data_spec(cfg))
    timings["data"] = time.perf_counter() - t0
    if ctx.is_main:
        record = check_data(out_dir, record, data_fingerprint(train_set, test_set))
    logger.info(f"data: {cfg.data.name}, {len(train_set)} train / {len(test_set)} test samples, "
        f"input {tuple(train_set.input_shape)}, {cfg.data.steps} steps")
    return record, train_set, test_set


def _bit_exact_evaluation(test_set, input_shape, device: str, ctx):
    """(test_samples(network, indices): the test samples encoded on demand in the Lava
    port's order (a whole test set may not fit in memory); test_outputs(network): the
    bit-accurate simulator's outputs over the test set, each rank simulating its slice,
    where training ran (identical results on a GPU))."""
    from neurodeploy.sim.cuda import usable
    from neurodeploy.train import distributed

    def test_samples(network, indices):
        enc = test_set.encode(indices)
        return netx_samples(enc.reshape(*enc.shape[:2], *input_shape), network)

    sim_device = str(device) if str(device).startswith("cuda") and usable(str(device)) else "cpu"
    if sim_device != str(device):
        logger.warning(f"simulator on the CPU: {device} cannot run it (no Triton)")

    def test_outputs(network):
        def outputs(indices):
            return np.concatenate([quantized_outputs(network, test_samples(network, idx), device=sim_device)
                                   for idx in np.array_split(indices, max(1, -(-len(indices) // EVAL_BATCH)))])
        return distributed.sharded_map(outputs, np.arange(len(test_set)), ctx)

    return test_samples, test_outputs


def _network_entry(network: Network) -> dict:
    """metrics.json's ``network``: neurons per layer, input shape, weight exponents."""
    return {"layers": [b.num_neurons for _, b in network.neuron_layers],
            "input": list(network.input_shape),
            "weight_exponents": network.metadata.get("weight_exponents")}


def _tune_surrogate_heights(cfg: RunConfig, model, train_set) -> None:
    """Each layer's surrogate height from one training batch (train.depth)."""
    from neurodeploy.train.depth import tune_surrogate_heights
    x, _ = next(iter(train_set.batches(cfg.train.batch_size, shuffle=True, seed=cfg.seed)))
    heights = tune_surrogate_heights(model, x)
    logger.info("surrogate heights tuned per layer: " + ", ".join(f"{h:.3g}" for h in heights))


def _hardware_aware_fine_tuning(cfg: RunConfig, model, train_set, test_set, ckpt_dir: Path,
                                hw_resume: bool, history, run_id: str, ctx, timings: dict):
    """Fine-tune the float model through the chip's integer arithmetic (on the CPU) ->
    (the history continued, the accuracy of the chip-exact training forward)."""
    from neurodeploy.train import distributed
    from neurodeploy.train.hardware import set_hardware_aware, sync_learned_neurons
    if cfg.model.cell == "src":
        from neurodeploy.train.src_hardware import set_src_hardware_aware
        set_src_hardware_aware(model, True)
    elif cfg.model.blocks:
        from neurodeploy.train.residual_hardware import set_residual_hardware_aware
        set_residual_hardware_aware(model, True, learn=cfg.train.hardware_aware_learn)
    else:
        set_hardware_aware(model, True, learn=cfg.train.hardware_aware_learn)
    if not hw_resume and ctx.is_main:
        for stale in ckpt_dir.glob("hardware_epoch_*.pt"):
            stale.unlink()
    t0 = time.perf_counter()
    history = fit(model, train_set, test_set, epochs=cfg.train.hardware_aware_epochs,
                  lr=cfg.train.hardware_aware_lr, batch_size=cfg.train.batch_size,
                  seed=cfg.seed + 10_000, logit_scale=cfg.train.logit_scale,
                  lr_schedule=cfg.train.lr_schedule, checkpoint_dir=ckpt_dir, resume=hw_resume, device="cpu",
                  phase="hardware", history=history, run_id=run_id)
    timings["hardware_aware_train"] = time.perf_counter() - t0
    distributed.broadcast_model(model, ctx)
    cotrained_acc = evaluate(model, test_set)  # the chip-exact training forward
    if cfg.model.cell != "src":
        sync_learned_neurons(model)  # learned threshold/decays (if any) into what the exporter reads
    return history, cotrained_acc


def _hardware_entry(cfg: RunConfig, network: Network, first_samples: np.ndarray) -> dict:
    """metrics.json's ``hardware``: the mapping and activity estimate, or why it does not fit."""
    from neurodeploy.hardware.activity import hardware_metrics
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.mapper import MappingError
    try:
        hw = load_hardware_config(cfg.hardware.config)
        return hardware_metrics(network, hw, first_samples[:cfg.hardware.activity_samples])
    except MappingError as e:
        logger.warning(f"hardware: does not fit {cfg.hardware.config}: {e}")
        return {"fits": False, "error": str(e)}


def _check_on_lava(net_path: Path, network: Network, samples_of, q_out: np.ndarray,
                   labels: np.ndarray, metrics: dict, out_dir: Path, training_outputs) -> None:
    """Run the samples ``samples_of()`` encodes through Lava and record its accuracy and its agreement with the
    simulator's outputs ``q_out`` (and, given ``training_outputs``, with the chip-exact
    training forward) in ``metrics``; Lava's outputs into lava_output.npz."""
    from neurodeploy.lava_adapter import lava_available
    if not lava_available():
        logger.warning("lava: not importable on this interpreter (needs CPython 3.10); skipped")
        metrics["lava_skipped"] = "lava-nc / lava-dl not importable"
        return
    n = len(q_out)
    logger.info(f"lava: running {n} test samples on Loihi2SimCfg(fixed_pt) ...")
    t0 = time.perf_counter()
    l_out = lava_outputs(net_path, network, samples_of())
    metrics["timings_s"]["lava"] = time.perf_counter() - t0
    same = np.array([np.array_equal(a, b) for a, b in zip(q_out, l_out)])
    metrics["accuracy"]["lava"] = float((classify(l_out) == labels).mean())
    metrics["accuracy"]["quantized_on_lava_samples"] = float((classify(q_out) == labels).mean())
    metrics["agreement"] = {"lava_vs_quantized": float(same.mean()), "sim_vs_lava": float(same.mean()),
                            "samples": int(n),
                            "first_mismatch": first_mismatch(q_out, l_out),
                            # messages sent by the output layer: spikes, or graded
                            # values of a readout (whose sum would mean nothing)
                            "output_spikes": int(np.count_nonzero(l_out))}
    if training_outputs is not None:
        train_out = training_outputs()
        metrics["agreement"]["lava_vs_training_forward"] = float(np.mean(
            [np.array_equal(a, b) for a, b in zip(train_out, l_out)]))
    binary = l_out.size == 0 or (l_out.min() >= 0 and l_out.max() <= 1)
    # graded outputs (an SRC readout) as int32
    atomic_write_bytes(out_dir / "lava_output.npz",
                       npz_bytes(spikes=l_out.astype(np.uint8 if binary else np.int32)))


def _write_plots(history, network: Network, sample: np.ndarray, label: int, out_dir: Path) -> None:
    """training.png and raster.png; a failure is logged, never loses a finished run."""
    try:
        from neurodeploy import plots
        plots.training_curve(history, out_dir / "training.png")
        plots.raster(network, sample, label, out_dir / "raster.png")
    except Exception as e:  # plots must never lose a finished run
        logger.warning(f"plots: failed ({e})")


def npz_bytes(**arrays) -> bytes:
    """A compressed .npz archive in memory (written atomically by the caller)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def summary(m: dict, out_dir: Path) -> str:
    acc, ag, t = m["accuracy"], m["agreement"], m["timings_s"]
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [
        "",
        f"== neurodeploy pipeline: {m['name']} " + "=" * max(0, 40 - len(m["name"])),
        f" network      {m['network']['input']} -> {m['network']['layers']}",
        f" accuracy     float {fmt(acc['float'])}   quantized {fmt(acc['quantized'])}   lava {fmt(acc['lava'])}",
    ]
    if acc.get("cotrained") is not None:
        lines.append(f"              post-training quantized {fmt(acc['post_training_quantized'])}   "
                     f"hardware-aware fine-tuned {fmt(acc['cotrained'])}")
    if ag["samples"]:
        status = "spike-exact" if ag["lava_vs_quantized"] == 1.0 else "MISMATCH"
        lines.append(f" agreement    lava vs quantized {ag['lava_vs_quantized']:.3f} over {ag['samples']} samples "
                     f"({status})")
        if ag.get("first_mismatch"):
            fm = ag["first_mismatch"]
            lines.append(f"              first difference: sample {fm['sample']}, neuron {fm['neuron']}, "
                         f"step {fm['step']} (quantized {fm['quantized']}, lava {fm['lava']})")
    hw = m.get("hardware")
    if hw:
        if hw.get("fits"):
            act = hw.get("activity") or {}
            energy = act.get("energy_pj")
            lines.append(f" hardware     {hw['hardware']}: {hw['total_cores']} cores on {hw['chips_used']} chip(s), "
                         f"{act.get('synaptic_ops', 0):.0f} synaptic ops/inference"
                         + (f", ~{energy / 1000:.1f} nJ/inference (estimate)" if energy is not None
                            else ", energy: no published per-op figures for this target"))
        else:
            lines.append(f" hardware     DOES NOT FIT: {hw['error']}")
    lines.append(" timings      " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
    lines.append(f" written to   {out_dir}/ (model.net, model.nir, metrics.json, training.png, raster.png)")
    return "\n".join(lines)
