"""The float network of an imported NIR graph, as a torch module.

:func:`neurodeploy.export.nir.nir_to_float` reads a NIR graph into float CUBA-LIF
layers (:class:`neurodeploy.export.nir.FloatNetwork`); this module runs them with
the training dynamics (:func:`neurodeploy.train.neuron.cuba_float_step`), so that
an import can be checked against the source library's own forward before
quantisation, and the quantised network against this one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np
import torch
from torch import nn

from neurodeploy.train.neuron import (
    CubaFloatState,
    SurrogateParameters,
    cuba_float_step,
)


@dataclass(frozen=True)
class _Neuron:
    """The fields :func:`cuba_float_step` reads (an imported threshold may be 0,
    which :class:`neurodeploy.train.neuron.CubaFloatParameters` refuses for training)."""

    current_decay: float
    voltage_decay: float
    threshold: float


def _per_neuron(value, shape, dtype):
    """A field (one value, one per neuron, or one per channel of a (C, H, W) layer) as
    a float, or a tensor of one value per neuron in flattened torch order."""
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.size == 1:
        return float(a[0])
    if len(shape) == 3 and a.size == shape[0]:
        a = np.repeat(a, shape[1] * shape[2])  # per channel -> per neuron
    return torch.as_tensor(a, dtype=dtype)


def _shortcut_current(spikes, weight, stride, padding):
    """A shortcut's current (batch, time, target neurons) from its source's spikes."""
    b, steps = spikes.shape[:2]
    if weight.ndim == 4:
        cur = torch.nn.functional.conv2d(spikes.reshape(b * steps, *spikes.shape[2:]), weight,
                                         stride=stride, padding=padding)
        return cur.reshape(b, steps, -1)
    return spikes.reshape(b, steps, -1) @ weight.T


class FloatImportedNetwork(nn.Module):
    """Input (batch, time, *input_shape) -> every layer's spikes (batch, time, *shape),
    as :class:`neurodeploy.train.layers.SpikingNetwork` returns them.

    Each layer: ``u = (1 - current_decay) u + W x [+ W_rec s_prev]``,
    ``v = (1 - voltage_decay) v + u + bias``, spike where ``v > threshold``, reset
    v to 0; an 'input' layer takes x as its current; a residual shortcut adds its
    source layer's spikes of the same step, through its weights, to its target's current. ``dtype``: float32 mirrors
    the peer libraries' arithmetic, float64 the quantiser's."""

    def __init__(self, fnet, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.fnet = fnet
        self.input_shape = tuple(fnet.input_shape)
        self.dtype = dtype
        self._surrogate = SurrogateParameters()
        self.specs = []
        t = lambda a: None if a is None else torch.as_tensor(a, dtype=dtype)  # noqa: E731
        for i, layer in enumerate(fnet.layers):
            if not hasattr(layer, "kind"):
                self.specs.append(("flatten", None))
                continue
            if layer.fields.get("no_neuron"):
                continue
            per_neuron = lambda a: _per_neuron(a, layer.shape, dtype)  # noqa: E731
            p = _Neuron(current_decay=per_neuron(layer.current_decay),
                        voltage_decay=per_neuron(layer.voltage_decay), threshold=per_neuron(layer.threshold))
            shortcuts = [(sc.source, t(sc.weight), sc.stride, sc.padding)
                         for sc in getattr(fnet, "shortcuts", ()) if sc.target == i]
            self.specs.append((layer.kind, dict(layer=layer, p=p, weight=t(layer.weight), index=i,
                                                weight_rec=t(layer.weight_rec), bias=per_neuron(layer.bias),
                                                shortcuts=shortcuts)))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        b, steps = x.shape[:2]
        s = x.to(self.dtype).reshape(b, steps, *self.input_shape)
        out, by_index = [], {}
        for kind, spec in self.specs:
            if kind == "flatten":
                s = s.reshape(b, steps, -1)
                continue
            layer = spec["layer"]
            if kind == "conv":
                cur = torch.nn.functional.conv2d(s.reshape(b * steps, *s.shape[2:]), spec["weight"],
                                                 stride=layer.stride, padding=layer.padding,
                                                 dilation=layer.dilation, groups=layer.groups)
                cur = cur.reshape(b, steps, -1)
            elif kind == "dense":
                cur = s.reshape(b, steps, -1) @ spec["weight"].T
            else:
                cur = s.reshape(b, steps, -1)
            for source, weight, stride, padding in spec["shortcuts"]:  # residual: same step, summed
                cur = cur + _shortcut_current(by_index[source], weight, stride, padding)
            n = cur.shape[-1]
            state = CubaFloatState(cur.new_zeros(b, n), cur.new_zeros(b, n))
            prev = cur.new_zeros(b, n)
            spikes = []
            for k in range(steps):
                drive = cur[:, k]
                if spec["weight_rec"] is not None:
                    drive = drive + prev @ spec["weight_rec"].T
                prev, state = cuba_float_step(drive, state, spec["p"], self._surrogate, spec["bias"])
                spikes.append(prev)
            s = torch.stack(spikes, dim=1).reshape(b, steps, *layer.shape)
            out.append(s)
            by_index[spec["index"]] = s
        return out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Output spike counts (batch, classes)."""
        out = self.forward(x)[-1]
        return out.reshape(out.shape[0], out.shape[1], -1).sum(dim=1)


def float_model_from_nir(graph, dt: float = 1.0, dtype: torch.dtype = torch.float32,
                         current_input: str = "euler") -> FloatImportedNetwork:
    """The float torch model of a NIR graph (or a NIR file path) at time step ``dt``."""
    from pathlib import Path

    from neurodeploy.export.nir import nir_to_float, read_nir_graph

    if isinstance(graph, (str, Path)):
        graph = read_nir_graph(graph)
    return FloatImportedNetwork(nir_to_float(graph, dt, current_input=current_input), dtype=dtype)
