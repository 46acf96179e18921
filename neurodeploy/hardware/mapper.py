"""Map an integer network onto a hardware target: per-layer placement, resource
use, and (from per-layer spike counts) synaptic ops and an energy *estimate*.

Model (what is assumed, stated once):

- Each neuron-holding block (input, dense, dense_rec, conv) is placed on its own
  cores; a core holds neurons of one layer only (as Lava's compiler partitions
  processes). Flatten holds no neurons.
- Synapses are stored on the core of their postsynaptic neuron. A dense block
  stores its full (out, in) matrix: zero weights are counted as stored synapses
  (Lava's Dense hands the compiler the whole matrix; a compressed sparse encoding
  is not documented), ``nonzero_synapses`` is reported beside it. A conv block is
  counted expanded (no weight sharing), out_neurons x kernel fan-in (an upper
  bound: padding positions are counted).
- Synaptic memory of a layer = stored synapses x (the layer's weight bits +
  ``synapse_overhead_bits`` of the config). The layer's weight bits are the
  fewest bits that hold its integer weights exactly, as netx's
  ``optimize_weight_bits`` chooses ``num_weight_bits`` (weight_exp absorbs scale).
- Input axons of a core = distinct presynaptic neurons that reach it: for dense
  every presynaptic neuron (plus the layer's own for dense_rec); for conv the
  receptive field of a compact tile of output positions (all channels) held by
  the core (an estimate of a good placement).
  An input block's neurons each take one external input axon.
- Output axons of a core = neurons on it x destination cores per neuron (one
  axon per destination core): every core of a following dense layer; for a
  following conv layer the cores its kernel window reaches (estimate); for the
  last layer one per neuron (to the host).
- A residual shortcut's synapses are stored on its target's cores with the
  block's own (counted like a block's: dense full, conv expanded); its source
  neurons are more presynaptic neurons of the target.
- Cores of a layer = the fewest that satisfy neurons/core, synaptic memory/core,
  input and output axons/core. Layers are placed from the last to the first since
  output axons depend on the next layer's cores.

A network that cannot fit raises :class:`MappingError` naming the layer and the
limit, before anything is deployed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy.errors import DoesNotFitError
from neurodeploy.hardware.config import HardwareConfig
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network, SigmaDeltaNeuron, holds_neurons

ESTIMATE_LABEL = ("ESTIMATE from the hardware config's published per-operation figures, not a "
                  "measurement")


class MappingError(DoesNotFitError):
    """The network does not fit the hardware target. ``layer`` is the block index
    (None for whole-network limits), ``limit`` the config key that is exceeded."""

    def __init__(self, message: str, layer: Optional[int] = None, limit: Optional[str] = None,
                 value=None, maximum=None):
        super().__init__(message)
        self.layer, self.limit, self.value, self.maximum = layer, limit, value, maximum


# --- per-layer geometry -------------------------------------------------------
def weight_bits_needed(weight: np.ndarray) -> int:
    """Fewest weight bits that hold ``weight`` exactly given a free weight exponent:
    drop the common trailing zero bits, then count magnitude bits, plus a sign bit
    for mixed-sign layers (netx's ``optimize_weight_bits`` rule). 1 for all-zero."""
    w = np.asarray(weight, dtype=np.int64)
    nz = w[w != 0]
    if nz.size == 0:
        return 1
    tz = int(min(((int(abs(x)) & -int(abs(x))).bit_length() - 1) for x in np.unique(np.abs(nz))))
    v = nz >> tz
    if fx.sign_mode(w) == "mixed":
        return max(int(v.max()).bit_length(), int(-v.min() - 1).bit_length()) + 1
    return int(np.abs(v).max()).bit_length()


@dataclass(frozen=True)
class LayerPlacement:
    """Placement of one neuron-holding block.

    fan_in: synapses into one neuron (max); synapses: stored synapses;
    synaptic_memory_bits: synapses x (weight_bits + overhead); cores: cores used;
    neurons_per_core / synaptic_memory_bits_per_core / input_axons_per_core /
    output_axons_per_core: the most on any one of its cores; limited_by: the
    resource that set the core count.
    """

    index: int
    kind: str
    neurons: int
    fan_in: int
    synapses: int
    nonzero_synapses: int
    weight_bits: int
    synaptic_memory_bits: int
    cores: int
    neurons_per_core: int
    synaptic_memory_bits_per_core: int
    input_axons_per_core: int
    output_axons_per_core: int
    limited_by: str


@dataclass(frozen=True)
class ActivityEstimate:
    """Per-sample activity and the energy/time estimate derived from it.

    steps: time steps per inference; spikes: per block (key 'input' for the input
    stream, else the block index) spikes per sample (nonzero graded events count
    one each); synaptic_ops: synaptic events per sample (spike x fan-out);
    neuron_updates: neurons x steps per sample. Energies in picojoules and time in
    microseconds are None where the config has no published figure.
    """

    steps: int
    samples: int
    spikes: Dict[str, float]
    synaptic_ops: float
    neuron_updates: int
    synaptic_energy_pj: Optional[float]
    neuron_energy_pj: Optional[float]
    energy_pj: Optional[float]
    time_us: Optional[float]
    label: str = ESTIMATE_LABEL
    notes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class MappingReport:
    """Result of :func:`map_network`."""

    network: str
    hardware: str
    layers: Tuple[LayerPlacement, ...]
    total_cores: int
    chips_used: int
    chips_available: int
    cores_available: int
    neurons: int
    synapses: int
    synaptic_memory_bits: int
    neuron_utilisation: float  # neurons / (cores used x neurons per core)
    synaptic_memory_utilisation: Optional[float]  # memory used / (cores used x memory per core)
    core_utilisation: float  # cores used / cores available
    activity: Optional[ActivityEstimate] = None
    notes: Tuple[str, ...] = ()

    def with_activity(self, activity: ActivityEstimate) -> "MappingReport":
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["activity"] = activity
        return MappingReport(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(p) for p in self.layers]
        d["notes"] = list(self.notes)
        if self.activity is not None:
            d["activity"]["notes"] = list(self.activity.notes)
        return d

    def table(self) -> str:
        """A plain-text table of the placement and totals."""
        head = ("layer", "kind", "neurons", "fan-in", "synapses", "w bits", "syn mem KiB",
                "cores", "neur/core", "in ax/core", "out ax/core", "limited by")
        rows = [head]
        for p in self.layers:
            rows.append((str(p.index), p.kind, str(p.neurons), str(p.fan_in), str(p.synapses),
                         str(p.weight_bits), f"{p.synaptic_memory_bits / 8192:.1f}", str(p.cores),
                         str(p.neurons_per_core), str(p.input_axons_per_core),
                         str(p.output_axons_per_core), p.limited_by))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        mem = ("n/a (no published synaptic memory size)" if self.synaptic_memory_utilisation is None
               else f"{100 * self.synaptic_memory_utilisation:.1f}%")
        lines += [
            "",
            f"hardware: {self.hardware}   network: {self.network}",
            f"cores: {self.total_cores} of {self.cores_available} "
            f"({100 * self.core_utilisation:.2f}%), chips used: {self.chips_used} of {self.chips_available}",
            f"neurons: {self.neurons} (utilisation of used cores {100 * self.neuron_utilisation:.1f}%)",
            f"synapses: {self.synapses}, synaptic memory {self.synaptic_memory_bits / 8192:.1f} KiB "
            f"(utilisation of used cores {mem})",
        ]
        a = self.activity
        if a is not None:
            lines += [
                "",
                f"per inference ({a.steps} time steps, mean over {a.samples} samples) - {a.label}:",
                f"  synaptic ops: {a.synaptic_ops:.4g}   neuron updates: {a.neuron_updates}",
                "  energy: " + ("n/a (no published per-op energy for this target)" if a.energy_pj is None
                                else f"{a.energy_pj / 1e3:.4g} nJ (synaptic {a.synaptic_energy_pj / 1e3:.4g} nJ"
                                     f" + neuron {a.neuron_energy_pj / 1e3:.4g} nJ)"),
                "  time: " + ("n/a (no published time per step for this target)" if a.time_us is None
                              else f"{a.time_us:.4g} us"),
            ]
        for n in self.notes + (a.notes if a is not None else ()):
            lines.append(f"note: {n}")
        return "\n".join(lines)


def _block_kind(layer) -> str:
    if isinstance(layer, Dense):
        return "dense_rec" if layer.weight_rec is not None else "dense"
    return type(layer).__name__.lower()


@dataclass
class _Geometry:
    index: int
    kind: str
    neurons: int
    fan_in: int
    synapses: int
    nonzero: int
    presynaptic: int  # distinct presynaptic neurons reaching the layer
    weight_bits: int
    conv: bool
    fan_out_in: np.ndarray = field(default=None)  # stored synapses per presynaptic neuron
    layer: object = None
    in_shape: Tuple[int, ...] = ()


def _conv_fan_in(layer: Conv) -> int:
    return int(layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3])


def layer_geometry(network: Network, count_zero_weights: bool) -> List[_Geometry]:
    """What each neuron-holding block needs (neurons, fan-in, stored synapses, presynaptic
    neurons, weight bits, stored synapses per presynaptic neuron), shortcuts included."""
    out: List[_Geometry] = []
    prev = int(np.prod(network.input_shape))
    prev_shape = tuple(network.input_shape)
    for i, layer in enumerate(network.layers):
        kind = _block_kind(layer)
        if isinstance(layer, Flatten):
            prev_shape = (prev,)
            continue
        if not holds_neurons(layer):  # a neuron-less input block records the input shape only
            continue
        if isinstance(layer, Input):
            n = layer.num_neurons
            g = _Geometry(i, kind, n, 1, 0, 0, n, 1, False, np.zeros(prev))
        elif isinstance(layer, Dense):
            n, w = layer.num_neurons, layer.weight
            mats = [w] + ([layer.weight_rec] if layer.weight_rec is not None else [])
            stored = sum(m.size for m in mats) if count_zero_weights else sum(int(np.count_nonzero(m)) for m in mats)
            nonzero = sum(int(np.count_nonzero(m)) for m in mats)
            per_pre = (np.full(w.shape[1], w.shape[0], dtype=np.int64) if count_zero_weights
                       else np.count_nonzero(w, axis=0))
            bits = max(weight_bits_needed(m) for m in mats)
            g = _Geometry(i, kind, n, sum(m.shape[1] for m in mats), stored, nonzero,
                          sum(m.shape[1] for m in mats), bits, False, per_pre)
        elif isinstance(layer, Conv):
            n = layer.num_neurons
            k = _conv_fan_in(layer)
            positions = int(np.prod(layer.shape[1:])) if len(layer.shape) > 1 else 1
            stored_kernel = layer.weight.size if count_zero_weights else int(np.count_nonzero(layer.weight))
            stored = stored_kernel * positions
            nonzero = int(np.count_nonzero(layer.weight)) * positions
            per_pre = np.full(prev, stored / max(prev, 1))
            g = _Geometry(i, kind, n, k, stored, nonzero, prev, weight_bits_needed(layer.weight),
                          True, per_pre)
        else:  # pragma: no cover - Network admits only the block types above
            raise TypeError(f"layer {i}: cannot map block {type(layer).__name__}")
        g.layer, g.in_shape = layer, prev_shape
        for sc in network.shortcuts_into(i):
            _add_shortcut(g, network, sc, count_zero_weights)
        out.append(g)
        prev = g.neurons
        prev_shape = tuple(layer.shape)
    return out


def shortcut_synapses(network: Network, sc, count_zero_weights: bool = True) -> Tuple[int, int, np.ndarray]:
    """(stored synapses, nonzero synapses, stored synapses per source neuron) of a
    residual shortcut: a dense one as a full matrix (or its nonzeros), a conv one
    expanded over the target's positions, as a block's synapses are counted."""
    src, tgt = network.layers[sc.source], network.layers[sc.target]
    if sc.conv:
        positions = int(np.prod(tgt.shape[1:]))
        kernel = sc.weight.size if count_zero_weights else int(np.count_nonzero(sc.weight))
        stored, nonzero = kernel * positions, int(np.count_nonzero(sc.weight)) * positions
        return stored, nonzero, np.full(src.num_neurons, stored / max(src.num_neurons, 1))
    stored = sc.weight.size if count_zero_weights else int(np.count_nonzero(sc.weight))
    per_src = (np.full(sc.weight.shape[1], sc.weight.shape[0], dtype=np.float64) if count_zero_weights
               else np.count_nonzero(sc.weight, axis=0).astype(np.float64))
    return stored, int(np.count_nonzero(sc.weight)), per_src


def _add_shortcut(g: _Geometry, network: Network, sc, count_zero_weights: bool) -> None:
    """A residual shortcut's synapses live on its target's cores with the block's own:
    more fan-in, stored synapses and presynaptic neurons (its source's)."""
    stored, nonzero, _ = shortcut_synapses(network, sc, count_zero_weights)
    g.fan_in += int(np.prod(sc.weight.shape[1:]))
    g.synapses += stored
    g.nonzero += nonzero
    g.presynaptic += network.layers[sc.source].num_neurons
    g.weight_bits = max(g.weight_bits, weight_bits_needed(sc.weight))
    g.kind = f"{g.kind}+shortcut"


def _conv_tile(layer: Conv, neurons_on_core: int) -> Tuple[int, int, int]:
    """(channels, rows, cols) of output neurons on one core, assuming the compiler
    packs all output channels of a compact spatial tile together."""
    c_out = layer.shape[0]
    h, w = (layer.shape[1], layer.shape[2]) if len(layer.shape) == 3 else (1, 1)
    channels = min(neurons_on_core, c_out)
    positions = max(1, _ceil_div(neurons_on_core, c_out))
    rows = min(h, int(math.ceil(math.sqrt(positions))))
    cols = min(w, _ceil_div(positions, rows))
    return channels, rows, cols


def conv_input_axons(layer: Conv, in_shape: Tuple[int, ...], neurons_on_core: int) -> int:
    """Estimated distinct presynaptic neurons reaching one core of a conv layer
    holding ``neurons_on_core`` neurons: the receptive field of a compact output
    tile (all channels of a spatial tile), capped at the presynaptic layer size."""
    c_in = in_shape[0]
    h_in, w_in = (in_shape[1], in_shape[2]) if len(in_shape) == 3 else (1, 1)
    channels, rows, cols = _conv_tile(layer, neurons_on_core)
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    kh, kw = layer.weight.shape[2], layer.weight.shape[3]
    field_rows = min(h_in, (rows - 1) * sh + dh * (kh - 1) + 1)
    field_cols = min(w_in, (cols - 1) * sw + dw * (kw - 1) + 1)
    per_group_out = max(1, layer.shape[0] // layer.groups)
    groups_hit = min(layer.groups, _ceil_div(channels, per_group_out))
    in_channels = min(c_in, groups_hit * (c_in // layer.groups))
    return int(min(int(np.prod(in_shape)), field_rows * field_cols * in_channels))


def _conv_destinations(layer: Conv, cores: int) -> int:
    """Estimated cores of a conv layer one presynaptic neuron projects to: the
    output positions its kernel window covers (all channels), spread over cores
    holding ``neurons / cores`` neurons each, plus one for a tile boundary."""
    kh, kw = layer.weight.shape[2], layer.weight.shape[3]
    (sh, sw) = layer.stride
    reached = _ceil_div(kh, sh) * _ceil_div(kw, sw) * (layer.shape[0] // layer.groups)
    per_core = _ceil_div(layer.num_neurons, cores)
    return int(min(cores, _ceil_div(reached, per_core) + 1))


# --- checks -------------------------------------------------------------------
def check_bit_widths(network: Network, hw: HardwareConfig) -> None:
    """Raise :class:`MappingError` for the first parameter beyond the target's bit
    widths (weights, bias mantissa, threshold, delays, graded spikes, state)."""
    if hw.state_bits < fx.STATE_BITS:
        raise MappingError(f"{hw.name}: neuron state is {hw.state_bits} bit ('state_bits'), but the "
                           f"network's CUBA state is {fx.STATE_BITS} bit", None, "state_bits",
                           fx.STATE_BITS, hw.state_bits)
    bias_lo, bias_hi = -(1 << (hw.bias_mantissa_bits - 1)), (1 << (hw.bias_mantissa_bits - 1)) - 1
    th_hi = (1 << hw.threshold_bits) - 1
    for i, layer in enumerate(network.layers):
        kind = _block_kind(layer)
        where = f"layer {i} ({kind})"
        mats = []
        if isinstance(layer, Dense):
            mats = [("weight", layer.weight)] + ([("weight_rec", layer.weight_rec)]
                                                 if layer.weight_rec is not None else [])
        elif isinstance(layer, Conv):
            mats = [("weight", layer.weight)]
        for name, w in mats:
            eff = fx.effective_weights(w)
            if not np.array_equal(eff, w):
                bad = tuple(int(v) for v in np.argwhere(eff != w)[0])
                raise MappingError(f"{where}: {name}{list(bad)} = {w[bad]} is not an 8-bit Loihi weight "
                                   f"(Lava's Dense would use {eff[bad]})", i, "weight_bits", int(w[bad]), 8)
            need = weight_bits_needed(w)
            if need > hw.weight_bits:
                raise MappingError(f"{where}: {name} needs {need} weight bits, {hw.name} has "
                                   f"{hw.weight_bits} ('weight_bits')", i, "weight_bits", need, hw.weight_bits)
        bias = getattr(layer, "bias", None)
        if bias is not None and bias.size and (bias.min() < bias_lo or bias.max() > bias_hi):
            v = int(bias.min() if bias.min() < bias_lo else bias.max())
            raise MappingError(f"{where}: bias mantissa {v} is outside {hw.name}'s "
                               f"{hw.bias_mantissa_bits}-bit signed range [{bias_lo}, {bias_hi}] "
                               "('bias_mantissa_bits')", i, "bias_mantissa_bits", v, bias_hi)
        neuron = getattr(layer, "neuron", None)
        th = getattr(neuron, "threshold", None)
        if isinstance(th, tuple):  # per-neuron thresholds: the one furthest out
            th = min(th) if min(th) < 0 else max(th)
        if th is not None and not 0 <= int(th) <= th_hi:
            raise MappingError(f"{where}: threshold {th} is outside {hw.name}'s {hw.threshold_bits}-bit "
                               f"unsigned range [0, {th_hi}] ('threshold_bits')", i, "threshold_bits",
                               int(th), th_hi)
        graded = isinstance(neuron, SigmaDeltaNeuron) or (isinstance(neuron, CubaNeuron) and neuron.graded_spike)
        if graded and hw.spike_payload_bits <= 1:
            raise MappingError(f"{where}: graded spikes need a spike payload, {hw.name} has binary "
                               f"spikes only ('spike_payload_bits' = {hw.spike_payload_bits})", i,
                               "spike_payload_bits", 2, hw.spike_payload_bits)
        delay = getattr(layer, "delay", None)
        if delay is not None and delay.size and (delay.min() < 0 or delay.max() > hw.max_delay_steps):
            v = int(delay.max() if delay.max() > hw.max_delay_steps else delay.min())
            raise MappingError(f"{where}: delay {v} steps is outside {hw.name}'s range "
                               f"[0, {hw.max_delay_steps}] ('max_delay_steps')", i, "max_delay_steps",
                               v, hw.max_delay_steps)


def _input_axons(network: Network, g: _Geometry, neurons_on_core: int) -> int:
    """Estimated input axons of one core of a conv layer: its kernel's receptive
    field (:func:`conv_input_axons`), plus each residual shortcut's (a conv
    shortcut's receptive field of the same tile, a dense one's every source neuron)."""
    axons = conv_input_axons(g.layer, g.in_shape, neurons_on_core)
    for sc in network.shortcuts_into(g.index):
        src = network.layers[sc.source]
        if sc.conv:
            view = Conv(weight=sc.weight, neuron=g.layer.neuron, shape=g.layer.shape, stride=sc.stride,
                        padding=sc.padding)
            axons += conv_input_axons(view, tuple(src.shape), neurons_on_core)
        else:
            axons += src.num_neurons
    return axons


def _ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b))


def _synaptic_memory_cores(g: _Geometry, hw: HardwareConfig, where: str) -> int:
    """Cores a layer's stored synapses need; MappingError when one neuron's do not fit a core."""
    mem_core, bits = hw.synaptic_memory_bits_per_core, g.weight_bits + hw.synapse_overhead_bits
    one = g.fan_in * bits
    if one > mem_core:
        raise MappingError(f"{where}: one neuron's {g.fan_in} synapses x {bits} bits = {one} "
                           f"bits exceed {hw.name}'s synaptic memory per core ({mem_core} bits, "
                           "'synaptic_memory_kib_per_core')", g.index, "synaptic_memory_kib_per_core",
                           one, mem_core)
    return _ceil_div(g.synapses * bits, mem_core)


def _input_axon_cores(network: Network, g: _Geometry, hw: HardwareConfig, where: str) -> Optional[int]:
    """Cores an input or conv layer needs for its input axons (None for a dense layer:
    every core receives every presynaptic neuron); MappingError when one neuron's axons
    do not fit a core."""
    limit = hw.input_axons_per_core
    if g.kind == "input":
        return _ceil_div(g.neurons, limit)
    if g.conv:
        if _input_axons(network, g, 1) > limit:
            raise MappingError(f"{where}: fan-in {g.fan_in} exceeds {hw.name}'s {limit} input "
                               "axons per core ('input_axons_per_core')", g.index,
                               "input_axons_per_core", g.fan_in, limit)
        c = 1
        while _input_axons(network, g, _ceil_div(g.neurons, c)) > limit:
            c = min(g.neurons, max(c + 1, int(c * 1.25)))
        return c
    if g.presynaptic > limit:
        raise MappingError(f"{where}: fan-in {g.presynaptic} presynaptic neurons exceeds {hw.name}'s "
                           f"{limit} input axons per core ('input_axons_per_core'); "
                           "every core of a dense layer receives every presynaptic neuron",
                           g.index, "input_axons_per_core", g.presynaptic, limit)
    return None


def _place_layer(network: Network, hw: HardwareConfig, g: _Geometry, following: Optional[_Geometry],
                 next_cores: Optional[int]) -> LayerPlacement:
    """The fewest cores that hold layer ``g``'s neurons, synapses and axons, given the cores
    of the layer it projects to (``following``, ``next_cores``; None: output to the host)."""
    where = f"layer {g.index} ({g.kind})"
    syn_bits = g.weight_bits + hw.synapse_overhead_bits
    need: Dict[str, int] = {"neurons": _ceil_div(g.neurons, hw.neurons_per_core)}
    if hw.synaptic_memory_bits_per_core is not None and g.synapses:
        need["synaptic memory"] = _synaptic_memory_cores(g, hw, where)
    if hw.input_axons_per_core is not None:
        cores = _input_axon_cores(network, g, hw, where)
        if cores is not None:
            need["input axons"] = cores
    dest = 1 if next_cores is None else (
        _conv_destinations(following.layer, next_cores) if following.conv else next_cores)
    if hw.output_axons_per_core is not None:
        if dest > hw.output_axons_per_core:
            raise MappingError(f"{where}: each neuron projects to {dest} cores, more than {hw.name}'s "
                               f"{hw.output_axons_per_core} output axons per core "
                               "('output_axons_per_core')", g.index, "output_axons_per_core",
                               dest, hw.output_axons_per_core)
        need["output axons"] = _ceil_div(g.neurons * dest, hw.output_axons_per_core)
    limited_by = max(need, key=lambda k: need[k])
    cores = max(1, need[limited_by])
    per_core = _ceil_div(g.neurons, cores)
    in_ax = per_core if g.kind == "input" else (
        _input_axons(network, g, per_core) if g.conv else g.presynaptic)
    return LayerPlacement(
        index=g.index, kind=g.kind, neurons=g.neurons, fan_in=g.fan_in, synapses=g.synapses,
        nonzero_synapses=g.nonzero, weight_bits=g.weight_bits,
        synaptic_memory_bits=g.synapses * syn_bits if g.synapses else 0, cores=cores,
        neurons_per_core=per_core,
        synaptic_memory_bits_per_core=_ceil_div(g.synapses * syn_bits, cores) if g.synapses else 0,
        input_axons_per_core=in_ax, output_axons_per_core=per_core * dest, limited_by=limited_by)


def _check_totals(network: Network, hw: HardwareConfig, layers: Tuple[LayerPlacement, ...]) -> None:
    """MappingError when the whole network needs more cores, neurons or synapses than the
    target has."""
    total_cores = sum(p.cores for p in layers)
    if total_cores > hw.cores:
        worst = max(layers, key=lambda p: p.cores)
        raise MappingError(f"{network.name}: needs {total_cores} cores, {hw.name} has {hw.cores} "
                           f"({hw.chips} chip(s) x {hw.cores_per_chip} cores, 'chips'/'cores_per_chip'); "
                           f"largest: layer {worst.index} ({worst.kind}) with {worst.cores} cores",
                           worst.index, "cores_per_chip", total_cores, hw.cores)
    neurons = sum(p.neurons for p in layers)
    synapses = sum(p.synapses for p in layers)
    if hw.neurons_per_chip is not None and neurons > hw.neurons_per_chip * hw.chips:
        raise MappingError(f"{network.name}: {neurons} neurons exceed {hw.name}'s "
                           f"{hw.neurons_per_chip * hw.chips} ('neurons_per_chip' x chips)", None,
                           "neurons_per_chip", neurons, hw.neurons_per_chip * hw.chips)
    if hw.synapses_per_chip is not None and synapses > hw.synapses_per_chip * hw.chips:
        worst = max(layers, key=lambda p: p.synapses)
        raise MappingError(f"{network.name}: {synapses} synapses exceed {hw.name}'s "
                           f"{hw.synapses_per_chip * hw.chips} ('synapses_per_chip' x chips); largest: "
                           f"layer {worst.index} ({worst.kind}) with {worst.synapses}", worst.index,
                           "synapses_per_chip", synapses, hw.synapses_per_chip * hw.chips)


def _mapping_notes(hw: HardwareConfig, count_zero_weights: bool,
                   layers: Tuple[LayerPlacement, ...]) -> Tuple[str, ...]:
    """What the report's figures assume or leave out for this target."""
    notes = []
    if hw.input_axons_per_core is None or hw.output_axons_per_core is None:
        notes.append(f"{hw.name}: axon limits per core are not published; axon checks skipped")
    if hw.synaptic_memory_kib_per_core is None:
        notes.append(f"{hw.name}: synaptic memory per core is not published; memory check skipped")
    if count_zero_weights:
        notes.append("dense synapses counted as full matrices (zero weights included)")
    if any(p.kind == "conv" for p in layers):
        notes.append("conv synapses counted expanded (no weight sharing), an upper bound")
    return tuple(notes)


def map_network(network: Network, hw: HardwareConfig, count_zero_weights: bool = True) -> MappingReport:
    """Place ``network`` on ``hw``; raise :class:`MappingError` if it does not fit.

    count_zero_weights: count every entry of a dense matrix as a stored synapse
    (default; see the module docstring) or only nonzero weights.
    """
    check_bit_widths(network, hw)
    geo = layer_geometry(network, count_zero_weights)
    placements: List[Optional[LayerPlacement]] = [None] * len(geo)
    next_cores = None  # cores of the following layer (None: output to the host)
    for j in range(len(geo) - 1, -1, -1):   # output axons depend on the next layer's cores
        following = geo[j + 1] if j + 1 < len(geo) else None
        placements[j] = _place_layer(network, hw, geo[j], following, next_cores)
        next_cores = placements[j].cores
    layers = tuple(placements)
    _check_totals(network, hw, layers)
    total_cores = sum(p.cores for p in layers)
    neurons = sum(p.neurons for p in layers)
    mem_bits = sum(p.synaptic_memory_bits for p in layers)
    mem_core = hw.synaptic_memory_bits_per_core
    return MappingReport(
        network=network.name, hardware=hw.name, layers=layers, total_cores=total_cores,
        chips_used=_ceil_div(total_cores, hw.cores_per_chip), chips_available=hw.chips,
        cores_available=hw.cores, neurons=neurons, synapses=sum(p.synapses for p in layers),
        synaptic_memory_bits=mem_bits,
        neuron_utilisation=neurons / (total_cores * hw.neurons_per_core),
        synaptic_memory_utilisation=None if mem_core is None else mem_bits / (total_cores * mem_core),
        core_utilisation=total_cores / hw.cores, notes=_mapping_notes(hw, count_zero_weights, layers))
