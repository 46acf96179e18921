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

from neurodeploy.train.events import input_current
from neurodeploy.train.neuron import (
    CubaFloatParameters,
    SurrogateParameters,
    cuba_float_sequence,
)

BACKWARDS = ("dense", "sparse")


def _check_batch_norm(neuron: CubaFloatParameters) -> None:
    if neuron.current_decay != 1.0:
        raise ValueError(
            "batch norm on input currents folds exactly into Loihi's bias only when the current "
            f"does not integrate (current_decay = 1.0), got current_decay = {neuron.current_decay}")


class DenseFeatures:
    """``in_features`` and ``out_features`` of a module with an (out, in) ``weight``."""

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


class CubaDense(DenseFeatures, nn.Module):
    """Dense synapses into a layer of CUBA-LIF neurons (no bias by default).

    backward: 'dense' (autograd BPTT) or 'sparse' (backward over the active
    (neuron, step) pairs only; needs ``surrogate.band``).
    batch_norm: batch normalisation of the input currents over (batch, time) during
    training (Ledinauskas et al.); folded into weights and bias at export.
    recurrent: add recurrent synapses ``weight_rec`` (out, out): the layer's own spikes
    of the previous step enter with its input, ``u[t] = (1 - current_decay) u[t-1] +
    W s_in[t] + W_rec s[t-1]``, as netx's ``dense_rec`` block runs on Lava (the
    recurrent Dense synapse delivers a step's spikes on the next step). Exported
    with one weight exponent for W and W_rec, as netx derives one for both.
    """

    def __init__(self, in_features: int, out_features: int, neuron: CubaFloatParameters,
                 surrogate: SurrogateParameters, backward: str = "dense",
                 weight_scale: float = 1.0, batch_norm: bool = False, recurrent: bool = False):
        super().__init__()
        if backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
        self.neuron = neuron
        self.surrogate = surrogate
        self.backward = backward
        bound = weight_scale * math.sqrt(3.0 / in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.register_parameter("weight_rec", None)
        if recurrent:
            if batch_norm:
                raise ValueError("a recurrent layer cannot have batch norm: the norm of the input "
                                 "currents would leave the recurrent input unnormalised")
            rec_bound = weight_scale * math.sqrt(3.0 / out_features)
            self.weight_rec = nn.Parameter(torch.empty(out_features, out_features).uniform_(-rec_bound, rec_bound))
        self.hardware_forward = None  # set by hardware-aware training
        self.norm = None
        #: sparse backward: active and all (sample, step, neuron) entries seen in training
        #: since the training loop last cleared it
        self.active_counts = {}
        if batch_norm:
            _check_batch_norm(neuron)
            self.norm = nn.BatchNorm1d(out_features)
            if backward == "sparse":
                raise ValueError("the sparse backward does not support batch norm layers")

    @property
    def recurrent(self) -> bool:
        return self.weight_rec is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hardware_forward is not None:
            return self.hardware_forward(self, x)
        if self.backward == "sparse" or self.weight_rec is not None:
            from neurodeploy.train.sparse import cuba_layer
            return cuba_layer(x, self.weight, None, self.neuron, self.surrogate, weight_rec=self.weight_rec,
                              backward=self.backward,
                              stats=self.active_counts if self.training and self.backward == "sparse" else None)
        current = input_current(x, self.weight)
        if self.norm is not None:
            b, t, n = current.shape
            current = self.norm(current.reshape(b * t, n)).reshape(b, t, n)
        return cuba_float_sequence(current, self.neuron, self.surrogate)

    def folded(self):
        """(weight, bias) with the batch norm folded in (eval statistics); bias None
        without batch norm. Exact because current_decay = 1 (u = input each step)."""
        return fold_batch_norm(self.weight.detach(), self.norm)


def fold_batch_norm(weight: torch.Tensor, norm, differentiable: bool = False):
    """Fold ``norm(W * s)`` (eval statistics) into ``W' * s + bias`` per output channel:
    ``W' = W * gamma / sqrt(var + eps)``, ``bias = beta - mean * gamma / sqrt(var + eps)``.
    The one definition of the fold: export quantises its result, and the
    hardware-aware forward quantises the same result in every step
    (``differentiable=True``: gradients reach W, gamma and beta; the running
    statistics stay fixed)."""
    if norm is None:
        return weight, None
    gamma, beta = (norm.weight, norm.bias) if differentiable else (norm.weight.detach(), norm.bias.detach())
    gain = gamma / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * gain.reshape(shape), beta - norm.running_mean * gain


class CubaConv(nn.Module):
    """2-D convolution into a layer of CUBA-LIF neurons; input (batch, time, C, H, W),
    output spikes (batch, time, C', H', W'). Optional batch norm on input currents."""

    def __init__(self, input_shape: Sequence[int], channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, *, neuron: CubaFloatParameters, surrogate: SurrogateParameters,
                 batch_norm: bool = False):
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        c, h, w = self.input_shape
        self.stride, self.padding = (stride, stride), (padding, padding)
        self.neuron, self.surrogate = neuron, surrogate
        bound = math.sqrt(3.0 / (c * kernel * kernel))
        self.weight = nn.Parameter(torch.empty(channels, c, kernel, kernel).uniform_(-bound, bound))
        out_h = (h + 2 * padding - kernel) // stride + 1
        out_w = (w + 2 * padding - kernel) // stride + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(f"conv kernel {kernel} stride {stride} does not fit input {self.input_shape}")
        self.output_shape = (channels, out_h, out_w)
        self.norm = None
        self.hardware_forward = None
        if batch_norm:
            _check_batch_norm(neuron)
            self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hardware_forward is not None:
            raise NotImplementedError("hardware-aware training supports dense layers only")
        b, t = x.shape[:2]
        current = torch.nn.functional.conv2d(x.reshape(b * t, *self.input_shape), self.weight,
                                             stride=self.stride, padding=self.padding)
        if self.norm is not None:
            current = self.norm(current)
        s = cuba_float_sequence(current.reshape(b, t, -1), self.neuron, self.surrogate)
        return s.reshape(b, t, *self.output_shape)

    def folded(self):
        return fold_batch_norm(self.weight.detach(), self.norm)


def conv_layers(shape, specs, neuron: CubaFloatParameters, surrogate: SurrogateParameters,
                batch_norm: bool, what: str):
    """CubaConv layers from specs ({channels, kernel, stride?, padding?}) on an input of
    ``shape`` (C, H, W) -> (layers, output shape); ``what`` names them in errors."""
    layers = []
    for spec in specs:
        if len(shape) != 3:
            raise ValueError(f"{what} need a (C, H, W) input, got {shape}")
        layer = CubaConv(shape, spec["channels"], spec["kernel"], spec.get("stride", 1),
                         spec.get("padding", 0), neuron=neuron, surrogate=surrogate,
                         batch_norm=batch_norm)
        layers.append(layer)
        shape = layer.output_shape
    return layers, tuple(shape)


class SpikingNetwork(nn.Module):
    """Optional :class:`CubaConv` layers, then :class:`CubaDense` layers; input
    (batch, time, *input_shape). ``forward`` returns every layer's spikes; the class
    scores are the output layer's spike counts.

    conv: a list of dicts with ``channels``, ``kernel``, ``stride``, ``padding``
    (input_shape must then be (C, H, W)); conv outputs are flattened in torch's
    (C, H, W) order before the dense layers, as netx's flatten block does.
    recurrent: every hidden dense layer is recurrent (``CubaDense(recurrent=True)``);
    the output layer stays feed-forward.
    """

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int], num_classes: int,
                 neuron: CubaFloatParameters, surrogate: SurrogateParameters,
                 backward: str = "dense", conv: Sequence[dict] = (), batch_norm: bool = False,
                 recurrent: bool = False):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        layers: List[nn.Module] = []
        shape = self.input_shape
        if conv:
            from neurodeploy.train.sparse import check_backward_mode
            check_backward_mode(backward, "conv", "conv layers")
        convs, shape = conv_layers(shape, conv, neuron, surrogate, batch_norm, "conv layers")
        layers.extend(convs)
        self.num_conv = len(layers)
        sizes = [math.prod(shape), *hidden, num_classes]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            layers.append(CubaDense(a, b, neuron, surrogate, backward,
                                    batch_norm=batch_norm and not last, recurrent=recurrent and not last))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        s = x.reshape(x.shape[0], x.shape[1], *self.input_shape)
        out = []
        for i, layer in enumerate(self.layers):
            if i == self.num_conv:
                s = s.reshape(s.shape[0], s.shape[1], -1)
            s = layer(s)
            out.append(s)
        return out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Output spike counts (batch, classes)."""
        return self.forward(x)[-1].sum(dim=1)


def spiking_layers(model: nn.Module, layers: Optional[Sequence[nn.Module]] = None) -> List[nn.Module]:
    """The neurodeploy layers of ``model`` in the order the network runs them.

    ``layers`` given: that list, in that order (each must be a :class:`CubaConv` or
    :class:`CubaDense`). Otherwise every :class:`CubaConv` / :class:`CubaDense` in
    ``model.modules()`` order, i.e. the order in which they were registered (assigned
    as attributes or appended to an ``nn.ModuleList``), depth first; ``model`` may
    itself be one layer. The layers must form a chain: conv layers first, each taking
    the previous one's output shape, then dense layers, the first taking the last conv
    output flattened in torch's (C, H, W) order, each the previous one's outputs.
    Raises ValueError naming the first layer that breaks the chain."""
    kinds = (CubaConv, CubaDense)
    if layers is None:
        found = [m for m in model.modules() if isinstance(m, kinds)]
        source = f"{type(model).__name__}.modules()"
    else:
        found = list(layers)
        source = "the given layers"
        for i, m in enumerate(found):
            if not isinstance(m, kinds):
                raise ValueError(f"{source}: entry {i} is a {type(m).__name__}, not a neurodeploy "
                                 "CubaConv or CubaDense layer")
    if not found:
        raise ValueError(f"{source}: no neurodeploy layers (CubaConv, CubaDense) found")
    prev = None
    for i, m in enumerate(found):
        if isinstance(m, CubaConv):
            if prev is not None and not isinstance(prev, CubaConv):
                raise ValueError(f"{source}: layer {i} (CubaConv) follows a dense layer; conv layers "
                                 "must come first")
            if prev is not None and tuple(prev.output_shape) != tuple(m.input_shape):
                raise ValueError(f"{source}: layer {i} (CubaConv) takes input {m.input_shape}, the "
                                 f"previous layer gives {prev.output_shape}")
        else:
            given = (None if prev is None else
                     math.prod(prev.output_shape) if isinstance(prev, CubaConv) else prev.out_features)
            if given is not None and m.in_features != given:
                raise ValueError(f"{source}: layer {i} (CubaDense) has {m.in_features} inputs, the "
                                 f"previous layer gives {given}")
        prev = m
    return found


def network_input_shape(layers: Sequence[nn.Module]) -> tuple:
    """Input shape (torch order, without batch and time) of a chain of layers."""
    first = layers[0]
    return tuple(first.input_shape) if isinstance(first, CubaConv) else (first.in_features,)
