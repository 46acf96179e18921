"""Float CUBA-LIF dynamics for training, the float image of Loihi's integer LIF.

For a layer with per-step input current ``x[t]`` (already ``W @ s_in[t]``, in
weight units) and one sample's fresh state, in the same order as the chip
(see :mod:`neurodeploy.fixedpoint`, which these equations mirror with the scale
``2**weight_exponent * 64`` removed)::

    u[t] = (1 - current_decay) * u[t-1] + x[t]
    v[t] = (1 - voltage_decay) * v[t-1] + u[t] + bias
    s[t] = H(v[t] - threshold);    v[t] = 0 where s[t]

Decays are fractions per step (0..1): ``current_decay * 4096`` becomes netx's
iDecay, ``voltage_decay * 4096`` its vDecay. The threshold is in weight units.
The reset is not differentiated (its path is detached), as in the sparse
spiking gradient descent paper and most surrogate-gradient trainers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class CubaFloatParameters:
    """current_decay, voltage_decay: fraction lost per step (0..1, 12-bit on chip);
    threshold: firing threshold in weight units (> 0)."""

    current_decay: float = 0.25
    voltage_decay: float = 0.03
    threshold: float = 1.0

    def __post_init__(self):
        for name in ("current_decay", "voltage_decay"):
            d = getattr(self, name)
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {d}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")


@dataclass(frozen=True)
class SurrogateParameters:
    """Surrogate derivative dS/dV = height / (scale * |v - threshold| + 1)**2 (the
    fast-sigmoid / SuperSpike form used by the sparse gradient paper); zero
    outside ``|v - threshold| < band`` when band is set (None: no truncation)."""

    scale: float = 10.0
    height: float = 1.0
    band: float | None = None

    def __post_init__(self):
        if self.scale <= 0:
            raise ValueError(f"surrogate scale must be > 0, got {self.scale}")
        if self.band is not None and self.band <= 0:
            raise ValueError(f"surrogate band must be > 0, got {self.band}")


def in_band(v_minus_threshold: torch.Tensor, p: SurrogateParameters) -> torch.Tensor:
    """``|v - threshold| < band``: the entries where the truncated surrogate is nonzero
    (the sparse backward's active set); p.band must be set."""
    return v_minus_threshold.abs() < p.band


def surrogate_derivative(v_minus_threshold: torch.Tensor, p: SurrogateParameters) -> torch.Tensor:
    """dS/dV at ``v - threshold`` (see :class:`SurrogateParameters`)."""
    d = p.height / (p.scale * v_minus_threshold.abs() + 1.0) ** 2
    if p.band is not None:
        d = torch.where(in_band(v_minus_threshold, p), d, torch.zeros_like(d))
    return d


class SpikeFunction(torch.autograd.Function):
    """Heaviside forward (strict: v > threshold, as Loihi); surrogate backward."""

    @staticmethod
    def forward(ctx, v_minus_threshold, p: SurrogateParameters):
        ctx.save_for_backward(v_minus_threshold)
        ctx.p = p
        return (v_minus_threshold > 0).to(v_minus_threshold.dtype)

    @staticmethod
    def backward(ctx, grad):
        (vmt,) = ctx.saved_tensors
        return grad * surrogate_derivative(vmt, ctx.p), None


class CubaFloatState(NamedTuple):
    current: torch.Tensor
    voltage: torch.Tensor


def cuba_float_charge(x, current, voltage, keep_current, keep_voltage, bias=None):
    """The leaky integration of one float CUBA-LIF step, before the threshold ->
    ``(u, v)``::

        u = keep_current * current + x
        v = keep_voltage * voltage + u (+ bias)

    with ``keep_current = 1 - current_decay``, ``keep_voltage = 1 - voltage_decay``.
    Plain arithmetic in this order and nothing else, so that every implementation of
    the training forward rounds alike: torch tensors here and in
    :mod:`neurodeploy.train.sparse` and :mod:`neurodeploy.train.hardware`, numba
    scalars in :mod:`neurodeploy.train.sparse_cpu` (which compiles this function).
    The Triton kernels of :mod:`neurodeploy.train.sparse_triton` hold the one copy,
    pinned to this function by the test suite."""
    u = keep_current * current + x
    v = keep_voltage * voltage + u
    if bias is not None:
        v = v + bias
    return u, v


def reset_fired(v, s):
    """The reset: ``v`` where ``s`` is 0, 0 where the neuron fired (``s`` 0/1). Its
    gradient path through ``s`` is cut (``s`` detached) by the callers that
    differentiate."""
    return v * (1.0 - s)


def cuba_float_step(x: torch.Tensor, state: CubaFloatState, p: CubaFloatParameters,
                    surrogate: SurrogateParameters, bias=None):
    """One float CUBA-LIF step -> ``(spikes, new_state)`` (equations: module docstring):
    :func:`cuba_float_charge`, the strict threshold ``v > threshold`` with the
    surrogate gradient, :func:`reset_fired` with the reset detached."""
    u, v = cuba_float_charge(x, state.current, state.voltage, 1.0 - p.current_decay,
                             1.0 - p.voltage_decay, bias)
    s = SpikeFunction.apply(v - p.threshold, surrogate)
    return s, CubaFloatState(u, reset_fired(v, s.detach()))


def cuba_float_sequence(x: torch.Tensor, p: CubaFloatParameters, surrogate: SurrogateParameters,
                        bias=None) -> torch.Tensor:
    """Spikes (batch, time, neurons) of :func:`cuba_float_step` run over time for input
    currents ``x`` (batch, time, neurons) from a fresh state, with the dense BPTT
    gradient of :func:`cuba_float_sequence_reference` computed as one autograd node
    (:mod:`neurodeploy.train.scan`)."""
    from neurodeploy.train.scan import cuba_scan
    return cuba_scan(x, p, surrogate, bias)


def cuba_float_sequence_reference(x: torch.Tensor, p: CubaFloatParameters,
                                  surrogate: SurrogateParameters, bias=None) -> torch.Tensor:
    """Run :func:`cuba_float_step` over time for input currents ``x`` (batch, time,
    neurons) from a fresh state; dense BPTT through autograd: the reference the fused
    scan is tested against. Returns spikes (batch, time, neurons).

    The steps' inputs are taken with one ``unbind`` (whose backward stacks the steps'
    gradients once) rather than by indexing step by step, whose backward would write
    every step's gradient into its own zero-filled (batch, time, neurons) tensor."""
    b, t, n = x.shape
    state = CubaFloatState(x.new_zeros(b, n), x.new_zeros(b, n))
    spikes = []
    for x_k in x.unbind(1):
        s, state = cuba_float_step(x_k, state, p, surrogate, bias)
        spikes.append(s)
    return torch.stack(spikes, dim=1)
