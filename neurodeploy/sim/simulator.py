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


def _cyclic(x: torch.Tensor, steps: int) -> torch.Tensor:
    t = x.shape[-1]
    if steps == t:
        return x
    idx = torch.arange(steps) % t
    return x[..., idx]


def _to_torch_layout(x: torch.Tensor) -> torch.Tensor:
    """(..., x, y, c) netx order -> (..., c, y, x) = torch's (C, H, W)."""
    return x.permute(*range(x.dim() - 3), x.dim() - 1, x.dim() - 2, x.dim() - 3)


def _neuron_bias(layer, shape) -> Optional[torch.Tensor]:
    """Bias mantissa per neuron in torch layout (channel-wise bias broadcast as netx does)."""
    if layer.bias is None:
        return None
    b = torch.tensor(layer.bias)
    if len(shape) == 3 and b.numel() == shape[0]:
        b = b.view(-1, 1, 1).expand(*shape)
    return b.reshape(-1)


def simulate(network: Network, inputs: np.ndarray, steps: Optional[int] = None,
             reset_interval: Optional[int] = None, reset_offset: int = 0,
             record: bool = False) -> SimResult:
    """Run ``network`` on ``inputs`` (batch, *input_shape_netx, T) or (*input_shape_netx, T),
    in the Lava port's order: (features,) for a dense first block, (x, y, c) for a
    conv first block.

    Returns the output layer's spikes at every step, exactly as a Lava RingBuffer
    sink on the network's output port records them, in netx order.
    """
    x = torch.as_tensor(np.asarray(inputs))
    netx_in = tuple(network.input_shape[::-1]) if len(network.input_shape) == 3 else tuple(network.input_shape)
    single = x.dim() == len(netx_in) + 1
    if single:
        x = x.unsqueeze(0)
    if tuple(x.shape[1:-1]) != netx_in:
        raise ValueError(f"inputs must have shape (batch, {', '.join(map(str, netx_in))}, T) "
                         f"(netx order, time last); got {tuple(x.shape)}")
    batch, t_in = x.shape[0], x.shape[-1]
    steps = int(t_in if steps is None else steps)
    s = _cyclic(x.to(torch.int64), steps)  # (B, *netx_in, steps)
    s = s.permute(s.dim() - 1, *range(s.dim() - 1))  # (steps, B, *netx_in)
    if len(netx_in) == 3:
        s = _to_torch_layout(s)  # (steps, B, C, H, W)
    records: Dict[str, np.ndarray] = {}
    neuron_index = 0
    for i, layer in enumerate(network.layers):
        if isinstance(layer, Flatten):
            s = s.reshape(steps, batch, -1)
            continue
        if not isinstance(getattr(layer, "neuron", None), CubaNeuron):
            raise NotImplementedError(f"layer {i}: {type(layer).__name__} with "
                                      f"{type(getattr(layer, 'neuron', None)).__name__} neurons is not simulated")
        if isinstance(layer, Dense):
            if layer.weight_rec is not None or layer.delay is not None:
                raise NotImplementedError(f"layer {i}: dense_rec / delays are not simulated yet")
            w = torch.as_tensor(fx.effective_weights(layer.weight))
            a = fx.synaptic_input(w, s.reshape(steps, batch, -1), layer.weight_exp)  # (steps, B, out)
            shape = layer.shape
        elif isinstance(layer, Conv):
            if layer.delay is not None:
                raise NotImplementedError(f"layer {i}: conv delays are not simulated yet")
            a = fx.conv_synaptic_input(s.reshape(steps * batch, *s.shape[2:]), torch.tensor(layer.weight),
                                       layer.stride, layer.padding, layer.dilation, layer.groups)
            shape = tuple(a.shape[1:])
            if shape != tuple(layer.shape):
                raise ValueError(f"layer {i} (conv): output shape {shape} differs from the file's {layer.shape}")
            a = a.reshape(steps, batch, -1)
        else:
            raise NotImplementedError(f"layer {i}: {type(layer).__name__} blocks are not simulated yet")
        a = torch.cat([torch.zeros_like(a[:1]), a[:-1]])  # the synapse's 1-step delay
        p = layer.neuron.parameters()
        bias = _neuron_bias(layer, shape)
        state = fx.cuba_initial_state(a.shape[1:])
        out = torch.empty_like(a, dtype=torch.bool)
        us, vs = [], []
        for k in range(steps):
            if reset_interval and (k + 1) % reset_interval == (reset_offset + 1 + neuron_index) % reset_interval:
                state = fx.cuba_initial_state(a.shape[1:])
            out[k], state = fx.cuba_step(a[k], state, p, bias)
            if record:
                us.append(state.current)
                vs.append(state.voltage)
        s = out.to(torch.int64).reshape(steps, batch, *shape)
        if record:
            def netx_order(t):  # (steps, B, N) -> (B, *netx_shape, steps)
                t = t.reshape(steps, batch, *shape)
                if len(shape) == 3:
                    t = t.permute(0, 1, 4, 3, 2)
                return t.permute(*range(1, t.dim()), 0).numpy()
            records[f"u/{i}"] = netx_order(torch.stack(us))
            records[f"v/{i}"] = netx_order(torch.stack(vs))
            records[f"s/{i}"] = netx_order(out)
        neuron_index += 1
    if s.dim() == 5:
        s = s.permute(0, 1, 4, 3, 2)  # back to netx (x, y, c)
    spikes = s.permute(*range(1, s.dim()), 0).numpy()
    if single:
        spikes = spikes[0]
        records = {k: v[0] for k, v in records.items()}
    return SimResult(spikes=spikes, records=records)
