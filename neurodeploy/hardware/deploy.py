"""Deploy a netx network to Loihi 2, or say clearly why not.

A chip run needs two things: Intel's lava-loihi extension (only INRC members have
it) and a reachable Loihi 2 system, either a SLURM partition/board (INRC cloud:
``sinfo`` answers) or an Ethernet host (Kapoho Point without SLURM). Options win
over the environment variables lava-loihi itself uses: ``PARTITION``, ``BOARD``,
``NXSDKHOST``, ``LOIHI_GEN``. Without a chip, ``fallback='sim'`` runs the
bit-accurate simulator instead. ``Loihi2HwCfg`` is only ever built inside
:func:`neurodeploy.lava_adapter.run_netx_on_loihi`, after the extension check.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Optional, Tuple

import numpy as np

from neurodeploy.errors import ChipUnreachableError, InputError
from neurodeploy.hardware.runner import DEFAULT_LOIHI_GEN

# bit-accurate outputs of independent samples, laid out on Lava's timeline as on the chip
from neurodeploy.sim.samples import classify, simulated_outputs

LOIHI_GENS = ("N2A2", "N3B2", "N3B3", "N3C1", "N3D1")  # lava.utils.loihi.ChipGeneration


class ChipUnavailableError(ChipUnreachableError):
    """No Loihi 2 system can be used here; the message says why."""


@dataclass(frozen=True)
class ChipTarget:
    """Where to run: kind 'slurm' (partition and/or board) or 'ethernet' (host)."""

    kind: str
    partition: Optional[str] = None
    board: Optional[str] = None
    host: Optional[str] = None
    loihi_gen: str = DEFAULT_LOIHI_GEN


@dataclass(frozen=True)
class Availability:
    """Result of :func:`detect_loihi`: ``reachable`` only when the extension is
    installed and a target was found; ``reasons`` say what is missing."""

    reachable: bool
    extension_installed: bool
    target: Optional[ChipTarget]
    reasons: Tuple[str, ...]

    @property
    def message(self) -> str:
        if self.reachable:
            t = self.target
            where = (f"SLURM partition={t.partition or 'any'} board={t.board or 'any'}" if t.kind == "slurm"
                     else f"Ethernet host {t.host}")
            return f"Loihi 2 reachable via {where} (loihi_gen {t.loihi_gen})"
        return "no Loihi 2 chip is reachable: " + "; ".join(self.reasons)


def detect_loihi(partition: Optional[str] = None, board: Optional[str] = None, host: Optional[str] = None,
                 loihi_gen: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 extension_status: Optional[Callable[[], Tuple[bool, str]]] = None,
                 slurm_available: Optional[Callable[[], bool]] = None) -> Availability:
    """Decide whether (and where) a Loihi 2 run is possible, without touching
    Loihi2HwCfg. ``env`` defaults to ``os.environ``; ``extension_status`` and
    ``slurm_available`` default to the probes in :mod:`neurodeploy.lava_adapter`
    (injectable for tests)."""
    from neurodeploy import lava_adapter

    env = os.environ if env is None else env
    extension_status = extension_status or lava_adapter.loihi_extension_status
    slurm_available = slurm_available or lava_adapter.slurm_controller_available
    partition = partition or env.get("PARTITION") or None
    board = board or env.get("BOARD") or None
    host = host or env.get("NXSDKHOST") or None
    gen = loihi_gen or env.get("LOIHI_GEN") or DEFAULT_LOIHI_GEN
    reasons = []
    if gen not in LOIHI_GENS:
        reasons.append(f"unknown Loihi generation {gen!r} (LOIHI_GEN / --loihi-gen; one of {LOIHI_GENS})")
    installed, why = extension_status()
    if not installed:
        reasons.append(why)
    target = None
    if host:
        target = ChipTarget("ethernet", host=host, loihi_gen=gen)
    elif slurm_available():
        target = ChipTarget("slurm", partition=partition, board=board, loihi_gen=gen)
    else:
        what = []
        if partition or board:
            what.append(f"a SLURM partition/board was given ({partition or board}) but no SLURM "
                        "controller answers `sinfo`")
        else:
            what.append("no SLURM controller (`sinfo` not found or failing) and no partition")
        what.append("no Ethernet host (--host or NXSDKHOST)")
        reasons.append(", ".join(what))
    return Availability(reachable=not reasons and target is not None, extension_installed=installed,
                        target=target, reasons=tuple(reasons))


@dataclass
class DeployResult:
    """What a deployment run reports. target: 'loihi2' or 'simulator' (the
    bit-accurate fallback). accuracy: fraction correct (None without labels);
    spike_agreement: fraction of output (sample, neuron, step) values equal to the
    simulator's on the same stream; sample_agreement: fraction of samples whose
    whole output equals the simulator's; prediction_agreement: fraction of samples with
    the same predicted class; time (us per step), power (W) and energy (uJ per
    step, total and dynamic = total - static power): lava-loihi profiler measurements."""

    target: str
    reason: str
    samples: int
    steps_per_sample: int
    accuracy: Optional[float] = None
    spike_agreement: Optional[float] = None
    sample_agreement: Optional[float] = None
    prediction_agreement: Optional[float] = None
    time_per_step_us: Optional[float] = None
    total_power_w: Optional[float] = None
    static_power_w: Optional[float] = None
    energy_per_step_uj: Optional[float] = None
    dynamic_energy_per_step_uj: Optional[float] = None
    notes: Tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def load_samples(path: os.PathLike) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """An ``.npz`` with ``inputs`` (samples, *input_shape, T) integer spikes or
    graded values, and optional ``labels`` (samples,) (:func:`neurodeploy.checks.load_samples`;
    a missing or malformed file is one :class:`~neurodeploy.errors.InputError` line)."""
    from neurodeploy.checks import InputFileError
    from neurodeploy.checks import load_samples as _load

    inputs, labels = _load(path)
    if labels is not None and labels.shape[:1] != inputs.shape[:1]:
        raise InputFileError(f"--data {path}: labels of shape {labels.shape} for inputs of shape "
                             f"{inputs.shape}; expected one label per sample")
    return inputs, labels


def deploy(net_path: os.PathLike, inputs: np.ndarray, labels: Optional[np.ndarray] = None,
           fallback: Optional[str] = None, availability: Optional[Availability] = None,
           hw_config: str = "loihi2", **target_options) -> DeployResult:
    """Map, then run ``net_path`` on Loihi 2 if reachable, else (``fallback='sim'``)
    on the bit-accurate simulator; otherwise raise :class:`ChipUnavailableError`.

    inputs: (samples, *input_shape, P) in netx (Lava port) order
    (:mod:`neurodeploy.layout`), as ``test_data.npz`` holds them. The samples run back to back in one stream
    laid out as the pipeline lays them out for Lava (:mod:`neurodeploy.sim.samples`:
    state reset every P steps, so each sample is independent); the simulator runs
    the same stream for the agreement figures. The mapping check
    (:class:`~neurodeploy.hardware.mapper.MappingError`) runs first, so a network
    that does not fit never reaches the chip.
    """
    from neurodeploy.checks import check_labels
    from neurodeploy.export.netx import read_netx
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.mapper import map_network
    from neurodeploy.layout import check_samples, netx_shape
    from neurodeploy.sim.samples import output_windows, sample_stream, stream_steps

    if fallback not in (None, "sim"):
        raise InputError(f"--fallback: expected None or 'sim', got {fallback!r}")
    network = read_netx(net_path)
    map_network(network, load_hardware_config(hw_config))  # raises MappingError before any run
    # integers only (nothing rounded), at least one sample: neurodeploy.checks
    x = check_samples(inputs, network, "deploy inputs").astype(np.int64)
    if labels is not None:
        labels = check_labels(labels, x.shape[0], int(np.prod(network.output_shape)), "labels")
    n, p, layers = x.shape[0], x.shape[-1], len(network.neuron_layers)
    availability = availability or detect_loihi(**target_options)
    if availability.reachable:
        from neurodeploy import lava_adapter

        tgt = availability.target
        lava_adapter.connect_loihi(tgt.kind, partition=tgt.partition, board=tgt.board, host=tgt.host,
                                   loihi_gen=tgt.loihi_gen)
        stream = sample_stream(x)  # (*netx input shape, (N + 1) P)
        chip = lava_adapter.run_netx_on_loihi(net_path, stream, steps=stream_steps(n, p, layers),
                                              reset_interval=p)
        out = np.asarray(chip.spikes)
        got = output_windows(out.reshape(*netx_shape(network.output_shape), out.shape[-1]), n, p, layers)
        ref = simulated_outputs(network, x)
        pred_chip, pred_sim = classify(got), classify(ref)
        same = [np.array_equal(a, b) for a, b in zip(got, ref)]
        return DeployResult(
            target="loihi2", reason=availability.message, samples=n, steps_per_sample=p,
            accuracy=None if labels is None else float(np.mean(pred_chip == np.asarray(labels))),
            spike_agreement=float(np.mean(got == ref)),
            sample_agreement=float(np.mean(same)),
            prediction_agreement=float(np.mean(pred_chip == pred_sim)),
            time_per_step_us=chip.time_per_step_us, total_power_w=chip.total_power_w,
            static_power_w=chip.static_power_w, energy_per_step_uj=chip.energy_per_step_uj,
            dynamic_energy_per_step_uj=chip.dynamic_energy_per_step_uj, notes=chip.notes)
    if fallback != "sim":
        raise ChipUnavailableError(availability.message + ". Use --fallback sim to run the bit-accurate "
                                   "simulator instead.")
    pred = classify(simulated_outputs(network, x))
    return DeployResult(
        target="simulator", reason=availability.message + " -> ran the bit-accurate simulator (fallback)",
        samples=n, steps_per_sample=p,
        accuracy=None if labels is None else float(np.mean(pred == np.asarray(labels))),
        notes=("no chip measurements: this is the bit-accurate simulator, not Loihi 2",))
