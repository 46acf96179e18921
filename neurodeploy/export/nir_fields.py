"""What the NIR reader and writer share: the node types read, the metadata keys
neurodeploy's writer records, the float network an imported graph describes
(:class:`FloatNetwork`), and small field helpers. numpy and ``nir`` only."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

import numpy as np

from neurodeploy.errors import InputError, MissingDependencyError

#: NIR node types the importer reads
SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "CubaLIF", "LIF")
#: metadata keys the writer puts on neuron nodes
META_EXPONENT = "loihi_weight_exponent"
META_REFRACTORY = "loihi_refractory_delay"
META_GRADED = "loihi_graded_spike"
META_INPUT_WEIGHT = "loihi_input_weight"
META_INPUT_BLOCK = "loihi_input_block"
META_BIAS = "loihi_bias"  # 1: the block has a bias (an all-zero one included)
META_BIAS_PER_CHANNEL = "loihi_bias_per_channel"  # 1: a conv block's bias is one per channel
META_SHORTCUT = "loihi_shortcut"  # on a synapse node: 1, a residual shortcut (not the chain's)
#: how a CubaLIF's input enters its current: "euler" (I += (dt/tau_syn) w_in x, the
#: forward-Euler reading; snnTorch's and Norse's importers) or "jump" (I += w_in x, as
#: Norse's LIFCell computes and its exporter writes the node)
CURRENT_INPUTS = ("euler", "jump")
#: relative tolerance within which per-neuron parameters count as one value
UNIFORM_RTOL = 1e-9


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a main dependency
        raise MissingDependencyError("the 'nir' package is not installed (pip install nir)") from None
    return nir


@dataclass(frozen=True)
class FloatLayer:
    """One layer of CUBA-LIF neurons in neurodeploy's float form
    (:mod:`neurodeploy.train.neuron`)::

        u[t] = (1 - current_decay) u[t-1] + W x[t] + W_rec s[t-1]
        v[t] = (1 - voltage_decay) v[t-1] + u[t] + bias
        s[t] = v[t] > threshold;   v[t] = 0 where s[t]

    kind: 'input' (x feeds u directly, W = identity), 'dense' or 'conv'.
    weight: dense (out, in) or conv (out, in/groups, kH, kW), weight units; None for input.
    current_decay, voltage_decay: fraction lost per step (0..1; 12 bit on chip).
    threshold: in weight units (>= 0).
    Decays and threshold are one float for the layer, or an array of one per entry of
    the first torch axis (per neuron of a dense or input layer, per channel of a conv
    layer), as netx's per-neuron fields.
    bias: voltage bias, weight units, per neuron (flattened in torch order) or, for a
        conv layer, per channel (as netx stores it); None without one.
    weight_rec: (out, out) recurrent weights or None.
    shape: the layer's output shape, torch order.
    stride, padding, dilation, groups: conv geometry (H, W).
    exponent: the weight exponent recorded by neurodeploy's writer, or None.
    fields: netx fields NIR cannot hold (refractory delay, graded spike, input weight).
    """

    kind: str
    weight: Optional[np.ndarray]
    current_decay: Union[float, np.ndarray]
    voltage_decay: Union[float, np.ndarray]
    threshold: Union[float, np.ndarray]
    shape: Tuple[int, ...]
    bias: Optional[np.ndarray] = None
    weight_rec: Optional[np.ndarray] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    exponent: Optional[int] = None
    fields: dict = field(default_factory=dict, compare=False)

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class FloatFlatten:
    """Flatten of a (C, H, W) output to a vector, torch order."""

    shape: Tuple[int, ...]


@dataclass(frozen=True)
class FloatShortcut:
    """Synapses from the neurons of layer ``source`` into those of a later layer
    ``target`` (indices into :attr:`FloatNetwork.layers`), whose current they join
    (a residual shortcut, :class:`neurodeploy.network.Shortcut`). weight: dense
    (target neurons, source neurons) over flattened torch order, or a conv kernel
    (out, in, kH, kW) with ``stride`` and ``padding``; weight units, the target's
    gains folded in like its own synapse's."""

    source: int
    target: int
    weight: np.ndarray
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class FloatNetwork:
    """Layers (and flattens) in order; ``input_shape`` in torch order; residual
    shortcuts between layers."""

    layers: Tuple[Union[FloatLayer, FloatFlatten], ...]
    input_shape: Tuple[int, ...]
    name: str = "network"
    shortcuts: Tuple[FloatShortcut, ...] = ()


def _check_dt(dt) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise InputError(f"dt must be a positive number of seconds (NIR's time unit), got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f"dt must be a positive, finite time step, got {dt}")
    return dt


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor left in a graph built in memory
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _meta(node, key, default=None):
    md = getattr(node, "metadata", None) or {}
    if key not in md:
        return default
    v = md[key]
    v = v.item() if hasattr(v, "item") else v
    return v

