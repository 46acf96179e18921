"""The one integer network description shared by the trainer's exporter, the
netx reader/writer, the simulators, the mapper and the Lava adapter.

A :class:`Network` is an ordered tuple of blocks in netx's order (``layer/0``,
``layer/1``, ...). All numbers are the chip's integers: weights are the
effective integer weights Lava's Dense uses (8 bit, see
:func:`neurodeploy.fixedpoint.effective_weights`), neuron parameters are netx's
integer fields. Shapes are in netx's torch order: ``(C,)`` or ``(C, H, W)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Tuple, Union

import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy import fixedpoint_src as fxs


@dataclass(frozen=True)
class CubaNeuron:
    """CUBA-LIF neuron fields as netx stores them (``neuron/`` group, type 'CUBA').

    current_decay: iDecay, 1..4096 (Lava du = iDecay - 1)
    voltage_decay: vDecay, 0..4095 (Lava dv)
    threshold: vThMant, 0..131071 (Lava vth; fires when v > vth << 6)
    refractory_delay: refDelay (stored, ignored by netx and Lava's LIF)
    graded_spike: gradedSpike (stored, ignored by netx for CUBA)

    Decays and threshold are one int for the layer or a tuple of one per neuron
    along the block's first torch axis (slayer's ``shared_param=False``: per
    neuron of a dense block, per channel of a conv block; Lava broadcasts them
    over the last axis of netx's (x, y, c) order).
    """

    current_decay: fx.Field
    voltage_decay: fx.Field
    threshold: fx.Field
    refractory_delay: int = 1
    graded_spike: bool = False

    def __post_init__(self):
        p = self.parameters()  # validates bit widths
        for name in ("current_decay", "voltage_decay", "threshold"):
            object.__setattr__(self, name, getattr(p, name))

    @property
    def per_neuron(self) -> Optional[int]:
        """Number of per-neuron values, None when the layer shares one of each."""
        return self.parameters().per_neuron

    def parameters(self) -> fx.CubaParameters:
        return fx.CubaParameters(self.current_decay, self.voltage_decay, self.threshold)


@dataclass(frozen=True)
class SigmaDeltaNeuron:
    """Sigma-delta neuron (netx type 'SDNN'): graded spikes.

    threshold: vThMant (None only for a sigma-output block, which has no
    threshold: lava-dl's ``dendrite.Sigma`` writes none); sigma_output: the block
    outputs sigma (Lava Sigma process) instead of delta spikes. The activation is
    ReLU, the one Lava's SigmaDelta process applies as netx builds it (netx ignores
    the file's ``activation``; :func:`neurodeploy.export.netx.read_netx` accepts
    only 'relu' there).
    """

    threshold: Optional[int] = None
    sigma_output: bool = False

    def __post_init__(self):
        if self.threshold is None and not self.sigma_output:
            raise ValueError("a sigma-delta neuron needs a threshold (vThMant) unless it is a "
                             "sigma output")


@dataclass(frozen=True)
class SrcNeuron(fxs.SrcParameters):
    """Spiking Recurrent Cell neurons (netx extension type 'SRC', see ``docs/src.md``):
    the integer fields of :class:`neurodeploy.fixedpoint_src.SrcParameters`, bit widths
    checked on construction. The block's ``bias`` is b_h's mantissa (13 bit, ``<< 6``
    into the Q12 pre-activation). lava-dl's netx cannot build it; the Lava adapter does."""

    def parameters(self) -> fxs.SrcParameters:
        return self


Neuron = Union[CubaNeuron, SigmaDeltaNeuron, SrcNeuron]


def _freeze(a: Optional[np.ndarray], dtype=np.int64) -> Optional[np.ndarray]:
    if a is None:
        return None
    a = np.array(a, dtype=dtype, copy=True)
    a.setflags(write=False)
    return a


def _check_per_neuron(block, where: str) -> None:
    """Per-neuron neuron fields must hold one value per entry of the block's first
    torch axis (neurons of a dense block, channels of a conv block)."""
    m = getattr(block.neuron, "per_neuron", None)
    if m is not None and m != block.shape[0]:
        raise ValueError(f"{where}: {m} per-neuron decays/thresholds for a block of shape "
                         f"{tuple(block.shape)} (need {block.shape[0]}: one per "
                         f"{'channel' if len(block.shape) == 3 else 'neuron'})")


@dataclass(frozen=True)
class Input:
    """netx 'input' block: a neuron layer fed by the network's input.

    shape: (C,) or (C, H, W); weight: the stored input scale (already x64);
    bias: optional bias mantissa per neuron.
    """

    shape: Tuple[int, ...]
    neuron: Optional[Neuron] = None
    weight: float = 64.0
    bias: Optional[np.ndarray] = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "bias", _freeze(self.bias))
        _check_per_neuron(self, "input block")

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Dense:
    """netx 'dense' (or 'dense_rec' when ``weight_rec`` is given) block.

    weight: (out, in) integer synaptic weights (8-bit, Lava's effective values)
    weight_exp: the layer's weight exponent: synaptic input is (W @ s) << weight_exp
        (negative: arithmetic right shift). netx infers it from the stored weights;
        the exporter stores integers so that it is 0.
    bias: optional (out,) bias mantissa, 13-bit signed (bias_exp 6)
    delay: optional axonal delay per output neuron, 0..62 steps (netx 'delay')
    weight_rec: optional (out, out) recurrent weights (dense_rec)
    """

    weight: np.ndarray
    neuron: Neuron
    weight_exp: int = 0
    bias: Optional[np.ndarray] = None
    delay: Optional[np.ndarray] = None
    weight_rec: Optional[np.ndarray] = None

    def __post_init__(self):
        object.__setattr__(self, "weight", _freeze(self.weight))
        object.__setattr__(self, "bias", _freeze(self.bias))
        object.__setattr__(self, "delay", _freeze(self.delay))
        object.__setattr__(self, "weight_rec", _freeze(self.weight_rec))
        if self.weight.ndim != 2:
            raise ValueError(f"dense weight must be 2-D (out, in), got shape {self.weight.shape}")
        if self.bias is not None:
            if self.bias.shape != (self.weight.shape[0],):
                raise ValueError(f"dense bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
            fx.check_range("bias mantissa", self.bias, *fx.BIAS_RANGE)
        if self.weight_rec is not None and self.weight_rec.shape != (self.weight.shape[0],) * 2:
            raise ValueError(f"dense_rec weight_rec shape {self.weight_rec.shape} must be square "
                             f"({self.weight.shape[0]}, {self.weight.shape[0]})")
        _check_per_neuron(self, "dense block")

    @property
    def shape(self) -> Tuple[int, ...]:
        return (int(self.weight.shape[0]),)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def num_neurons(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class Conv:
    """netx 'conv' block. weight: (out_ch, in_ch/groups, kH, kW) integers; shape:
    output (C, H, W) in torch order; stride/padding/dilation: (H, W)."""

    weight: np.ndarray
    neuron: Neuron
    shape: Tuple[int, ...]
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    weight_exp: int = 0
    bias: Optional[np.ndarray] = None
    delay: Optional[np.ndarray] = None

    def __post_init__(self):
        object.__setattr__(self, "weight", _freeze(self.weight))
        object.__setattr__(self, "bias", _freeze(self.bias))
        object.__setattr__(self, "delay", _freeze(self.delay))
        for name in ("shape", "stride", "padding", "dilation"):
            object.__setattr__(self, name, tuple(int(s) for s in getattr(self, name)))
        _check_per_neuron(self, "conv block")

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Flatten:
    """netx 'flatten' block: reshapes (C, H, W) to a vector (netx's x, y, c order)."""

    shape: Tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def num_neurons(self) -> int:
        return 0


Block = Union[Input, Dense, Conv, Flatten]


@dataclass(frozen=True)
class Shortcut:
    """A residual connection: synapses from the neurons of block ``source`` into the
    neurons of a later block ``target`` (indices into :attr:`Network.layers`), whose
    input current is then the sum of its own synapse's and this one's, as Lava sums
    every connection into a neuron's ``a_in``.

    weight: (out, in) integers over the flattened torch-order neurons (a dense
    shortcut), or (out_ch, in_ch, kH, kW) (a conv shortcut: identity or 1x1
    projection, with ``stride`` and ``padding``); 8-bit Loihi weights like a block's.
    delay: steps the shortcut's messages wait beyond the synapse's own one step
    (netx's 'delay' semantics, 0..62). A shortcut over ``n`` neuron layers of the
    chain needs ``n - 1`` so that the target sums the same sample step on both
    paths (:func:`aligned_delay`).
    """

    source: int
    target: int
    weight: np.ndarray
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    delay: int = 0

    def __post_init__(self):
        object.__setattr__(self, "weight", _freeze(self.weight))
        for name in ("stride", "padding"):
            object.__setattr__(self, name, tuple(int(s) for s in getattr(self, name)))
        object.__setattr__(self, "source", int(self.source))
        object.__setattr__(self, "target", int(self.target))
        object.__setattr__(self, "delay", int(self.delay))
        if self.weight.ndim not in (2, 4):
            raise ValueError(f"shortcut {self.source} -> {self.target}: weight must be (out, in) or "
                             f"(out_ch, in_ch, kH, kW), got shape {self.weight.shape}")
        if not self.source < self.target:
            raise ValueError(f"shortcut {self.source} -> {self.target}: the source block must come "
                             "before the target block")
        fx.check_range("shortcut delay", np.array([self.delay]), 0, fx.NETX_MAX_DELAY,
                       where=f"shortcut {self.source} -> {self.target}: ")

    @property
    def conv(self) -> bool:
        return self.weight.ndim == 4

    def output_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """Shape (torch order) of the shortcut's output for a source of ``in_shape``."""
        if not self.conv:
            return (int(self.weight.shape[0]),)
        _, h, w = in_shape
        kh, kw = self.weight.shape[2:]
        oh = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        return (int(self.weight.shape[0]), oh, ow)


def aligned_delay(network_layers, source: int, target: int) -> int:
    """The shortcut delay that makes ``target`` sum the same sample step on both
    paths: each synapse of the chain takes one step, so the chain's path from
    ``source`` to ``target`` takes one step per neuron block after ``source`` up to
    and including ``target``; the shortcut's own synapse takes one of them."""
    hops = sum(1 for b in network_layers[source + 1:target + 1] if holds_neurons(b))
    return hops - 1


@dataclass(frozen=True)
class Network:
    """An ordered tuple of blocks. ``input_shape`` is the shape fed to the first
    block, in torch order ((C,) or (C, H, W)). ``input_message_bits``: bits of the
    messages fed to the first synapse when the network has no input layer (netx's
    ``Network(input_message_bits=...)``, or the output message bits of the blocks
    skipped by ``read_netx(skip_layers=...)``): 0 for spikes (the synapse sees
    s != 0), > 0 for graded integer messages. Like netx's, a run-time setting: a
    ``.net`` file does not store it."""

    layers: Tuple[Block, ...]
    input_shape: Tuple[int, ...]
    name: str = "network"
    metadata: dict = field(default_factory=dict, compare=False)
    input_message_bits: int = 0
    shortcuts: Tuple[Shortcut, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "shortcuts", tuple(self.shortcuts))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if not self.layers:
            raise ValueError("a network needs at least one block")
        if not 0 <= int(self.input_message_bits) <= 32:
            raise ValueError(f"input_message_bits must lie in [0, 32], got {self.input_message_bits}")
        object.__setattr__(self, "input_message_bits", int(self.input_message_bits))
        prev = int(np.prod(self.input_shape))
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                if layer.in_features != prev:
                    raise ValueError(f"layer {i} (dense): weight has {layer.in_features} inputs "
                                     f"but the previous block has {prev} outputs")
                prev = layer.num_neurons
            elif isinstance(layer, Input):
                if i == 0 and int(np.prod(layer.shape)) != prev:
                    raise ValueError(f"layer 0 (input): shape {layer.shape} does not hold the network's "
                                     f"input shape {self.input_shape}")
                prev = layer.num_neurons
            elif isinstance(layer, Conv):
                prev = layer.num_neurons
            elif isinstance(layer, Flatten):
                pass
        if self.shortcuts:
            self._check_shortcuts()

    def _check_shortcuts(self) -> None:
        for sc in self.shortcuts:
            where = f"shortcut {sc.source} -> {sc.target}"
            for name, i in (("source", sc.source), ("target", sc.target)):
                if not 0 <= i < len(self.layers) or not holds_neurons(self.layers[i]):
                    raise ValueError(f"{where}: {name} {i} is not a block with neurons")
            src, tgt = self.layers[sc.source], self.layers[sc.target]
            if not isinstance(tgt, (Dense, Conv)) or not isinstance(tgt.neuron, CubaNeuron):
                raise ValueError(f"{where}: the target must be a dense or conv block of CUBA neurons")
            if getattr(tgt, "weight_rec", None) is not None:
                raise ValueError(f"{where}: a recurrent (dense_rec) block cannot take a shortcut")
            if not isinstance(src.neuron, CubaNeuron):
                raise ValueError(f"{where}: the source must send spikes (CUBA neurons)")
            if sc.conv:
                if len(src.shape) != 3 or len(tgt.shape) != 3:
                    raise ValueError(f"{where}: a conv shortcut joins (C, H, W) blocks, got "
                                     f"{tuple(src.shape)} -> {tuple(tgt.shape)}")
                if sc.weight.shape[1] != src.shape[0]:
                    raise ValueError(f"{where}: weight takes {sc.weight.shape[1]} channels, the "
                                     f"source has {src.shape[0]}")
                if sc.output_shape(src.shape) != tuple(tgt.shape):
                    raise ValueError(f"{where}: gives shape {sc.output_shape(src.shape)}, the "
                                     f"target has {tuple(tgt.shape)}")
            elif sc.weight.shape != (tgt.num_neurons, src.num_neurons):
                raise ValueError(f"{where}: dense weight shape {sc.weight.shape} != "
                                 f"({tgt.num_neurons}, {src.num_neurons})")

    @property
    def is_residual(self) -> bool:
        """Whether some block's neurons sum several synapses (the network is a graph)."""
        return bool(self.shortcuts)

    def chain(self) -> "Network":
        """This network without its shortcuts: the chain of blocks netx can store."""
        return replace(self, shortcuts=())

    def shortcuts_into(self, target: int) -> Tuple[Shortcut, ...]:
        return tuple(sc for sc in self.shortcuts if sc.target == target)

    @property
    def neuron_layers(self):
        """(index, block) for every block that holds neurons: all but flatten and an
        input block without neurons (a record of the input shape, as netx reads it)."""
        return [(i, b) for i, b in enumerate(self.layers) if holds_neurons(b)]

    @property
    def input_layout(self) -> str:
        """The axes of :attr:`input_shape` (torch order): 'C' or 'CHW'; the Lava
        port takes them reversed (:mod:`neurodeploy.layout`)."""
        from neurodeploy.layout import torch_layout
        return torch_layout(len(self.input_shape))

    @property
    def input_shape_netx(self) -> Tuple[int, ...]:
        """The input port's shape in netx's order (the reverse of torch order)."""
        from neurodeploy.layout import netx_shape
        return netx_shape(self.input_shape)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        last = self.neuron_layers[-1][1]
        return tuple(last.shape)

    @property
    def has_input_layer(self) -> bool:
        """Whether the first block is an input layer with neurons (netx then feeds the
        input into that layer's neurons; a neuron-less input block only records the
        input shape)."""
        return isinstance(self.layers[0], Input) and self.layers[0].neuron is not None

    def with_input_block(self) -> "Network":
        """This network with its input shape recorded as a first, neuron-less input
        block when it has no input block (what the netx writer stores, so that every
        file names its input shape)."""
        if isinstance(self.layers[0], Input):
            return self
        moved = tuple(replace(sc, source=sc.source + 1, target=sc.target + 1) for sc in self.shortcuts)
        return replace(self, layers=(Input(shape=self.input_shape),) + self.layers, shortcuts=moved)


def holds_neurons(block) -> bool:
    """Whether a block is a layer of neurons (a neuron-less input block and flatten
    are not)."""
    if isinstance(block, Flatten):
        return False
    return not (isinstance(block, Input) and block.neuron is None)
