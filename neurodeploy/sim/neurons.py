"""Neuron layers of the fast simulator (:mod:`neurodeploy.sim.simulator`) over a chunk
of steps, batched.

A layer's whole synaptic input for the chunk is given; the neuron recurrence then
runs in the compiled loops of :mod:`neurodeploy.fixedpoint` (``cuba_run``,
``sigma_delta_run``: the per-neuron twins of the integer steps), or, without numba,
a step at a time through the integer steps themselves (``cuba_step``,
``sigma_delta_step``, ``delta_input_step``) as :mod:`neurodeploy.sim.reference`
calls them. Recurrent blocks run a step at a time (the previous step's messages go
through ``W_rec``). Each layer's state is a typed record whose arrays the loops
update in place; SRC layers run in :mod:`neurodeploy.sim.src`.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.network import CubaNeuron, SrcNeuron
from neurodeploy.sim.samples import reset_phase

#: recorded frames of one chunk: state name ('u', 'v', 'sigma') -> (c, B, N)
Frames = Dict[str, torch.Tensor]


class CubaLayerState(NamedTuple):
    """A CUBA-LIF layer between chunks. ``current``, ``voltage``: u and v, int64
    (B * N), updated in place; ``last``: the previous step's spikes (B, N) (recurrent
    blocks); ``bias``: the bias mantissa per neuron repeated over the batch, or None."""

    current: np.ndarray
    voltage: np.ndarray
    last: torch.Tensor
    bias: Optional[np.ndarray]
    parameters: fx.CubaParameters


class SigmaDeltaLayerState(NamedTuple):
    """A sigma-delta layer between chunks: its int32 registers (held in int64, (B, N),
    updated in place), the previous step's messages ``last`` (recurrent blocks), the
    bias mantissa repeated over the batch (hidden layers only) and the layer's
    ``kind``: ``fx.SD_HIDDEN``, ``fx.SD_INPUT`` or ``fx.SD_SIGMA_OUTPUT``."""

    sigma: torch.Tensor
    act: torch.Tensor
    residue: torch.Tensor
    last: torch.Tensor
    bias: Optional[np.ndarray]
    kind: int


def init_state(layer, batch: int):
    """The zero state of a planned layer for ``batch`` samples."""
    n = int(np.prod(layer.shape))
    if isinstance(layer.neuron, SrcNeuron):
        from neurodeploy.sim.src import initial_state
        return initial_state(batch, n, layer.neuron)
    last = torch.zeros((batch, n), dtype=torch.int64)
    bias = None if layer.bias is None else np.tile(np.asarray(layer.bias, np.int64).reshape(-1), batch)
    if isinstance(layer.neuron, CubaNeuron):
        return CubaLayerState(np.zeros(batch * n, np.int64), np.zeros(batch * n, np.int64), last, bias,
                              layer.neuron.parameters())
    kind = (fx.SD_INPUT if layer.is_input else
            fx.SD_SIGMA_OUTPUT if layer.neuron.sigma_output else fx.SD_HIDDEN)
    return SigmaDeltaLayerState(last.clone(), last.clone(), last.clone(), last,
                                bias if kind == fx.SD_HIDDEN else None, kind)


def reset_mask(start: int, c: int, reset_interval: Optional[int], phase: Optional[int]) -> np.ndarray:
    """Steps start .. start + c - 1 (0-based) at which a layer whose netx reset phase
    is ``phase`` zeroes u and v before integrating: Lava's LIFReset, whose time
    step t = k + 1 starts at 1, resets where t % reset_interval == phase."""
    if phase is None:
        return np.zeros(c, np.bool_)
    return (np.arange(start, start + c) + 1) % reset_interval == phase


def run_neurons(layer, a: torch.Tensor, st, start: int, reset_interval, reset_offset,
                rec: Optional[dict], lead: Optional[torch.Tensor] = None) -> torch.Tensor:
    """a: (c, B, N) synaptic input of the chunk starting at step ``start`` -> messages
    (c, B, N). With ``lead``, the input at step k is ``lead`` for k = 0 and ``a[k - 1]``
    after. Appends the chunk's u, v (or sigma) and messages to ``rec`` when given."""
    c = a.shape[0]
    neuron = layer.neuron
    phase = None
    if reset_interval and isinstance(neuron, (CubaNeuron, SrcNeuron)):
        phase = reset_phase(layer.neuron_index, reset_interval, reset_offset)
    reset = reset_mask(start, c, reset_interval, phase)
    if isinstance(neuron, SrcNeuron):  # the SRC recurrence lives in sim.src
        from neurodeploy.sim.src import run_src_neurons
        if layer.rec is not None:
            raise NotImplementedError(f"layer {layer.index}: recurrent SRC blocks are not simulated")
        return run_src_neurons(layer, a, st, reset, rec, lead)
    record = rec is not None
    if isinstance(neuron, CubaNeuron):
        run = _cuba_compiled if fx.compiled_cuba_steps() is not None else _cuba_steps
        out, frames = run(layer, a, st, reset, record, lead)
    elif layer.rec is None and fx.compiled_sigma_delta_steps() is not None:
        out, frames = _sigma_delta_compiled(layer, a, st, record, lead)
    else:
        out, frames = _sigma_delta_steps(layer, a, st, record, lead)
    if record:
        for key, value in frames.items():
            rec.setdefault(f"{key}/{layer.index}", []).append(value)
        rec.setdefault(f"s/{layer.index}", []).append(out.to(torch.int32))
    return out


def _input_at(a: torch.Tensor, lead: Optional[torch.Tensor], k: int) -> torch.Tensor:
    """Step k's synaptic input: ``a[k]``, or one frame later when the chunk has a ``lead``."""
    return a[k] if lead is None else (lead if k == 0 else a[k - 1])


def _cuba_compiled(layer, a, st: CubaLayerState, reset, record: bool, lead):
    """CUBA-LIF in the compiled loop (``fixedpoint.cuba_run``): the chunk in one call,
    or a step at a time for a recurrent block."""
    c = a.shape[0]
    bsz, n = st.last.shape
    out = torch.empty(a.shape, dtype=torch.bool)
    spikes = out.view(torch.uint8).reshape(c, -1).numpy()
    if a.dtype == torch.bool:
        a = a.view(torch.int8)  # the same 0/1 bytes, no copy
    state = (st.current, st.voltage)
    if layer.rec is None:
        _, _, u_rec, v_rec = fx.cuba_run(
            a.reshape(c, -1).numpy(), st.parameters, st.bias, reset, state=state, record=record,
            a_first=None if lead is None else lead.reshape(-1).to(a.dtype).numpy(), spikes=spikes)
        if not record:
            return out, None
        return out, {"u": torch.from_numpy(u_rec).reshape(c, bsz, n),
                     "v": torch.from_numpy(v_rec).reshape(c, bsz, n)}
    us, vs = [], []
    last = st.last
    for k in range(c):
        ak = _input_at(a, lead, k).to(torch.int64) + layer.rec(last[None], 1)[0].to(torch.int64)
        _, _, u_rec, v_rec = fx.cuba_run(ak.reshape(1, -1).numpy(), st.parameters, st.bias, reset[k:k + 1],
                                         state=state, record=record, spikes=spikes[k:k + 1])
        last = out[k]
        if record:
            us.append(torch.from_numpy(u_rec).reshape(bsz, n))
            vs.append(torch.from_numpy(v_rec).reshape(bsz, n))
    st.last.copy_(last)
    return out, ({"u": torch.stack(us), "v": torch.stack(vs)} if record else None)


def _cuba_steps(layer, a, st: CubaLayerState, reset, record: bool, lead):
    """CUBA-LIF a step at a time through ``fixedpoint.cuba_step`` (no numba)."""
    c = a.shape[0]
    bsz, n = st.last.shape
    bias = None if st.bias is None else torch.from_numpy(st.bias).view(bsz, n)
    state = fx.CubaState(torch.from_numpy(st.current).view(bsz, n), torch.from_numpy(st.voltage).view(bsz, n))
    a = a.to(torch.int64)
    lead = None if lead is None else lead.to(torch.int64)
    out = torch.empty(a.shape, dtype=torch.bool)
    last, us, vs = st.last, [], []
    for k in range(c):
        if reset[k]:
            state = fx.cuba_initial_state((bsz, n), torch.int64)
        ak = _input_at(a, lead, k)
        if layer.rec is not None:
            ak = ak + layer.rec(last[None], 1)[0].to(torch.int64)
        out[k], state = fx.cuba_step(ak, state, st.parameters, bias)
        last = out[k]
        if record:
            us.append(state.current)
            vs.append(state.voltage)
    st.current[:] = state.current.reshape(-1).numpy()
    st.voltage[:] = state.voltage.reshape(-1).numpy()
    st.last.copy_(last)
    return out, ({"u": torch.stack(us), "v": torch.stack(vs)} if record else None)


def _sigma_delta_compiled(layer, a, st: SigmaDeltaLayerState, record: bool, lead):
    """Sigma-delta neurons in the compiled loop (``fixedpoint.sigma_delta_run``)."""
    c = a.shape[0]
    bsz, n = st.sigma.shape
    out = torch.empty(a.shape, dtype=torch.int64)
    if a.dtype == torch.bool:
        a = a.view(torch.int8)
    sigma_rec = fx.sigma_delta_run(
        a.reshape(c, -1).numpy(), st.kind, layer.neuron.threshold or 0, st.bias,
        (st.sigma.view(-1).numpy(), st.act.view(-1).numpy(), st.residue.view(-1).numpy()),
        out.view(c, -1).numpy(), record=record,
        a_first=None if lead is None else lead.reshape(-1).to(a.dtype).numpy())
    return out, ({"sigma": torch.from_numpy(sigma_rec).reshape(c, bsz, n)} if record else None)


def _sigma_delta_steps(layer, a, st: SigmaDeltaLayerState, record: bool, lead):
    """Sigma-delta neurons a step at a time through the integer steps (recurrent
    blocks, or no numba)."""
    c = a.shape[0]
    bsz, n = st.sigma.shape
    threshold = layer.neuron.threshold
    bias = None if st.bias is None else torch.from_numpy(st.bias).view(bsz, n)
    sd = fx.SigmaDeltaState(st.sigma, st.act, st.residue)
    out = torch.empty(a.shape, dtype=torch.int64)
    last, sigmas = st.last, []
    for k in range(c):
        ak = _input_at(a, lead, k).to(torch.int64)
        if layer.rec is not None:
            ak = ak + layer.rec(last[None], 1)[0].to(torch.int64)
        if st.kind == fx.SD_INPUT:
            s, sd = fx.delta_input_step(ak, sd, threshold)
        elif st.kind == fx.SD_SIGMA_OUTPUT:  # Lava's Sigma: sends sigma itself
            s = fx.wrap_int32(sd.sigma + ak)
            sd = fx.SigmaDeltaState(s, sd.act, sd.residue)
        else:
            s, sd = fx.sigma_delta_step(ak, sd, threshold, bias)
        out[k] = s
        last = s
        if record:
            sigmas.append(sd.sigma.clone())
    st.sigma.copy_(sd.sigma)
    st.act.copy_(sd.act)
    st.residue.copy_(sd.residue)
    st.last.copy_(last)
    return out, ({"sigma": torch.stack(sigmas)} if record else None)
