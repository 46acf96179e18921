"""Bit-accurate, batched simulator of netx networks on Lava's timeline: the fast path.

Reproduces what lava-dl's netx builds from a ``.net`` file and Lava's fixed-point
process models run (``Loihi2SimCfg(select_tag='fixed_pt')``). The timeline and the
arithmetic of every block are stated a step at a time by
:mod:`neurodeploy.sim.reference`, which the test suite holds this module to bit for
bit; read that module for the semantics. Here the same run is reorganised for speed:

- the network is planned once (:func:`_plan`): each block's synapse
  (:class:`neurodeploy.sim.products.Synapse`, which picks an exact product) and its
  neurons (:mod:`neurodeploy.sim.neurons`);
- feed-forward blocks run one block at a time over a chunk of steps: a block's whole
  synaptic input for the chunk is one product, then the neuron recurrence runs over
  the chunk in a compiled loop; recurrent blocks run a step at a time;
- the input is reordered into the simulator's layout a chunk at a time
  (:mod:`neurodeploy.sim.frames`); chunks bound the memory of long runs.

Sigma-delta registers and graded Dense sums wrap at 32 bits as Lava's numpy int32
models do. Graded conv sums are exact integers, as Lava's Conv computes them (float64,
scipy) up to its cast to int32; a warning says when a sum leaves int32, where Lava's
gives -2**31.

Layouts: arrays in and out use netx's port order (``(x, y, c)`` for images,
the reverse of the file's torch order ``(C, H, W)``), batch first, time last.
Inside, 3-d layers are held as (H, W, C) (see :mod:`neurodeploy.sim.frames`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.errors import InputError
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
from neurodeploy.sim.frames import InputFrames, channels_last, held_order, netx_view, to_netx
from neurodeploy.sim.neurons import init_state, run_neurons
from neurodeploy.sim.products import LavaConvOverflowWarning, Synapse  # noqa: F401 (public here)
from neurodeploy.sim.reference import SimResult, neuron_bias, recurrent_block_weights, sends_graded

#: Elements per chunk of the largest (steps x batch x neurons) buffer.
CHUNK_ELEMENTS = 1 << 22


class SimulationInputError(InputError):
    """Inputs of the wrong shape, dtype or range for the network."""


@dataclass(frozen=True)
class Layer:
    """A planned neuron layer: a block with neurons and its synapses."""

    index: int  # block index in the file
    neuron_index: int  # 0-based over neuron-holding blocks (netx's reset phase)
    neuron: object
    shape: Tuple[int, ...]  # torch order
    synapse: Optional[Synapse]
    rec: Optional[Synapse]
    bias: Optional[torch.Tensor]  # (N,) bias mantissa, held order
    is_input: bool = False


def _bias_vector(block, shape, where) -> Optional[np.ndarray]:
    """A block's bias mantissa per neuron in held order, or None."""
    try:
        b = neuron_bias(block, shape)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return None if b is None else b[held_order(shape)]


def _plan(network: Network, input_bias: Optional[np.ndarray], input_bound: float):
    """-> (layers, feed_shape torch order, feeds_input_neuron): the network's neuron
    layers with their synapses built for inputs of at most ``input_bound`` in
    magnitude (the product dtypes depend on it)."""
    layers: List[Layer] = []
    first = network.layers[0]
    has_input_neuron = isinstance(first, Input) and first.neuron is not None
    if input_bias is not None and not has_input_neuron:
        raise SimulationInputError("an input bias needs an input layer with neurons; this network has "
                                   "none (skipped, or the file has none)")
    shape = tuple(network.input_shape)
    feed_shape = None  # net.inp takes the first synapse's input shape
    graded = network.input_message_bits > 0  # net.inp's message bits (netx default 0)
    bound = float(input_bound)
    for i, block in enumerate(network.layers):
        if isinstance(block, Flatten):
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(block, Input):
            if i != 0:
                raise ValueError(f"layer {i}: an input block must come first")
            shape = tuple(block.shape)
            if block.neuron is None:
                continue
            bias = _input_bias_vector(block, input_bias, f"layer {i}")
            layer = Layer(i, len(layers), block.neuron, shape, None, None,
                          None if bias is None else torch.as_tensor(bias), is_input=True)
            feed_shape = shape
        elif isinstance(block, (Dense, Conv)):
            layer, in_shape = _synapse_layer(i, len(layers), block, shape,
                                             layers[-1].shape if layers else None, graded, bound)
            feed_shape = in_shape if feed_shape is None else feed_shape
        else:
            raise NotImplementedError(f"layer {i}: {type(block).__name__} blocks are not simulated")
        layers.append(layer)
        shape = layer.shape
        graded = sends_graded(block.neuron)
        bound = _output_bound(block.neuron, bound)
    if not layers:
        raise ValueError("the network has no neuron layer")
    return layers, feed_shape, has_input_neuron


def _input_bias_vector(block: Input, input_bias, where: str) -> Optional[np.ndarray]:
    """The input layer's bias mantissa from ``input_bias`` (netx order, or one value)
    in held order, or None."""
    if input_bias is None:
        return None
    shape = tuple(block.shape)
    b = np.asarray(input_bias)
    netx = netx_shape(shape)
    if b.size == 1:
        b = np.full(netx, b.reshape(-1)[0])
    if tuple(b.shape) != netx and b.size != int(np.prod(shape)):
        raise SimulationInputError(
            f"input bias must have the input layer's shape {netx} (netx order), got {b.shape}")
    b = np.asarray(b).reshape(netx)
    if not np.issubdtype(b.dtype, np.integer) and not np.array_equal(np.round(b), b):
        raise SimulationInputError("input bias must hold integers (the bias mantissa)")
    b = b.astype(np.int64)
    if isinstance(block.neuron, CubaNeuron):
        fx.check_range("input bias mantissa", b, *fx.BIAS_RANGE, where=f"{where}: ")
    bias = np.ascontiguousarray(b.transpose(*range(b.ndim)[::-1])).reshape(-1)
    return bias[held_order(shape)]


def _synapse_layer(i: int, neuron_index: int, block, shape, source_shape, graded: bool, bound: float):
    """The planned layer of a dense or conv block fed by messages of ``shape`` (torch
    order; ``source_shape``: the sending layer's, or None for net.inp) -> (layer, the
    synapse's input shape)."""
    where = f"layer {i}"
    in_shape = shape
    if isinstance(block, Dense):
        in_shape = (int(np.prod(shape)),)
        if block.in_features != in_shape[0]:
            raise ValueError(f"{where} (dense): {block.in_features} inputs, previous block "
                             f"gives {in_shape[0]}")
        if source_shape is not None and channels_last(source_shape):  # input held as (H, W, C)
            block = _held_columns(block, held_order(source_shape))
    rec = None
    if isinstance(block, Dense) and block.weight_rec is not None:
        if block.delay is not None:
            raise NotImplementedError(
                f"{where} (dense_rec): recurrent blocks with delays are not supported "
                "(netx builds them without the weight exponent)")
        forward, recurrent = recurrent_block_weights(i, block)
        syn = Synapse(i, block, graded, in_shape, bound, forward)
        rec_graded = isinstance(block.neuron, SigmaDeltaNeuron)  # graded own messages
        rec = Synapse(i, block, rec_graded, (block.num_neurons,),
                      float(2 ** 31) if rec_graded else 1.0, recurrent)
    else:
        syn = Synapse(i, block, graded, in_shape, bound)
    out_shape = tuple(block.shape)
    if isinstance(block, Conv) and out_shape != _conv_out_shape(block, in_shape):
        raise ValueError(f"{where} (conv): stored shape {block.shape} but the convolution of "
                         f"{in_shape} gives {_conv_out_shape(block, in_shape)}")
    bias = _bias_vector(block, out_shape, where)
    layer = Layer(i, neuron_index, block.neuron, out_shape, syn, rec,
                  None if bias is None else torch.tensor(bias))
    return layer, in_shape


def _held_columns(block: Dense, order: np.ndarray) -> Dense:
    """``block`` with its input columns (and per-input delays) in the held order."""
    delay = block.delay
    if delay is not None:
        d = np.asarray(delay).reshape(-1)
        if d.size == block.in_features and d.size != block.weight.shape[0]:
            delay = d[order]
    return replace(block, weight=np.asarray(block.weight)[:, order], delay=delay)



def _conv_out_shape(block: Conv, in_shape) -> Tuple[int, ...]:
    _, h, w = in_shape
    kh, kw = block.weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = block.stride, block.padding, block.dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (int(block.weight.shape[0]), oh, ow)


def _output_bound(neuron, in_bound: float) -> float:
    """Largest |message| a layer can send (for choosing an exact matmul dtype)."""
    if isinstance(neuron, SrcNeuron):
        from neurodeploy.sim.src import output_bound
        return output_bound(neuron)
    if isinstance(neuron, SigmaDeltaNeuron):
        return float(1 << 25)  # 24-bit registers >> 6, generous
    return 1.0


def is_single_sample(shape, netx: Tuple[int, ...]) -> bool:
    """Whether inputs of ``shape`` are one sample (``(*netx, T)``) rather than a batch
    (``(batch, *netx, T)``); any other shape, or no time step, is a
    :class:`SimulationInputError`."""
    shape = tuple(shape)
    if len(shape) == len(netx) + 1 and shape[:-1] == netx:
        single = True
    elif len(shape) == len(netx) + 2 and shape[1:-1] == netx:
        single = False
    else:
        raise SimulationInputError(
            f"inputs must have shape (batch, {', '.join(map(str, netx))}, T) or "
            f"({', '.join(map(str, netx))}, T) in netx order; got {shape}")
    if shape[-1] < 1:
        raise SimulationInputError("inputs need at least one time step")
    return single


def _check_inputs(network: Network, inputs, feed_shape) -> Tuple["InputFrames", bool, int]:
    arr = np.asarray(inputs)
    netx = netx_shape(feed_shape)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SimulationInputError(f"inputs must be integers (spikes or graded values), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(np.round(arr), arr):
            raise SimulationInputError("inputs must hold integers (Loihi fixed point); got non-integer values")
    single = is_single_sample(arr.shape, netx)
    if single:
        arr = arr[None]
    mn, mx = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    bound = max(abs(mn), abs(mx))
    if bound >= 2 ** 31:
        raise SimulationInputError("inputs exceed Lava's int32 message range")
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype in (np.uint16, np.uint32, np.uint64):
        arr = arr.astype(np.int64)
    binary = arr.size > 0 and mn >= 0 and bound <= 1
    src = arr.astype(np.int8) if binary and arr.dtype != np.int8 else arr
    return InputFrames(np.ascontiguousarray(src), netx, tuple(feed_shape), binary), single, bound




def run_length(steps: Optional[int], input_steps: int, reset_interval: Optional[int]) -> int:
    """The number of steps to run (``steps``, or the input's ``input_steps`` when None);
    SimulationInputError for a run shorter than one step or a reset interval below 1."""
    steps = int(input_steps if steps is None else steps)
    if steps < 1:
        raise SimulationInputError(f"steps must be >= 1, got {steps}")
    if reset_interval is not None and reset_interval < 1:
        raise SimulationInputError(f"reset_interval must be >= 1, got {reset_interval}")
    return steps


def simulate(network: Network, inputs: np.ndarray, steps: Optional[int] = None,
             reset_interval: Optional[int] = None, reset_offset: int = 0,
             record: bool = False, input_bias: Optional[np.ndarray] = None,
             chunk_steps: Optional[int] = None, progress: bool = False,
             device: str = "cpu") -> SimResult:
    """Run ``network`` on ``inputs`` of shape (batch, *input_shape, T) or
    (*input_shape, T), netx order, integers (spikes or graded values).

    steps: number of steps (default T); the input repeats cyclically beyond T.
    reset_interval, reset_offset: netx's periodic state reset (see module doc).
    record: also return u, v and spikes of every layer (memory grows with steps).
    input_bias: bias mantissa of the input layer's neurons (netx order, one
    sample: shared by the batch), the way lava-dl's examples inject images.
    progress: a progress bar over the steps (tqdm, on a terminal only).
    device: ``cpu``, or ``cuda`` / ``cuda:N`` for the same simulation on a GPU
    (:mod:`neurodeploy.sim.cuda`; identical results).
    Returns the output layer's messages at every step exactly as a Lava
    RingBuffer sink on the network's output port records them.
    A network with shortcuts runs in :mod:`neurodeploy.sim.residual`.
    """
    if network.shortcuts:
        if input_bias is not None:
            raise SimulationInputError("an input bias needs an input layer with neurons; a residual "
                                       "network has none")
        if device != "cpu":
            raise SimulationInputError(f"device {device}: networks with shortcuts (residual) run on "
                                       "the CPU simulator only; use device cpu")
        from neurodeploy.sim.residual import simulate_residual
        return simulate_residual(network, inputs, steps, reset_interval, reset_offset, record,
                                 chunk_steps)
    if device != "cpu":
        from neurodeploy.sim.cuda import device_for, simulate_on
        return simulate_on(device_for(device), network, inputs, steps, reset_interval, reset_offset,
                           record, input_bias, chunk_steps, progress)
    layers, feed_shape, _ = _plan(network, input_bias, 1.0)
    x, single, in_bound = _check_inputs(network, inputs, feed_shape)
    if in_bound > 1:  # re-plan with the real input bound (graded inputs into a synapse)
        layers, feed_shape, _ = _plan(network, input_bias, in_bound)
    t_in, batch = x.steps, x.batch
    steps = run_length(steps, t_in, reset_interval)
    widest = max([int(np.prod(feed_shape))] + [int(np.prod(l.shape)) for l in layers])
    chunk = chunk_steps or max(1, min(steps, CHUNK_ELEMENTS // max(1, batch * widest)))
    if not chunk_steps and chunk > 8:
        chunk -= chunk % 8   # chunks of whole 8-step runs: the input reordering's fast path

    states = [init_state(l, batch) for l in layers]
    tails = [None if l.synapse is None else
             torch.zeros((l.synapse.max_delay + 1, batch, int(np.prod(l.synapse.in_shape))),
                         dtype=torch.int64 if l.synapse.graded_input else torch.bool)
             for l in layers]
    out_layer = layers[-1]
    netx_out = netx_shape(out_layer.shape)
    # the output, written chunk by chunk in netx order (no second copy of a long run)
    spikes_t = torch.empty((batch,) + netx_out + (steps,), dtype=torch.int32)
    rec: Dict[str, List[torch.Tensor]] = {}
    leads: List[Optional[torch.Tensor]] = [None] * len(layers)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, unit="step", desc=f"simulating {batch} sample(s)", leave=False,
                   disable=None)
    for start in range(0, steps, chunk):
        c = min(chunk, steps - start)
        s = x.chunk(start, c)  # (c, B, N) held order; cyclic beyond t_in
        for li, layer in enumerate(layers):
            syn = layer.synapse
            a, lead = synapse_input(syn, s, c, batch, leads, tails, li)
            s = run_neurons(layer, a, states[li], start, reset_interval, reset_offset,
                             rec if record else None, lead)
            s = s.reshape(c, batch, -1)
        spikes_t[..., start:start + c].copy_(netx_view(s, out_layer.shape))
        if bar is not None:
            bar.update(c)
    if bar is not None:
        bar.close()
    result = sim_result(spikes_t.numpy(), rec if record else None, layers, single)
    assert result.spikes.shape[-1] == steps and \
        tuple(result.spikes.shape[-1 - len(netx_out):-1]) == netx_out
    return result


def synapse_input(syn, s: torch.Tensor, c: int, batch: int, leads: list, tails: list, li: int):
    """Layer ``li``'s synaptic input for a chunk of ``c`` steps of its source's messages
    ``s`` -> (a, lead): ``a`` (c, batch, n) and the frame before it (no-delay synapses,
    else None). Input layer (``syn`` None): a_in gets the stream. A synapse without
    delays gives a[k] = W x[k - 1]: this chunk's products, one frame later, the first
    frame from the previous chunk (``leads``); with delays, the last ``max_delay + 1``
    frames carry over (``tails``)."""
    if syn is None:
        return s.reshape(c, batch, -1), None
    frames = s.reshape(c, batch, -1)
    if syn.graded_input:
        frames = frames.to(torch.int64)
    elif frames.dtype != torch.bool:
        frames = frames != 0  # 0 message bits: the synapse sees s != 0
    if syn.max_delay == 0:
        a = syn(frames, c)
        lead = leads[li] if leads[li] is not None else torch.zeros_like(a[0])
        leads[li] = a[-1]
        return a, lead
    full = torch.cat([tails[li], frames.to(tails[li].dtype)])
    tails[li] = full[-(syn.max_delay + 1):].clone()
    return syn(full, c), None


def sim_result(spikes: np.ndarray, rec: Optional[dict], layers, single: bool) -> SimResult:
    """The SimResult of a batched run: output ``spikes`` (batch, *out, T) and the
    recorded frames ``rec`` ('u/<i>' etc. -> list of (c, batch, n) chunks, or None) in
    netx order; the batch axis dropped for a single sample."""
    records = {}
    for key, frames in (rec or {}).items():
        li = int(key.split("/")[1])
        layer = next(l for l in layers if l.index == li)
        records[key] = to_netx(torch.cat(frames), layer.shape)
    if single:
        spikes = spikes[0]
        records = {k: v[0] for k, v in records.items()}
    return SimResult(spikes=spikes, records=records)
