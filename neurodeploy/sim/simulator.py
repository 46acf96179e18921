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
from neurodeploy.network import CubaNeuron, Dense, Network


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


def simulate(network: Network, inputs: np.ndarray, steps: Optional[int] = None,
             reset_interval: Optional[int] = None, reset_offset: int = 0,
             record: bool = False) -> SimResult:
    """Run ``network`` on ``inputs`` (batch, *input_shape, T) or (*input_shape, T).

    Returns the output layer's spikes at every step, exactly as a Lava RingBuffer
    sink on the network's output port records them.
    """
    x = torch.as_tensor(np.asarray(inputs))
    single = x.dim() == len(network.input_shape) + 1
    if single:
        x = x.unsqueeze(0)
    expected = tuple(network.input_shape)
    if tuple(x.shape[1:-1]) != expected and int(np.prod(x.shape[1:-1])) != int(np.prod(expected)):
        raise ValueError(f"inputs must have shape (batch, {', '.join(map(str, expected))}, T); "
                         f"got {tuple(x.shape)}")
    batch, t_in = x.shape[0], x.shape[-1]
    steps = int(t_in if steps is None else steps)
    s = _cyclic(x.reshape(batch, -1, t_in).to(torch.int64), steps)  # (B, N, steps)
    s = s.permute(2, 0, 1)  # (steps, B, N)
    records: Dict[str, np.ndarray] = {}
    neuron_index = 0
    for i, layer in enumerate(network.layers):
        if not isinstance(layer, Dense) or not isinstance(layer.neuron, CubaNeuron):
            raise NotImplementedError(f"layer {i}: {type(layer).__name__} blocks are not simulated yet")
        if layer.weight_rec is not None or layer.delay is not None:
            raise NotImplementedError(f"layer {i}: dense_rec / delays are not simulated yet")
        w = torch.as_tensor(fx.effective_weights(layer.weight))
        a = fx.synaptic_input(w, s, layer.weight_exp)  # (steps, B, out)
        a = torch.cat([torch.zeros_like(a[:1]), a[:-1]])  # Dense's 1-step delay
        p = layer.neuron.parameters()
        bias = None if layer.bias is None else torch.as_tensor(layer.bias)
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
        if record:
            records[f"u/{i}"] = torch.stack(us, -1).numpy()
            records[f"v/{i}"] = torch.stack(vs, -1).numpy()
            records[f"s/{i}"] = out.permute(1, 2, 0).numpy()
        s = out.to(torch.int64)
        neuron_index += 1
    spikes = s.permute(1, 2, 0).reshape(batch, *network.output_shape, steps).numpy()
    if single:
        spikes = spikes[0]
        records = {k: v[0] for k, v in records.items()}
    return SimResult(spikes=spikes, records=records)
