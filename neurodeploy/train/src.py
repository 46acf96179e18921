"""The Spiking Recurrent Cell (SRC, De Geeter, Ernst, Drion, arXiv 2306.03623) in float:
pure step functions over explicit state, thin modules over them.

One step of a layer of SRC neurons (``docs/src.md`` says where each constant comes from)::

    i[t]   = alpha i[t-1] + W s_in[t]                       (leaky integrator of the input)
    x[t]   = rho tanh(i[t] / rho)                           (saturation at +-rho)
    h[t]   = z h[t-1] + (1 - z) tanh(x[t] + r h[t-1] + r_s h_s[t-1] + b_h)
    h_s[t] = z_s h_s[t-1] + (1 - z_s) h[t-1],  z_s = z_hyp if h[t-1] <= theta_s else z_dep
    s[t]   = max(h[t], 0)                                   (gradient passed straight through)

Every step is differentiable (tanh, no threshold on the forward path), so networks
train with plain backpropagation through time; the gate z_s is a step function of h
(no gradient through it). With ``detach_recurrence`` (as in the authors' training),
h and h_s carry no gradient from one step to the next; i does.

The readout is a layer of the cell's leaky integrators: ``o[t] = alpha o[t-1] + W s[t]``,
class scores the mean of o over the sample's steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import nn

from neurodeploy.train.layers import DenseFeatures


@dataclass(frozen=True)
class SrcFloatParameters:
    """Constants of the cell (dimensionless; one step is the time unit).

    alpha: keep factor of the input current per step (0..1)
    rho: saturation of x = rho tanh(i / rho)
    r: positive feedback gain of h (bistability)
    r_s: negative feedback gain of the slow state h_s (spike termination)
    z: update gate of h (0: h is the new candidate every step)
    z_hyp, z_dep: keep factor of h_s while h <= theta_s (hyperpolarised) and above
    gate_threshold: theta_s, on h
    bias_init, bias_max: b_h starts at bias_init and is clamped to <= bias_max
    detach_recurrence: no gradient through h[t-1], h_s[t-1] across steps
    initial_state: h and h_s at the start of a sample (i starts at 0). From 0 (the
        authors' reference) h falls to -1 at once and h_s follows at z_hyp, so the cell
        cannot fire for its first ~12 steps (b_h = -6, x < rho); from -1 it can fire
        at once, but a too negative h_s also makes every cell fire one rebound spike
        a few steps in (see docs/src.md)
    """

    alpha: float = 0.9
    rho: float = 3.0
    r: float = 2.0
    r_s: float = -7.0
    z: float = 0.0
    z_hyp: float = 0.9
    z_dep: float = 0.0
    gate_threshold: float = 0.5
    bias_init: float = -6.0
    bias_max: float = -4.0
    detach_recurrence: bool = True
    initial_state: float = 0.0

    def __post_init__(self):
        for name in ("alpha", "z", "z_hyp", "z_dep"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"SRC {name} must lie in [0, 1), got {v}")
        if self.rho <= 0:
            raise ValueError(f"SRC rho must be > 0, got {self.rho}")
        if not -1.0 <= self.initial_state <= 1.0:
            raise ValueError(f"SRC initial_state must lie in [-1, 1], got {self.initial_state}")
        if self.bias_init > self.bias_max:
            raise ValueError(f"SRC bias_init {self.bias_init} exceeds bias_max {self.bias_max}")


class SrcFloatState(NamedTuple):
    """Input current i, fast state h, slow state h_s: each (..., neurons)."""

    current: torch.Tensor
    fast: torch.Tensor
    slow: torch.Tensor


def src_initial_state(shape, dtype=torch.float32, device=None, p: SrcFloatParameters = None) -> SrcFloatState:
    """i = 0, h = h_s = ``p.initial_state`` (0 without ``p``)."""
    z = torch.zeros(shape, dtype=dtype, device=device)
    h0 = 0.0 if p is None else float(p.initial_state)
    return SrcFloatState(z, z + h0, z + h0)


class StraightThroughReLU(torch.autograd.Function):
    """``max(h, 0)`` forward; the gradient passes through unchanged."""

    @staticmethod
    def forward(ctx, h):
        return h.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad


def src_current_step(synaptic_input: torch.Tensor, current: torch.Tensor,
                     p: SrcFloatParameters) -> torch.Tensor:
    """``i[t] = alpha i[t-1] + W s_in[t]`` (synaptic_input is ``W s_in[t]``)."""
    return p.alpha * current + synaptic_input


def src_cell_step(current: torch.Tensor, fast: torch.Tensor, slow: torch.Tensor,
                  bias: torch.Tensor, p: SrcFloatParameters):
    """The cell given the new current i[t] and the previous h, h_s -> (h[t], h_s[t])."""
    x = p.rho * torch.tanh(current / p.rho)
    candidate = torch.tanh(x + p.r * fast + p.r_s * slow + bias)
    h = p.z * fast + (1.0 - p.z) * candidate
    z_s = torch.where(fast.detach() > p.gate_threshold,
                      torch.full_like(fast, p.z_dep), torch.full_like(fast, p.z_hyp))
    h_s = z_s * slow + (1.0 - z_s) * fast
    return h, h_s


def src_step(synaptic_input: torch.Tensor, state: SrcFloatState, bias: torch.Tensor,
             p: SrcFloatParameters):
    """One float SRC step -> ``(s_out, new_state)``; s_out = max(h, 0), straight-through.
    ``bias`` is b_h as used (already clamped)."""
    i = src_current_step(synaptic_input, state.current, p)
    fast, slow = state.fast, state.slow
    if p.detach_recurrence:
        fast, slow = fast.detach(), slow.detach()
    h, h_s = src_cell_step(i, fast, slow, bias, p)
    return StraightThroughReLU.apply(h), SrcFloatState(i, h, h_s)


def src_sequence(synaptic_input: torch.Tensor, bias: torch.Tensor, p: SrcFloatParameters,
                 state: Optional[SrcFloatState] = None, record: bool = False):
    """Run :func:`src_step` over ``synaptic_input`` (batch, time, neurons) from the
    initial state -> outputs (batch, time, neurons); with ``record`` also the states per step
    (a list of :class:`SrcFloatState`)."""
    b, t, n = synaptic_input.shape
    st = state if state is not None else src_initial_state((b, n), synaptic_input.dtype,
                                                           synaptic_input.device, p)
    out, states = [], []
    for k in range(t):
        s, st = src_step(synaptic_input[:, k], st, bias, p)
        out.append(s)
        if record:
            states.append(st)
    y = torch.stack(out, dim=1)
    return (y, states) if record else y


def leaky_readout_sequence(synaptic_input: torch.Tensor, p: SrcFloatParameters) -> torch.Tensor:
    """``o[t] = alpha o[t-1] + W s[t]`` over (batch, time, classes) -> o (batch, time, classes)."""
    o = torch.zeros_like(synaptic_input[:, 0])
    out = []
    for k in range(synaptic_input.shape[1]):
        o = src_current_step(synaptic_input[:, k], o, p)
        out.append(o)
    return torch.stack(out, dim=1)


def _uniform(out_features: int, in_features: int, scale: float) -> nn.Parameter:
    bound = scale / math.sqrt(in_features)
    return nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))


class SRCLayer(DenseFeatures, nn.Module):
    """Dense synapses into a layer of SRC neurons: spikes or graded messages
    (batch, time, in) -> s = max(h, 0) (batch, time, out). b_h is a trainable bias per
    neuron, clamped to ``<= p.bias_max`` in every forward."""

    def __init__(self, in_features: int, out_features: int, p: SrcFloatParameters,
                 weight_scale: float = 1.0):
        super().__init__()
        self.neuron = p
        self.weight = _uniform(out_features, in_features, weight_scale)
        self.bias = nn.Parameter(torch.full((out_features,), float(p.bias_init)))
        self.hardware_forward = None  # set by hardware-aware training (train.src_hardware)

    def clamped_bias(self) -> torch.Tensor:
        return torch.clamp(self.bias, max=self.neuron.bias_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hardware_forward is not None:
            return self.hardware_forward(self, x)
        return src_sequence(x @ self.weight.T, self.clamped_bias(), self.neuron)


class SRCReadout(DenseFeatures, nn.Module):
    """The readout: dense synapses into leaky integrators (the cell's i), no spikes;
    output o (batch, time, classes)."""

    def __init__(self, in_features: int, out_features: int, p: SrcFloatParameters,
                 weight_scale: float = 1.0):
        super().__init__()
        self.neuron = p
        self.weight = _uniform(out_features, in_features, weight_scale)
        self.hardware_forward = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hardware_forward is not None:
            return self.hardware_forward(self, x)
        return leaky_readout_sequence(x @ self.weight.T, self.neuron)


class SRCNetwork(nn.Module):
    """Dense SRC layers of the ``hidden`` sizes, then the leaky readout; input
    (batch, time, *input_shape) of spikes. ``forward`` returns every layer's output;
    ``scores`` the readout's mean over time (batch, classes)."""

    cell = "src"
    num_conv = 0

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int], num_classes: int,
                 p: SrcFloatParameters = SrcFloatParameters(), output: str = "graded"):
        super().__init__()
        if output not in ("graded", "binary"):
            raise ValueError(f"SRC hidden output must be 'graded' or 'binary', got {output!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.neuron = p
        self.output = output
        sizes = [math.prod(self.input_shape), *hidden]
        layers: List[nn.Module] = [SRCLayer(a, b, p) for a, b in zip(sizes[:-1], sizes[1:])]
        layers.append(SRCReadout(sizes[-1], num_classes, p))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        s = x.reshape(x.shape[0], x.shape[1], -1)
        out = []
        for layer in self.layers:
            s = layer(s)
            if self.output == "binary" and isinstance(layer, SRCLayer) and layer.hardware_forward is None:
                s = _binary_straight_through(s)
            out.append(s)
        return out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[-1].mean(dim=1)


def _binary_straight_through(s: torch.Tensor) -> torch.Tensor:
    """Binary output ``h > 0`` (s = max(h, 0) > 0) with the graded value's gradient."""
    return s + ((s > 0).to(s.dtype) - s).detach()
