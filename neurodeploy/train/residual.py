"""Residual CUBA-LIF networks (ResNet-style stacks of spiking layers).

A :class:`CubaResidualBlock` holds two synapse layers into two layers of CUBA-LIF
neurons (conv 3x3 or dense, each with optional batch norm on its input current)
and a shortcut from the block's input spikes into the second layer's neurons:

    s1[t]  = LIF_1( N_1(W_1 * s_in[t]) )
    s_out[t] = LIF_2( N_2(W_2 * s1[t]) + shortcut(s_in[t]) )

``shortcut`` is the identity (the input spikes, one unit of current each) when the
block keeps its input's shape, else a 1x1 projection (conv with the block's stride,
or a dense matrix) with its own batch norm. The shortcut current enters the output
neurons' input current, the way Lava sums every synapse connected to a neuron's
``a_in``; the exporter (:mod:`neurodeploy.export.quantize_residual`) writes it as
a :class:`neurodeploy.network.Shortcut` with the delay that makes the chip sum the
same sample step on both paths.

A :class:`ResidualNetwork` is a stem (conv layers, or dense layers on the flattened
input, before dense blocks), stages of residual blocks
(``model.blocks``), then dense layers and the output layer; ``shortcuts=False``
builds the same layers as a plain stack (for depth studies).
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn

from neurodeploy.train.layers import CubaConv, CubaDense, conv_layers, fold_batch_norm
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters, cuba_float_sequence


class CubaResidualBlock(nn.Module):
    """Two CUBA-LIF layers and a shortcut into the second one's input current.

    input_shape: (C, H, W) for a conv block (3x3 kernels, padding 1, ``stride`` on
    the first conv and the projection) or (N,) for a dense block (stride 1).
    shortcut: False builds the same two layers without a shortcut (a plain block).
    """

    def __init__(self, input_shape: Sequence[int], channels: int, stride: int = 1, *,
                 neuron: CubaFloatParameters, surrogate: SurrogateParameters,
                 batch_norm: bool = False, shortcut: bool = True):
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.conv = len(self.input_shape) == 3
        if self.conv:
            self.first = CubaConv(self.input_shape, channels, 3, stride, 1, neuron=neuron,
                                  surrogate=surrogate, batch_norm=batch_norm)
            self.second = CubaConv(self.first.output_shape, channels, 3, 1, 1, neuron=neuron,
                                   surrogate=surrogate, batch_norm=batch_norm)
            self.output_shape = tuple(self.second.output_shape)
        elif len(self.input_shape) == 1:
            if stride != 1:
                raise ValueError(f"a dense residual block has no stride, got stride {stride}")
            self.first = CubaDense(self.input_shape[0], channels, neuron, surrogate, batch_norm=batch_norm)
            self.second = CubaDense(channels, channels, neuron, surrogate, batch_norm=batch_norm)
            self.output_shape = (channels,)
        else:
            raise ValueError(f"a residual block takes (C, H, W) or (N,) input, got {self.input_shape}")
        self.stride = (stride, stride)
        self.has_shortcut = bool(shortcut)
        self.register_parameter("projection", None)
        self.projection_norm = None
        if self.has_shortcut and self.output_shape != self.input_shape:
            fan_in = self.input_shape[0]
            bound = math.sqrt(3.0 / fan_in)
            shape = (channels, fan_in, 1, 1) if self.conv else (channels, fan_in)
            self.projection = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
            if batch_norm:
                self.projection_norm = nn.BatchNorm2d(channels) if self.conv else nn.BatchNorm1d(channels)

    @property
    def identity(self) -> bool:
        """Whether the shortcut is the identity (no projection weights)."""
        return self.has_shortcut and self.projection is None

    def shortcut_weight(self) -> torch.Tensor:
        """The shortcut's weights as a synapse: the identity as a 1x1 conv kernel (or
        a unit matrix) of ones, else the projection."""
        if self.projection is not None:
            return self.projection
        c = self.input_shape[0]
        eye = torch.eye(c, dtype=self.second.weight.dtype, device=self.second.weight.device)
        return eye.reshape(c, c, 1, 1) if self.conv else eye

    def folded_shortcut(self):
        """(weight, bias) of the shortcut with its batch norm folded in (bias None
        without one); the identity has no bias."""
        return fold_batch_norm(self.shortcut_weight().detach(), self.projection_norm)

    def _current(self, layer, x: torch.Tensor, stride=(1, 1), weight=None, norm=None) -> torch.Tensor:
        """Input current (batch, time, *out) of synapses ``weight`` (default the
        layer's) and batch norm ``norm`` on spikes x (batch, time, *in)."""
        b, t = x.shape[:2]
        w = layer.weight if weight is None else weight
        if self.conv:
            pad = layer.padding if weight is None else (0, 0)
            c = torch.nn.functional.conv2d(x.reshape(b * t, *x.shape[2:]), w,
                                           stride=layer.stride if weight is None else stride, padding=pad)
            if norm is not None:
                c = norm(c)
            return c.reshape(b, t, *c.shape[1:])
        c = x @ w.T
        if norm is not None:
            c = norm(c.reshape(b * t, -1)).reshape(b, t, -1)
        return c

    def shortcut_current(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut's current (batch, time, *output_shape) for input spikes x."""
        if self.projection is None:
            return x
        return self._current(self.second, x, self.stride, self.projection, self.projection_norm)

    def second_layer(self, s1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Output spikes of the block's second layer from the first layer's spikes
        s1 and the block's input spikes x."""
        current = self._current(self.second, s1, norm=self.second.norm)
        if self.has_shortcut:
            current = current + self.shortcut_current(x)
        b, t = current.shape[:2]
        s = cuba_float_sequence(current.reshape(b, t, -1), self.second.neuron, self.second.surrogate)
        return s.reshape(b, t, *self.output_shape)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Input spikes (batch, time, *input_shape) -> [s1, s_out]."""
        s1 = self.first(x)
        return [s1, self.second_layer(s1, x)]


class ResidualNetwork(nn.Module):
    """Stem layers, residual blocks, dense layers; input (batch, time, *input_shape).
    ``forward`` returns every spiking layer's spikes in the order the chip runs them
    (stem, each block's two layers, dense layers); scores are the output layer's
    spike counts.

    stem: dicts with ``channels``, ``kernel``, ``stride``, ``padding`` (conv layers;
    input_shape (C, H, W)). dense_stem: widths of dense stem layers instead, on the
    input flattened in torch order (the blocks after them are dense). stages: dicts
    with ``channels``, ``count`` (blocks) and ``stride`` (of the stage's first
    block). hidden: dense layers after the blocks (the last block's output flattened
    in torch order). Batch norm (on every layer, the output layer's included) needs
    current_decay 1.0, as for :class:`CubaConv`.
    """

    cell = "cuba"

    def __init__(self, input_shape: Sequence[int], stem: Sequence[dict], stages: Sequence[dict],
                 hidden: Sequence[int], num_classes: int, neuron: CubaFloatParameters,
                 surrogate: SurrogateParameters, batch_norm: bool = False, shortcuts: bool = True,
                 dense_stem: Sequence[int] = ()):
        super().__init__()
        if stem and dense_stem:
            raise ValueError("a residual network's stem is conv layers or dense layers, not both")
        self.input_shape = tuple(int(s) for s in input_shape)
        if dense_stem:
            self.input_shape = (math.prod(self.input_shape),)
        shape = self.input_shape
        convs, shape = conv_layers(shape, stem, neuron, surrogate, batch_norm, "stem conv layers")
        for width in dense_stem:
            convs.append(CubaDense(shape[0], int(width), neuron, surrogate, batch_norm=batch_norm))
            shape = (int(width),)
        self.stem = nn.ModuleList(convs)
        self.blocks = nn.ModuleList()
        for spec in stages:
            for k in range(int(spec["count"])):
                block = CubaResidualBlock(shape, spec["channels"], spec.get("stride", 1) if k == 0 else 1,
                                          neuron=neuron, surrogate=surrogate, batch_norm=batch_norm,
                                          shortcut=shortcuts)
                self.blocks.append(block)
                shape = block.output_shape
        sizes = [math.prod(shape), *hidden, num_classes]
        # batch norm on the output layer too: without it the readout's quickest way down
        # from its initial loss is to fall silent, and deep stacks then stop learning
        self.head = nn.ModuleList(CubaDense(a, b, neuron, surrogate, batch_norm=batch_norm)
                                  for a, b in zip(sizes[:-1], sizes[1:]))
        self.block_output_shape = tuple(shape)
        #: True: the forward is the chip's fixed-point arithmetic (train.residual_hardware)
        self.hardware_aware = False

    @property
    def num_spiking_layers(self) -> int:
        return len(self.stem) + 2 * len(self.blocks) + len(self.head)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if self.hardware_aware:
            from neurodeploy.train.residual_hardware import hardware_residual_forward
            return hardware_residual_forward(self, x)
        s = x.reshape(x.shape[0], x.shape[1], *self.input_shape)
        out = []
        for layer in self.stem:
            s = layer(s)
            out.append(s)
        for block in self.blocks:
            pair = block(s)
            out.extend(pair)
            s = pair[-1]
        s = s.reshape(s.shape[0], s.shape[1], -1)
        for layer in self.head:
            s = layer(s)
            out.append(s)
        return out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[-1].sum(dim=1)

    def tuning_steps(self):
        """The steps of per-layer surrogate tuning, in order: (layer whose surrogate
        height is set, function of the step's input spikes, function giving the next
        step's input). Every path from a block's output back to its input crosses
        the second layer's surrogate once, so the block's gain is proportional to
        that height: the first layer is tuned on its own, the second so the whole
        block (both paths) has gain 1."""
        steps = []
        for layer in self.stem:
            steps.append((layer, layer, layer))
        for block in self.blocks:
            steps.append((block.first, block.first, lambda x: x))  # input passes on to the block step
            steps.append((block.second, (lambda b: lambda x: b(x)[-1])(block),
                          (lambda b: lambda x: b(x)[-1])(block)))
        flatten = True
        for layer in self.head:
            if flatten:
                f = (lambda l: lambda x: l(x.reshape(x.shape[0], x.shape[1], -1)))(layer)
                steps.append((layer, f, f))
                flatten = False
            else:
                steps.append((layer, layer, layer))
        layer, step, advance = steps[0]
        shape = self.input_shape  # the first step takes the input as given, reshaped as forward does

        def shaped(f):
            return lambda x: f(x.reshape(x.shape[0], x.shape[1], *shape))

        steps[0] = (layer, shaped(step), shaped(advance))
        return steps
