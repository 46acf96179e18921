"""Trainable CUBA-LIF layers and networks: thin modules over train.neuron.

A :class:`CubaDense` layer maps input spikes (batch, time, in) to output spikes
(batch, time, out); it holds weights and parameters, the arithmetic lives in
:mod:`neurodeploy.train.neuron` (float) and :mod:`neurodeploy.fixedpoint` (chip).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import nn

from neurodeploy.train.neuron import (
    CubaFloatParameters, SurrogateParameters, cuba_float_sequence,
)

BACKWARDS = ("dense", "sparse")


class CubaDense(nn.Module):
    """Dense synapses into a layer of CUBA-LIF neurons (no bias by default).

    backward: 'dense' (autograd BPTT) or 'sparse' (backward over the active
    (neuron, step) pairs only; needs ``surrogate.band``).
    """

    def __init__(self, in_features: int, out_features: int, neuron: CubaFloatParameters,
                 surrogate: SurrogateParameters, backward: str = "dense",
                 weight_scale: float = 1.0):
        super().__init__()
        if backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
        self.neuron = neuron
        self.surrogate = surrogate
        self.backward = backward
        bound = weight_scale * math.sqrt(3.0 / in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.hardware_forward = None  # set by hardware-aware training

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hardware_forward is not None:
            return self.hardware_forward(self, x)
        if self.backward == "sparse":
            from neurodeploy.train.sparse import cuba_layer
            return cuba_layer(x, self.weight, None, self.neuron, self.surrogate, backward="sparse")
        return cuba_float_sequence(x @ self.weight.T, self.neuron, self.surrogate)


class SpikingNetwork(nn.Module):
    """A stack of :class:`CubaDense` layers; input (batch, time, *input_shape) is
    flattened per step. ``forward`` returns every layer's spikes; the class
    scores are the output layer's spike counts."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int], num_classes: int,
                 neuron: CubaFloatParameters, surrogate: SurrogateParameters,
                 backward: str = "dense"):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        sizes = [math.prod(self.input_shape), *hidden, num_classes]
        self.layers = nn.ModuleList(
            CubaDense(a, b, neuron, surrogate, backward)
            for a, b in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        s = x.reshape(x.shape[0], x.shape[1], -1)
        out = []
        for layer in self.layers:
            s = layer(s)
            out.append(s)
        return out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Output spike counts (batch, classes)."""
        return self.forward(x)[-1].sum(dim=1)
