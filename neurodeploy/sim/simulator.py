"""Bit-accurate, batched simulator of netx networks on Lava's timeline.

Calls :mod:`neurodeploy.fixedpoint` for every piece of arithmetic. Timeline, as
Lava runs a netx network fed by a RingBuffer (steps t = 1, 2, ... in Lava;
index k = t - 1 here):

- the source sends ``x[k % T]`` at index k;
- a Dense block sends, at index k, what it accumulated at k - 1 (1-step delay), so
  neuron layer i integrates ``W_i @ s_{i-1}[k - 1]``;
- with ``reset_interval`` R, neuron layer i (0-based over neuron-holding blocks)
  zeroes u and v before its dynamics when ``(k + 1) % R == (reset_offset + 1 + i) % R``.

Feed-forward layers are simulated one layer at a time over all steps: the whole
synaptic input of a layer is one matrix product, then the neuron recurrence
runs over time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Network


@dataclass
class SimResult:
    """spikes: output layer, (batch, *out_shape, steps); records: per-layer arrays
    ``u/<i>``, ``v/<i>``, ``s/<i>`` (batch, neurons, steps) when recording."""

    spikes: np.ndarray
    records: Dict[str, np.ndarray] = field(default_factory=dict)


def _to_torch_layout(x: torch.Tensor) -> torch.Tensor:
    """(..., x, y, c) netx order -> (..., c, y, x) = torch's (C, H, W)."""
    return x.permute(*range(x.dim() - 3), x.dim() - 1, x.dim() - 2, x.dim() - 3)


def _reset_mask(start: int, count: int, reset_interval, reset_offset: int, neuron_index: int) -> np.ndarray:
    if not reset_interval:
        return np.zeros(count, np.bool_)
    t = np.arange(start, start + count) + 1  # Lava's 1-based time step
    return t % reset_interval == (reset_offset + 1 + neuron_index) % reset_interval


CHUNK_STEPS = 256  # time steps simulated at a time: memory stays bounded for long runs


def simulate(network: Network, inputs: np.ndarray, steps: Optional[int] = None,
             reset_interval: Optional[int] = None, reset_offset: int = 0,
             record: bool = False, chunk_steps: int = CHUNK_STEPS) -> SimResult:
    """Run ``network`` on ``inputs`` (batch, *input_shape_netx, T) or (*input_shape_netx, T),
    in the Lava port's order: (features,) for a dense first block, (x, y, c) for a
    conv first block. ``steps`` > T repeats the input cyclically (Lava's RingBuffer).

    Returns the output layer's spikes at every step, exactly as a Lava RingBuffer
    sink on the network's output port records them, in netx order. Time is
    processed in chunks of ``chunk_steps`` carrying every layer's state, so memory
    does not grow with ``steps`` unless recording.
    """
    x = np.asarray(inputs)
    netx_in = tuple(network.input_shape[::-1]) if len(network.input_shape) == 3 else tuple(network.input_shape)
    single = x.ndim == len(netx_in) + 1
    if single:
        x = x[None]
    if tuple(x.shape[1:-1]) != netx_in:
        raise ValueError(f"inputs must have shape (batch, {', '.join(map(str, netx_in))}, T) "
                         f"(netx order, time last); got {tuple(x.shape)}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.bool_)
            or (np.issubdtype(x.dtype, np.floating) and np.array_equal(x, np.round(x)))):
        raise ValueError(f"inputs must be integers (spikes or graded integer values), got dtype {x.dtype}")
    batch, t_in = x.shape[0], x.shape[-1]
    steps = int(t_in if steps is None else steps)
    if steps < 1 or t_in < 1:
        raise ValueError(f"need at least one time step (inputs have T={t_in}, steps={steps})")
    plan = _plan(network)
    in_dtype = np.int8 if x.size == 0 or (x.min() >= -128 and x.max() <= 127) else np.int64
    state = [None] * len(plan)  # per neuron layer: (u, v) flat, pending synaptic input
    pending = [None] * len(plan)
    out_chunks = []
    weights = {}  # per layer: effective weights and their int8 form, prepared once
    rec: Dict[str, list] = {}
    for start in range(0, steps, chunk_steps):
        count = min(chunk_steps, steps - start)
        idx = np.arange(start, start + count) % t_in
        s = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x[..., idx], -1, 0)).astype(in_dtype))
        if len(netx_in) == 3:
            s = _to_torch_layout(s)  # (count, B, C, H, W)
        for k, (i, layer) in enumerate(plan):
            if isinstance(layer, Flatten):
                s = s.reshape(count, batch, -1)
                continue
            if k not in weights and isinstance(layer, Dense):
                w = torch.from_numpy(fx.effective_weights(layer.weight))
                weights[k] = (w, fx.int8_weights(w))
            a, shape, scale = _synaptic(i, layer, s, count, batch, weights.get(k))
            a = a.reshape(count, -1).numpy()
            # the synapse's 1-step delay: step 0 of this chunk gets the last input of the previous
            first = np.zeros(a.shape[1], a.dtype) if pending[k] is None else pending[k]
            pending[k] = a[-1].copy()  # the scale is the layer's, the same in every chunk
            p = layer.neuron.parameters()
            bias = _neuron_bias(layer, shape, batch)
            spikes, state[k], u_rec, v_rec = fx.cuba_run(
                a, p, bias, _reset_mask(start, count, reset_interval, reset_offset, _neuron_index(plan, k)),
                state=state[k], record=record, a_first=first, scale=scale)
            s = torch.from_numpy(spikes.view(np.int8)).reshape(count, batch, *shape)
            if record:
                rec.setdefault(f"u/{i}", []).append(_netx_order(torch.from_numpy(u_rec), count, batch, shape))
                rec.setdefault(f"v/{i}", []).append(_netx_order(torch.from_numpy(v_rec), count, batch, shape))
                rec.setdefault(f"s/{i}", []).append(_netx_order(s, count, batch, shape))
        if s.dim() == 5:
            s = s.permute(0, 1, 4, 3, 2)  # back to netx (x, y, c)
        out_chunks.append(s.permute(*range(1, s.dim()), 0).to(torch.uint8).numpy())
    spikes = np.concatenate(out_chunks, axis=-1)
    records = {key: np.concatenate(v, axis=-1) for key, v in rec.items()}
    if single:
        spikes = spikes[0]
        records = {k: v[0] for k, v in records.items()}
    return SimResult(spikes=spikes, records=records)


def _plan(network: Network):
    plan = []
    for i, layer in enumerate(network.layers):
        if isinstance(layer, Flatten):
            plan.append((i, layer))
            continue
        if not isinstance(layer, (Dense, Conv)):
            raise NotImplementedError(f"layer {i}: {type(layer).__name__} blocks are not simulated yet")
        if not isinstance(layer.neuron, CubaNeuron):
            raise NotImplementedError(f"layer {i}: {type(layer.neuron).__name__} neurons are not simulated yet")
        if getattr(layer, "weight_rec", None) is not None or layer.delay is not None:
            raise NotImplementedError(f"layer {i}: dense_rec / synaptic delays are not simulated yet")
        plan.append((i, layer))
    return plan


def _neuron_index(plan, k: int) -> int:
    return sum(1 for _, b in plan[:k] if not isinstance(b, Flatten))


def _synaptic(i, layer, s, count, batch, prepared):
    """Synaptic input of a block for a chunk: (count, B, neurons) int64 and the
    block's neuron shape (torch order)."""
    if isinstance(layer, Dense):
        w, w8 = prepared
        if layer.weight_exp == 0:
            a, scale = fx.synaptic_input_unscaled(w, s.reshape(count, batch, -1), w8)
            return a, layer.shape, scale
        return fx.synaptic_input(w, s.reshape(count, batch, -1), layer.weight_exp, w8), layer.shape, 1
    a = fx.conv_synaptic_input(s.reshape(count * batch, *s.shape[2:]), torch.tensor(layer.weight),
                               layer.stride, layer.padding, layer.dilation, layer.groups)
    shape = tuple(a.shape[1:])
    if shape != tuple(layer.shape):
        raise ValueError(f"layer {i} (conv): output shape {shape} differs from the file's {layer.shape}")
    return a.reshape(count, batch, -1), shape, 1


def _neuron_bias(layer, shape, batch) -> Optional[np.ndarray]:
    """Bias mantissa per flattened (batch, neuron), channel-wise bias broadcast as netx does."""
    if layer.bias is None:
        return None
    b = np.asarray(layer.bias, np.int64)
    if len(shape) == 3 and b.size == shape[0]:
        b = np.broadcast_to(b.reshape(-1, 1, 1), shape)
    return np.tile(b.reshape(-1), batch)


def _netx_order(t: torch.Tensor, count: int, batch: int, shape) -> np.ndarray:
    """(count, B, N) -> (B, *netx_shape, count)."""
    t = t.reshape(count, batch, *shape)
    if len(shape) == 3:
        t = t.permute(0, 1, 4, 3, 2)
    return t.permute(*range(1, t.dim()), 0).numpy()
