"""The public Python API, re-exported as ``import neurodeploy as nd``.

For a researcher with their own ``nn.Module`` and training loop: build the model from
neurodeploy layers (:class:`~neurodeploy.train.layers.CubaDense`,
:class:`~neurodeploy.train.layers.CubaConv`), train it, then :func:`quantize` it to the
integer :class:`~neurodeploy.network.Network`, write it as netx (or NIR), simulate it
bit-exactly, run it on Lava and map it onto a chip. Reference: ``docs/api.md``.

Samples cross this API in torch order, as the model takes them: ``(N, T, *input_shape)``
in, ``(N, T, *output_shape)`` out, each sample from a fresh network state (as one
sample in a training batch). The chip-side functions' own layout (netx's port order,
time last) stays inside.

This module imports numpy only; torch, Lava and nir are imported by the functions
that need them.
"""
from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from neurodeploy.errors import InputError, MissingDependencyError

PathLike = Union[str, os.PathLike]

#: the module that reads and writes NIR graphs
NIR_MODULE = "neurodeploy.export.nir"


def quantize(model, layers: Optional[Sequence] = None, name: str = "network"):
    """Quantise a trained model to the integer :class:`~neurodeploy.network.Network`.

    model: any ``nn.Module`` holding neurodeploy layers (``CubaConv`` then ``CubaDense``,
    dense ones optionally recurrent), or a ``SpikingNetwork``. They are taken in the
    order in which they were registered (``model.modules()``, depth first) unless
    ``layers`` lists them in running order. The chain is checked: each layer takes the
    previous one's output; conv outputs are flattened in torch's (C, H, W) order. Learned
    thresholds/decays of hardware-aware training are taken over first. The post-training
    quantisation rules are in :mod:`neurodeploy.export.quantize`. A
    :class:`~neurodeploy.train.residual.ResidualNetwork` becomes a network with
    shortcuts (:mod:`neurodeploy.export.quantize_residual`)."""
    from neurodeploy.export.quantize import quantize_model
    from neurodeploy.train.hardware import sync_learned_neurons
    from neurodeploy.train.residual import ResidualNetwork

    sync_learned_neurons(model, layers)
    if isinstance(model, ResidualNetwork) and layers is None:
        from neurodeploy.export.quantize_residual import quantize_residual_model
        return quantize_residual_model(model, name=name)
    return quantize_model(model, name=name, layers=layers)


def hardware_aware(model, enabled: bool = True, learn: Sequence[str] = (),
                   layers: Optional[Sequence] = None) -> None:
    """Switch the model's dense layers (or a ResidualNetwork's every layer) to (or
    back from) the chip's fixed-point forward for fine-tuning (straight-through
    gradients); see :func:`neurodeploy.train.hardware.set_hardware_aware` and
    :func:`neurodeploy.train.residual_hardware.set_residual_hardware_aware`."""
    from neurodeploy.train.hardware import set_hardware_aware
    from neurodeploy.train.residual import ResidualNetwork

    if isinstance(model, ResidualNetwork) and layers is None:
        from neurodeploy.train.residual_hardware import set_residual_hardware_aware
        set_residual_hardware_aware(model, enabled, learn=learn)
        return
    set_hardware_aware(model, enabled, learn=learn, layers=layers)


def write_netx(network, path: PathLike) -> Path:
    """Write ``network`` as a lava-dl netx ``.net`` file (atomic; bit widths checked)."""
    from neurodeploy.export.netx import write_netx as _write

    return _write(network, path)


def read_netx(path: PathLike, **kwargs):
    """Read a netx ``.net`` file into a :class:`~neurodeploy.network.Network`
    (keyword arguments: :func:`neurodeploy.export.netx.read_netx`'s)."""
    from neurodeploy.export.netx import read_netx as _read

    return _read(path, **kwargs)


def _nir_module():
    try:
        return importlib.import_module(NIR_MODULE)
    except ModuleNotFoundError as e:
        if e.name != NIR_MODULE:  # the module is there, something it imports is not
            raise
        raise MissingDependencyError(
            f"NIR import/export ({NIR_MODULE}) is not part of this installation of neurodeploy") from None


def write_nir(network, path: PathLike, dt: float, **kwargs):
    """Write ``network`` as a NIR graph (``.nir``); ``dt``: the time step in seconds
    that turns Loihi's per-step decays into NIR's time constants. Forwards to
    ``neurodeploy.export.nir.write_nir``."""
    return _nir_module().write_nir(network, path, dt=dt, **kwargs)


def read_nir(path: PathLike, dt: float, **kwargs):
    """Read a NIR graph into a quantised :class:`~neurodeploy.network.Network`;
    ``dt`` as for :func:`write_nir`. Forwards to ``neurodeploy.export.nir.read_nir``."""
    return _nir_module().read_nir(path, dt=dt, **kwargs)


def _as_array(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise InputError(f"{what}: expected a numeric array or tensor, got dtype {a.dtype}")
    return a


def _check_samples(network, x: np.ndarray, what: str) -> np.ndarray:
    shape = tuple(network.input_shape)
    if x.ndim == len(shape) + 2 and tuple(x.shape[2:]) == shape:
        pass
    elif len(shape) > 1 and x.ndim == 3 and x.shape[2] == int(np.prod(shape)):
        x = x.reshape(x.shape[0], x.shape[1], *shape)  # flat images
    else:
        raise InputError(f"{what}: expected samples of shape (N, T, {', '.join(map(str, shape))}) "
                         f"in torch order, got {x.shape}")
    if x.shape[1] < 1:
        raise InputError(f"{what}: samples need at least one time step, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating) and not np.array_equal(x, np.round(x)):
        raise InputError(f"{what}: inputs must be integers (spikes 0/1 or graded integers); "
                         "found non-integer values")
    return x


def _netx_order(x: np.ndarray) -> np.ndarray:
    """(N, T, *shape) torch order -> (N, *reversed shape, T): netx's port order
    (it reverses the file's torch-order shape), time last."""
    axes = (0,) + tuple(range(x.ndim - 1, 1, -1)) + (1,)
    return np.ascontiguousarray(x.transpose(axes)).astype(np.int64)


def _torch_order(y: np.ndarray) -> np.ndarray:
    """(N, *netx shape, T) -> (N, T, *torch shape): the inverse of :func:`_netx_order`."""
    axes = (0, y.ndim - 1) + tuple(range(y.ndim - 2, 0, -1))
    return np.ascontiguousarray(y.transpose(axes))


def simulate(network, inputs, batch_size: int = 512, device: str = "cpu") -> np.ndarray:
    """Bit-accurate output spikes of ``network`` for independent samples.

    inputs: (N, T, *input_shape), torch order (a tensor or array of spikes or graded
    integers). Returns (N, T, *output_shape) uint8 spikes, torch order: what Lava's
    processes and the chip produce for each sample from a fresh state, and what a
    hardware-aware model's own forward gives (``model(x)[-1]`` for a SpikingNetwork).
    device: ``cpu``, or ``cuda`` / ``cuda:N`` (the same spikes, computed on a GPU)."""
    from neurodeploy.sim.samples import simulated_outputs

    x = _check_samples(network, _as_array(inputs, "simulate inputs"), "simulate inputs")
    out = simulated_outputs(network, _netx_order(x), batch_size=batch_size, device=device)
    return _torch_order(np.asarray(out)).astype(np.uint8)


def run_lava(network, inputs, path: Optional[PathLike] = None) -> np.ndarray:
    """The same samples on Lava's bit-accurate CPU simulator
    (``Loihi2SimCfg(select_tag='fixed_pt')``, processes built by lava-dl's netx).

    network: a :class:`~neurodeploy.network.Network` (written to ``path``, or a
    temporary file) or the path of a ``.net`` file. inputs and result as for
    :func:`simulate`. Needs lava-nc / lava-dl (CPython 3.10)."""
    from neurodeploy.lava_adapter import lava_available
    from neurodeploy.sim.samples import lava_outputs

    if not lava_available():
        raise MissingDependencyError("run_lava needs lava-nc and lava-dl, which import on CPython 3.10 only")
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(network, (str, os.PathLike)):
            net_path = Path(network)
            network = read_netx(net_path)
        else:
            net_path = write_netx(network, Path(path) if path is not None else Path(tmp) / "network.net")
        x = _check_samples(network, _as_array(inputs, "run_lava inputs"), "run_lava inputs")
        out = lava_outputs(net_path, network, _netx_order(x))
    return _torch_order(np.asarray(out)).astype(np.uint8)


def map_network(network, hardware="loihi2", inputs=None):
    """Place ``network`` on a hardware target: cores, neurons, synapses, memory per
    layer (a :class:`~neurodeploy.hardware.mapper.MappingReport`; ``.table()`` prints
    it, ``.to_dict()`` gives the numbers). hardware: a ``hw_configs/`` name, a YAML
    path or a loaded ``HardwareConfig``. inputs: optional samples as for
    :func:`simulate`, for an activity and energy estimate. Raises
    :class:`~neurodeploy.hardware.mapper.MappingError` when it does not fit."""
    from neurodeploy.hardware.activity import activity_of_samples
    from neurodeploy.hardware.config import HardwareConfig, load_hardware_config
    from neurodeploy.hardware.mapper import map_network as _map

    hw = hardware if isinstance(hardware, HardwareConfig) else load_hardware_config(hardware)
    report = _map(network, hw)
    if inputs is not None:
        x = _netx_order(_check_samples(network, _as_array(inputs, "map inputs"), "map inputs"))
        report = report.with_activity(activity_of_samples(network, hw, x))
    return report
