"""The one module that imports Lava (lazily, inside functions: importing
lava-dl's netx pulls in all of slayer and torch, 10-19 s).

A netx ``.net`` file -> Lava processes through lava-dl's netx -> run on
``Loihi2SimCfg(select_tag='fixed_pt')`` (bit-accurate CPU models). Inputs are fed
where netx feeds them: into ``net.inp`` for files without an input layer, into the
input layer's neuron ``a_in`` for files with one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np


class LavaUnavailableError(RuntimeError):
    """lava-nc / lava-dl cannot be imported here (they need CPython 3.10)."""


def lava_available() -> bool:
    try:
        import lava.magma  # noqa: F401
        import lava.lib.dl  # noqa: F401
    except Exception:
        return False
    return True


def _import_lava():
    try:
        from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc import io
    except ImportError as e:  # pragma: no cover - depends on the interpreter
        import sys
        raise LavaUnavailableError(
            f"Lava is not importable on Python {sys.version.split()[0]} ({e}). lava-nc 0.10.0 and "
            "lava-dl 0.6.0 need CPython 3.10: run through `uv run` in this project.") from None
    return netx, RunSteps, Loihi2SimCfg, io


@dataclass
class LavaRun:
    """Output of a Lava run: ``spikes`` (*out_shape, steps) as Lava's RingBuffer sink
    recorded them (step t at index t, 0-based), and optional per-layer probes."""

    spikes: np.ndarray
    probes: Dict[str, np.ndarray]


def run_netx(
    path: os.PathLike,
    stream: np.ndarray,
    steps: Optional[int] = None,
    reset_interval: Optional[int] = None,
    reset_offset: int = 0,
    input_bias: Optional[np.ndarray] = None,
    probe: bool = False,
    num_layers: Optional[int] = None,
) -> LavaRun:
    """Run a netx network on Lava's bit-accurate CPU simulator.

    stream: input of shape (*input_shape_in_netx_order, T) (spikes or graded
    integers); a RingBuffer sends ``stream[..., (t - 1) % T]`` at Lava step t
    (1-based), repeating cyclically when ``steps > T``. ``reset_interval`` and
    ``reset_offset`` go to netx's ``Network`` (each neuron layer i resets at
    steps where ``t % reset_interval == reset_offset + 1 + i``).
    input_bias: bias mantissa of the input layer's neurons (netx order), set on
    ``net.in_layer.neuron.bias_mant`` as lava-dl's examples inject images.
    probe: record every layer's u, v (CUBA) and spikes with Lava monitors; probes
    are keyed ``u/<j>``, ``v/<j>``, ``s/<j>`` with j the index in ``net.layers``
    (blocks that hold neurons), each (*layer_shape, steps).
    num_layers: build only the first blocks (netx's ``num_layers``).
    """
    netx, RunSteps, Loihi2SimCfg, io = _import_lava()
    steps = int(stream.shape[-1] if steps is None else steps)
    net = netx.hdf5.Network(net_config=str(path), reset_interval=reset_interval,
                            reset_offset=reset_offset, num_layers=num_layers)
    has_input_layer = type(net.layers[0]).__name__ == "Input"
    target = net.layers[0].neuron.a_in if has_input_layer else net.inp
    if tuple(stream.shape[:-1]) != tuple(target.shape):
        raise ValueError(f"input stream shape {stream.shape[:-1]} does not match the network's "
                         f"input port shape {tuple(target.shape)} (netx order, time last)")
    if input_bias is not None:
        if not has_input_layer:
            raise ValueError(f"{path}: input_bias needs an input layer with neurons")
        net.in_layer.neuron.bias_mant.init = np.asarray(input_bias).astype(np.int32).reshape(
            net.in_layer.neuron.bias_mant.shape)
    source = io.source.RingBuffer(data=np.asarray(stream).astype(np.int32))
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=steps)
    source.s_out.connect(target)
    net.out.connect(sink.a_in)
    sinks = {}
    if probe:
        for j, layer in enumerate(net.layers):
            sk = io.sink.RingBuffer(shape=layer.out.shape, buffer=steps)
            layer.out.connect(sk.a_in)
            sinks[f"s/{j}"] = sk
    monitors = {}
    if probe:
        from lava.proc.monitor.process import Monitor
        for j, layer in enumerate(net.layers):
            for var in ("u", "v"):
                if hasattr(layer.neuron, var):
                    m = Monitor()
                    m.probe(getattr(layer.neuron, var), steps)
                    monitors[f"{var}/{j}"] = (m, getattr(layer.neuron, var))
    probes = {}
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
        for k, sk in sinks.items():
            probes[k] = np.asarray(sk.data.get())
        for k, (m, var) in monitors.items():
            data = m.get_data()[var.process.name][var.name]  # (steps, N)
            probes[k] = np.moveaxis(np.asarray(data), 0, -1).reshape(*var.shape, steps)
    finally:
        net.stop()
    return LavaRun(spikes=np.asarray(out), probes=probes)
