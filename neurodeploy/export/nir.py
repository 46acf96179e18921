"""NIR (Neuromorphic Intermediate Representation, PyPI ``nir``) in and out.

NIR describes a spiking network in continuous time: each neuron node carries
time constants and gains, and a back end discretises the equations with its own
time step. This module maps NIR's nodes to the integer network description
(:class:`neurodeploy.network.Network`) and back, with an explicit ``dt``:

- out: :func:`network_to_nir` (``Network -> nir.NIRGraph``), :func:`write_nir`;
- in: :func:`nir_to_float` (``nir.NIRGraph -> FloatNetwork``, the graph's
  equations discretised with forward Euler at ``dt``, in the float CUBA-LIF form
  neurodeploy trains), then :func:`quantize_float` with the training quantiser
  (:mod:`neurodeploy.export.quantize`): :func:`nir_to_network`, :func:`read_nir`.

Residual networks are graphs in NIR: a shortcut is a further synapse node (or a
direct edge, the identity) into a neuron node, which sums its inputs; the reader
takes the longest path from Input to Output as the chain
(:mod:`neurodeploy.export.nir_graph`).

Discretisation at ``dt`` (forward Euler, as snnTorch's exporter and importer and
Norse's importer read NIR), for a ``CubaLIF`` node::

    I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in x[t]
    v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) (v_leak + r I[t])
    z[t] = v[t] > v_threshold;   v[t] = v_reset where z[t]  (v_reset must be 0)

which is Loihi's CUBA-LIF (:mod:`neurodeploy.fixedpoint`) with
``iDecay = 4096 dt/tau_syn``, ``vDecay = 4096 dt/tau_mem`` and the input gains
``(dt/tau_syn) w_in (dt/tau_mem) r`` folded into the weights. ``LIF`` is the same
without a current (``iDecay = 4096``). The full mapping, and what NIR cannot
express (Loihi's rounding toward zero, the 24-bit wrap of u, saturation of v),
is in ``docs/nir.md``.

The writer records each layer's weight exponent in the neuron node's
``metadata`` (``loihi_weight_exponent``) with the fields NIR has no place for
(``loihi_refractory_delay``, ``loihi_graded_spike``, the input block's
``loihi_input_weight``), so that ``.net -> .nir -> .net`` reproduces every
integer field. Graphs from other libraries have no such metadata: their
exponents are chosen by the training quantiser's rule.

The mapping is split by direction: :mod:`neurodeploy.export.nir_write` (out),
:mod:`neurodeploy.export.nir_read` (in, to the float network),
:mod:`neurodeploy.export.nir_quantize` (float network to integers) and
:mod:`neurodeploy.export.nir_fields` (what they share); this module holds the
file functions and names the public API.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import (  # noqa: F401  (the public API)
    CURRENT_INPUTS,
    META_BIAS,
    META_EXPONENT,
    META_GRADED,
    META_INPUT_BLOCK,
    META_INPUT_WEIGHT,
    META_REFRACTORY,
    SUPPORTED_NODES,
    UNIFORM_RTOL,
    FloatFlatten,
    FloatLayer,
    FloatNetwork,
    _nir,
)
from neurodeploy.export.nir_quantize import quantize_float
from neurodeploy.export.nir_read import nir_to_float
from neurodeploy.export.nir_write import network_to_nir

__all__ = ["CURRENT_INPUTS", "SUPPORTED_NODES", "FloatFlatten", "FloatLayer", "FloatNetwork",
           "network_to_nir", "write_nir", "nir_to_float", "quantize_float", "nir_to_network",
           "read_nir_graph", "read_nir"]


def write_nir(network, path: Union[str, os.PathLike], dt: float = 1.0) -> Path:
    """Write ``network`` as a NIR HDF5 file (``nir.write``), atomically."""
    nir = _nir()
    path = Path(path)
    graph = network_to_nir(network, dt)
    tmp = path.with_name(path.name + ".tmp")
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path



def nir_to_network(graph, dt: float = 1.0, name: str = "network", where: str = "NIR graph",
                   current_input: str = "euler"):
    """A NIR graph as a quantised :class:`neurodeploy.network.Network`:
    :func:`nir_to_float` at ``dt``, then :func:`quantize_float`."""
    return quantize_float(nir_to_float(graph, dt, name=name, where=where, current_input=current_input),
                          where=where)


def read_nir_graph(path: Union[str, os.PathLike]):
    """``nir.read`` with one-line errors naming the file."""
    nir = _nir()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: NIR file not found")
    try:
        return nir.read(path, type_check=False)  # shapes are checked node by node on import
    except Exception as err:  # h5py/nir raise many kinds on a foreign or corrupt file
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a readable NIR file ({msg})") from None


def read_nir(path: Union[str, os.PathLike], dt: float = 1.0, current_input: str = "euler"):
    """Read a NIR file into a quantised :class:`neurodeploy.network.Network` (see
    :func:`nir_to_network`); ``dt`` is the time step NIR's time constants are
    discretised with (seconds, NIR's unit; files written by :func:`write_nir`
    record theirs and need the same value); ``current_input`` as in :func:`nir_to_float`."""
    path = Path(path)
    graph = read_nir_graph(path)
    return nir_to_network(graph, dt, name=path.stem, where=str(path), current_input=current_input)
