"""The simulator's semantics, stated once: a netx network on Lava's timeline, one step
at a time, in plain int64 tensors.

This module is the reference that :func:`neurodeploy.sim.simulator.simulate` (the fast
path: chunked products, compiled loops, byte transposes) is held to bit for bit by the
test suite; both reproduce what lava-dl's netx builds from a ``.net`` file and Lava's
fixed-point process models run (``Loihi2SimCfg(select_tag='fixed_pt')``). All
arithmetic is the one integer step of each neuron kind in
:mod:`neurodeploy.fixedpoint` (``cuba_step``, ``sigma_delta_step``,
``delta_input_step``; ``fixedpoint_src.src_step``) and its synapse rules.

Timeline (Lava steps t = 1, 2, ...; index k = t - 1 here), for k = 0 .. steps - 1:

1. the source sends ``x[k % T]`` (a RingBuffer repeats its input cyclically);
2. every neuron layer, in the file's order:

   a. synaptic input ``a[k]``: an input layer (netx's ``input`` block with neurons)
      takes ``x[k % T]`` itself in its ``a_in``; any other layer sums its synapses,
      each of which delivers at step k what its source sent at step ``k - 1 - d``
      (one step through the synapse, plus an axonal delay d; nothing before the run
      began). The first synapse of a file without an input layer reads the source
      (``net.inp``); a dense_rec block also reads its own previous messages through
      ``W_rec``; a residual network adds its shortcuts' synapses;
   b. reset: with ``reset_interval`` R, the i-th neuron layer (0-based, input layer
      included) of CUBA or SRC neurons returns to its initial state when
      ``(k + 1) % R == (reset_offset + 1 + i) % R`` (netx's LIFReset offsets);
      sigma-delta layers are never reset;
   c. the neurons' integer step: ``s[k], state = step(a[k], state)``.

What a synapse sees and sums (:func:`synapse_input`):

- messages of 0 bits (CUBA spikes; ``net.inp`` unless the network says its input
  has message bits) as ``s != 0``; graded messages (sigma-delta, graded SRC) as
  the integers;
- dense weights as netx builds them (:func:`neurodeploy.fixedpoint.netx_dense_weights`:
  Lava's 8-bit weights and the exponent netx infers), ``(W @ s) << exp`` (floor
  shift for exp < 0); on graded messages the product wraps to int32 before the
  shift (Lava's numpy int32 Dense), and with delays each delay's products wrap to
  int32, their sum is shifted in int64 and the delays' total wraps to int32
  (Lava's DelayDense);
- conv weights as stored, the exact sum wrapped to 24 bits (Lava's Conv);
- neurons of a conv layer in torch order (C, H, W); per-channel biases and
  per-neuron decays or thresholds spread over each channel's neurons.

Arrays in and out use netx's port order (``(x, y, c)``, the reverse of torch order),
batch first, time last, as :func:`neurodeploy.sim.simulator.simulate` takes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy import fixedpoint_src as fxs
from neurodeploy.layout import netx_shape
from neurodeploy.network import (
    Conv,
    CubaNeuron,
    Dense,
    Flatten,
    Input,
    Network,
    SigmaDeltaNeuron,
    SrcNeuron,
)
from neurodeploy.sim import src
from neurodeploy.sim.samples import reset_phase

#: the input (``net.inp``) as a message source, beside the layers 0, 1, ...
NETWORK_INPUT = -1


@dataclass
class SimResult:
    """spikes: the output layer, (batch, *out_shape, steps) in netx order (int32;
    graded for sigma-delta layers); records: per-layer arrays ``u/<i>``,
    ``v/<i>``, ``s/<i>`` (``sigma/<i>`` for sigma-delta; ``i``, ``h``, ``hs`` for
    SRC) of shape (batch, *layer_shape, steps) when recording; i is the block's index
    in the file's ``layer/`` group."""

    spikes: np.ndarray
    records: Dict[str, np.ndarray] = field(default_factory=dict)


# --- synapses as netx builds them -------------------------------------------
@dataclass(frozen=True)
class SynapseWeights:
    """The integers of one synapse as Lava's process holds them: ``weight`` int64
    (out, in) or (out, in / groups, kH, kW); synaptic input ``(W @ x) << exponent``
    (floor shift when negative); ``delays`` (out, in) axonal delay per weight, or None."""

    weight: np.ndarray
    exponent: int = 0
    delays: Optional[np.ndarray] = None


def _where(index, block) -> str:
    return f"layer {index} ({'conv' if isinstance(block, Conv) else 'dense'})"


def block_weights(index, block) -> SynapseWeights:
    """A dense or conv block's synapse as netx builds it: conv weights as stored
    (exponent 0, no delays); dense weights through netx's weight-bit optimisation
    with per-output or per-input delays spread over the weight matrix."""
    where = _where(index, block)
    if isinstance(block, Conv):
        if block.delay is not None and np.any(block.delay):
            raise NotImplementedError(f"{where}: conv delays are not built by netx")
        return SynapseWeights(np.array(block.weight, dtype=np.int64))
    try:
        w, exp = fx.netx_dense_weights(block.weight)
    except fx.BitWidthError as e:
        raise fx.BitWidthError(f"{where}: weight: {e}") from None
    if block.delay is None:
        return SynapseWeights(w, exp)
    d = np.asarray(block.delay, dtype=np.int64).reshape(-1)
    fx.check_range("delay", d, 0, fx.NETX_MAX_DELAY, where=f"{where}: ")
    if d.size == w.shape[0]:
        return SynapseWeights(w, exp, np.repeat(d[:, None], w.shape[1], 1))
    if d.size == w.shape[1]:
        return SynapseWeights(w, exp, np.repeat(d[None, :], w.shape[0], 0))
    raise ValueError(f"{where}: delay of shape {d.shape} fits neither "
                     f"{w.shape[0]} outputs nor {w.shape[1]} inputs")


def recurrent_block_weights(index, block) -> Tuple[SynapseWeights, SynapseWeights]:
    """A dense_rec block's forward and recurrent synapses: netx optimises the weight
    bits of ``[weight, weight_rec]`` together, so both share one exponent."""
    both = np.hstack([block.weight, block.weight_rec])
    try:
        w, exp = fx.netx_dense_weights(both)
    except fx.BitWidthError as e:
        raise fx.BitWidthError(f"{_where(index, block)}: weight: {e}") from None
    k = block.in_features
    return SynapseWeights(w[:, :k], exp), SynapseWeights(w[:, k:], exp)


def neuron_bias(block, shape) -> Optional[np.ndarray]:
    """A block's bias mantissa per neuron in torch order (one per neuron, one per
    channel of a (C, H, W) layer, or one for all), or None."""
    b = getattr(block, "bias", None)
    if b is None:
        return None
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    n = int(np.prod(shape))
    if b.size == n:
        return b
    if len(shape) == 3 and b.size == shape[0]:  # channel-wise (netx broadcast)
        return np.repeat(b, shape[1] * shape[2])
    if b.size == 1:
        return np.full(n, b[0])
    raise ValueError(f"bias of {b.size} values fits neither {n} neurons nor {shape[0]} channels")


def sends_graded(neuron) -> bool:
    """Whether a layer's messages are graded integers (else spikes, seen as s != 0)."""
    if isinstance(neuron, SrcNeuron):
        return src.sends_graded(neuron)
    return isinstance(neuron, SigmaDeltaNeuron)


# --- the planned network ------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """A synapse into a layer: from ``source`` (a layer's position, or NETWORK_INPUT),
    whose messages have torch-order ``in_shape``; ``conv``: (stride, padding,
    dilation, groups) of a conv synapse, None for dense; ``delay``: steps beyond the
    synapse's own one added to every weight's delay (a shortcut's)."""

    source: int
    weights: SynapseWeights
    graded: bool
    in_shape: Tuple[int, ...]
    conv: Optional[tuple] = None
    delay: int = 0


@dataclass(frozen=True)
class Layer:
    """A neuron layer: block ``index`` of the file, its neurons (``parameters`` and
    ``bias`` in torch order) and the connections summed into its ``a_in``."""

    index: int
    neuron: object
    shape: Tuple[int, ...]
    connections: Tuple[Connection, ...]
    recurrent: Optional[Connection]
    bias: Optional[torch.Tensor]
    parameters: object
    is_input: bool = False


def _torch_order_parameters(neuron, shape):
    """A neuron's parameters with per-neuron (per-channel) fields spread to one value
    per neuron in torch order (None for sigma-delta neurons: their threshold is one value)."""
    if isinstance(neuron, SigmaDeltaNeuron):
        return None
    p = neuron.parameters()
    if not isinstance(neuron, CubaNeuron) or p.per_neuron is None:
        return p
    repeat = int(np.prod(shape)) // p.per_neuron

    def spread(f):
        return tuple(int(v) for v in np.repeat(fx.field_array(f), repeat)) if isinstance(f, tuple) else f
    return fx.CubaParameters(spread(p.current_decay), spread(p.voltage_decay), spread(p.threshold))


def _block_connections(i: int, block, position: int, shape, graded: bool):
    """A dense or conv block's synapse reading messages of torch-order ``shape`` from
    the layer before it (or the input), and the recurrent synapse of a dense_rec block
    reading the block's own messages; ``position``: the block's layer position."""
    source = position - 1 if position > 0 else NETWORK_INPUT
    if isinstance(block, Conv):
        geometry = (block.stride, block.padding, block.dilation, block.groups)
        return Connection(source, block_weights(i, block), graded, shape, geometry), None
    in_shape = (int(np.prod(shape)),)
    if block.in_features != in_shape[0]:
        raise ValueError(f"layer {i} (dense): {block.in_features} inputs, previous block gives {in_shape[0]}")
    if block.weight_rec is None:
        return Connection(source, block_weights(i, block), graded, in_shape), None
    if block.delay is not None:
        raise NotImplementedError(f"layer {i} (dense_rec): recurrent blocks with delays are not supported")
    forward, recurrent = recurrent_block_weights(i, block)
    return (Connection(source, forward, graded, in_shape),
            Connection(position, recurrent, sends_graded(block.neuron), block.shape))


def plan(network: Network, input_bias=None) -> Tuple[List[Layer], Tuple[int, ...]]:
    """The network's neuron layers and the torch-order shape of one input frame."""
    layers: List[Layer] = []
    shape, feed_shape = tuple(network.input_shape), None
    graded = network.input_message_bits > 0
    for i, block in enumerate(network.layers):
        if isinstance(block, Flatten):
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(block, Input):
            shape = tuple(block.shape)
            if block.neuron is None:
                continue
            bias = None
            if input_bias is not None:  # netx order, or one value for all
                b = np.broadcast_to(np.asarray(input_bias, np.int64).reshape(-1)[0], netx_shape(shape)) \
                    if np.size(input_bias) == 1 else np.asarray(input_bias, np.int64).reshape(netx_shape(shape))
                bias = b.transpose(*range(b.ndim)[::-1]).reshape(-1)
            layers.append(Layer(i, block.neuron, shape, (), None, _tensor(bias),
                                _torch_order_parameters(block.neuron, shape), is_input=True))
            feed_shape = shape
        elif isinstance(block, (Dense, Conv)):
            conn, rec = _block_connections(i, block, len(layers), shape, graded)
            feed_shape = conn.in_shape if feed_shape is None else feed_shape
            shape = tuple(block.shape)
            layers.append(Layer(i, block.neuron, shape, (conn,), rec, _tensor(neuron_bias(block, shape)),
                                _torch_order_parameters(block.neuron, shape)))
        else:
            raise NotImplementedError(f"layer {i}: {type(block).__name__} blocks are not simulated")
        graded = sends_graded(block.neuron)
    return _with_shortcuts(network, layers), feed_shape


def _with_shortcuts(network: Network, layers: List[Layer]) -> List[Layer]:
    """Each shortcut as one more binary connection into its target layer."""
    position = {layer.index: k for k, layer in enumerate(layers)}
    for sc in network.shortcuts:
        src, k = layers[position[sc.source]], position[sc.target]
        if sc.conv:
            conn = Connection(position[sc.source], SynapseWeights(np.array(sc.weight, np.int64)), False,
                              src.shape, (sc.stride, sc.padding, (1, 1), 1), sc.delay)
        else:
            w, exp = fx.netx_dense_weights(sc.weight)
            conn = Connection(position[sc.source], SynapseWeights(w, exp), False,
                              (int(np.prod(src.shape)),), None, sc.delay)
        tgt = layers[k]
        layers[k] = Layer(tgt.index, tgt.neuron, tgt.shape, tgt.connections + (conn,), tgt.recurrent,
                          tgt.bias, tgt.parameters)
    return layers


def _tensor(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    return None if a is None else torch.tensor(np.asarray(a), dtype=torch.int64)


# --- synapses: one step -------------------------------------------------------
def conv_exact(x: torch.Tensor, w: torch.Tensor, geometry) -> torch.Tensor:
    """The exact integer convolution x (B, C, H, W) int64 by w (O, C / g, kH, kW)
    -> (B, O, H', W') int64: one product per kernel offset, summed."""
    (sh, sw), (ph, pw), (dh, dw), groups = geometry
    b, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xg = torch.nn.functional.pad(x, (pw, pw, ph, ph)).reshape(b, groups, cg, h + 2 * ph, wd + 2 * pw)
    wg = w.reshape(groups, o // groups, cg, kh, kw)
    out = torch.zeros((b, groups, o // groups, oh, ow), dtype=torch.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xg[..., i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            out += torch.einsum("bgchw,goc->bgohw", patch, wg[..., i, j])
    return out.reshape(b, o, oh, ow)


def synapse_input(conn: Connection, sent: List[torch.Tensor], k: int, batch: int) -> torch.Tensor:
    """The synaptic input (B, N) int64 that ``conn`` delivers at step k: over the
    weights of each delay d, what its source sent at step k - 1 - d (``sent``: the
    source's messages (B, n) so far; nothing before the run began)."""
    sw = conn.weights
    w = torch.as_tensor(sw.weight, dtype=torch.int64)

    def sent_at(j: int) -> torch.Tensor:  # the source's step-j messages as the synapse sees them
        if j < 0:
            return torch.zeros((batch, int(np.prod(conn.in_shape))), dtype=torch.int64)
        return sent[j] if conn.graded else (sent[j] != 0).to(torch.int64)  # 0 bits: s != 0

    if conn.conv is not None:  # Lava's Conv (no delays): the exact sum, wrapped to 24 bits
        x = sent_at(k - 1 - conn.delay).reshape((batch,) + tuple(conn.in_shape))
        y = conv_exact(x, w, conn.conv)
        return fx.wrap_signed(y, fx.CONV_ACCUMULATOR_BITS).reshape(batch, -1)
    if sw.delays is None:
        x = sent_at(k - 1 - conn.delay)
        if conn.graded:  # Lava's Dense on graded messages: int32 dot, then the shift
            return fx.graded_dense_input(x @ w.T, sw.exponent)
        return fx.shift_exponent(x @ w.T, sw.exponent)
    total = torch.zeros((batch, w.shape[0]), dtype=torch.int64)
    for d in np.unique(sw.delays):
        wd = torch.where(torch.as_tensor(sw.delays == d), w, 0)
        x = sent_at(k - 1 - int(d) - conn.delay)
        if conn.graded:  # Lava's DelayDense: int32 products, int64 sum and shift
            total = total + fx.graded_delay_dense_input(wd, x, sw.exponent)
        else:
            total = total + fx.shift_exponent(x @ wd.T, sw.exponent)
    return fx.wrap_int32(total) if conn.graded else total  # DelayDense's int32 buffer


# --- neurons: one step --------------------------------------------------------
def initial_state(layer: Layer, batch: int):
    """The neurons' state at the start and after every reset: a CubaState,
    SigmaDeltaState or SrcState of (batch, N) integers."""
    shape = (batch, int(np.prod(layer.shape)))
    if isinstance(layer.neuron, CubaNeuron):
        return fx.cuba_initial_state(shape, torch.int64)
    if isinstance(layer.neuron, SigmaDeltaNeuron):
        z = torch.zeros(shape, dtype=torch.int64)
        return fx.SigmaDeltaState(z, z.clone(), z.clone())
    return fxs.initial_state(shape, layer.neuron.reset_state)


def resets(layer_position: int, layer: Layer, k: int, reset_interval, reset_offset: int) -> bool:
    """Whether the layer returns to its initial state before step k (CUBA and SRC)."""
    if not reset_interval or isinstance(layer.neuron, SigmaDeltaNeuron):
        return False
    return (k + 1) % reset_interval == reset_phase(layer_position, reset_interval, reset_offset)


def neuron_step(layer: Layer, a: torch.Tensor, state):
    """One step of the layer's neurons on synaptic input ``a`` (B, N) int64 ->
    (messages (B, N) int64, new state)."""
    neuron = layer.neuron
    if isinstance(neuron, CubaNeuron):
        spikes, state = fx.cuba_step(a, state, layer.parameters, layer.bias)
        return spikes.to(torch.int64), state
    if isinstance(neuron, SrcNeuron):
        bias = None if layer.bias is None else layer.bias.numpy()
        out, state = fxs.src_step(a.numpy(), state, layer.parameters, bias)
        return torch.from_numpy(np.asarray(out, np.int64)), state
    if layer.is_input:  # netx's SDNN input layer: delta encoding of a << 12
        return fx.delta_input_step(a, state, neuron.threshold)
    if neuron.sigma_output:  # Lava's Sigma: sends sigma itself
        sigma = fx.wrap_int32(state.sigma + a)
        return sigma, fx.SigmaDeltaState(sigma, state.act, state.residue)
    return fx.sigma_delta_step(a, state, neuron.threshold, layer.bias)


def recorded(layer: Layer, state) -> Dict[str, torch.Tensor]:
    """The state variables recorded per layer, by the names of the result's records."""
    if isinstance(layer.neuron, CubaNeuron):
        return {"u": state.current, "v": state.voltage}
    if isinstance(layer.neuron, SigmaDeltaNeuron):
        return {"sigma": state.sigma}
    return {key: torch.from_numpy(getattr(state, name)) for key, name in src.RECORDED}


# --- the run --------------------------------------------------------------------
def run(network: Network, inputs, steps: Optional[int] = None, reset_interval: Optional[int] = None,
        reset_offset: int = 0, input_bias=None) -> SimResult:
    """Run ``network`` on ``inputs`` (batch, *input_shape, T) or (*input_shape, T),
    netx order, for ``steps`` steps (default T) on Lava's timeline (module doc);
    every layer's state and messages are recorded. Same arguments and result as
    :func:`neurodeploy.sim.simulator.simulate`."""
    layers, feed_shape = plan(network, input_bias)
    x = torch.as_tensor(np.asarray(inputs, dtype=np.int64))
    netx = netx_shape(feed_shape)
    single = x.dim() == len(netx) + 1
    x = x[None] if single else x
    if tuple(x.shape[1:-1]) != netx:
        raise ValueError(f"inputs must have shape (batch, {netx}, T) in netx order, got {tuple(x.shape)}")
    batch, t_in = x.shape[0], x.shape[-1]
    frames = x.permute(0, *range(x.dim() - 2, 0, -1), x.dim() - 1).reshape(batch, -1, t_in)  # torch order
    steps = t_in if steps is None else int(steps)
    states = [initial_state(layer, batch) for layer in layers]
    sent: Dict[int, List[torch.Tensor]] = {NETWORK_INPUT: [], **{p: [] for p in range(len(layers))}}
    records: Dict[str, List[torch.Tensor]] = {}
    for k in range(steps):
        sent[NETWORK_INPUT].append(frames[..., k % t_in])
        for p, layer in enumerate(layers):
            if layer.is_input:  # the input layer's a_in: the input itself
                a = frames[..., k % t_in]
            else:  # every synapse into the layer, a recurrent one included
                a = sum(synapse_input(c, sent[c.source], k, batch) for c in layer.connections
                        + ((layer.recurrent,) if layer.recurrent is not None else ()))
            if resets(p, layer, k, reset_interval, reset_offset):
                states[p] = initial_state(layer, batch)
            s, states[p] = neuron_step(layer, a, states[p])
            sent[p].append(s)
            for name, value in {**recorded(layer, states[p]), "s": s}.items():
                records.setdefault(f"{name}/{layer.index}", []).append(value.to(torch.int64).clone())
    return _result(layers, records, single)


def _result(layers: List[Layer], records: Dict[str, List[torch.Tensor]], single: bool) -> SimResult:
    """Per-step (B, N) frames -> netx-order (B, *netx_shape, steps) arrays."""
    shapes = {layer.index: layer.shape for layer in layers}
    out = {}
    for key, frames in records.items():
        shape = shapes[int(key.split("/")[1])]
        y = torch.stack(frames, -1).reshape((frames[0].shape[0],) + tuple(shape) + (len(frames),))
        y = y.permute(0, *range(len(shape), 0, -1), len(shape) + 1).numpy()
        out[key] = y.astype(np.int32) if key.startswith("s/") else y
    spikes = out[f"s/{layers[-1].index}"]
    if single:
        spikes, out = spikes[0], {k: v[0] for k, v in out.items()}
    return SimResult(spikes=spikes, records=out)
