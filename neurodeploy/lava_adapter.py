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
    import multiprocessing
    # Lava calls multiprocessing.set_start_method('fork') at import and fails if any
    # library (tqdm's lock, for one) already fixed the context: release it first.
    if multiprocessing.get_start_method(allow_none=True) is not None:
        multiprocessing.set_start_method(None, force=True)
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
) -> LavaRun:
    """Run a netx network on Lava's bit-accurate CPU simulator.

    stream: input of shape (*input_shape_in_netx_order, T) (spikes or graded
    integers); a RingBuffer sends ``stream[..., (t - 1) % T]`` at Lava step t
    (1-based), repeating cyclically when ``steps > T``. ``reset_interval`` and
    ``reset_offset`` go to netx's ``Network`` (each neuron layer i resets at
    steps where ``t % reset_interval == reset_offset + 1 + i``).
    """
    netx, RunSteps, Loihi2SimCfg, io = _import_lava()
    steps = int(stream.shape[-1] if steps is None else steps)
    net = netx.hdf5.Network(net_config=str(path), reset_interval=reset_interval,
                            reset_offset=reset_offset)
    has_input_layer = type(net.layers[0]).__name__ == "Input"
    target = net.layers[0].neuron.a_in if has_input_layer else net.inp
    if tuple(stream.shape[:-1]) != tuple(target.shape):
        raise ValueError(f"input stream shape {stream.shape[:-1]} does not match the network's "
                         f"input port shape {tuple(target.shape)} (netx order, time last)")
    source = io.source.RingBuffer(data=np.asarray(stream).astype(np.int32))
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=steps)
    source.s_out.connect(target)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
    finally:
        net.stop()
    return LavaRun(spikes=np.asarray(out), probes={})
