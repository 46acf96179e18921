"""The chip's fixed-point arithmetic of :mod:`neurodeploy.fixedpoint` on torch tensors.

:mod:`neurodeploy.fixedpoint` holds the constants, bit widths, quantisation rules and
the compiled per-neuron loops (numpy only); this module holds the same steps on
tensors, for the hardware-aware training forward (float64 tensors holding integers,
exact below 2**53, with straight-through gradients) and the simulator's batched
synapses and fallback loops (integer tensors). Constants come from
:mod:`neurodeploy.fixedpoint`; nothing is redefined here. Tested against Lava's
``PyLifModelBitAcc`` / ``PyDenseModelBitAcc`` / sigma-delta models (``fixed_pt``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from neurodeploy.fixedpoint import (
    ACTIVATION_SHIFT,
    BIAS_EXP,
    DECAY_SHIFT,
    DECAY_UNITY,
    INT32_MIN,
    SDNN_SCALE,
    SDNN_STATE_EXP,
    STATE_MAX,
    THRESHOLD_SHIFT,
    VOLTAGE_LIMIT,
    CubaParameters,
    field_array,
    quantize_weights,
)


def _per_neuron(value, like: torch.Tensor):
    """A neuron field as a scalar, or a tensor of per-neuron values broadcasting
    over the last axis of ``like`` (repeated when the axis holds several copies)."""
    if isinstance(value, tuple):
        n = like.shape[-1] if like.dim() else len(value)
        return torch.from_numpy(field_array(value, n)).to(like.dtype if like.is_floating_point()
                                                           else torch.int64)
    return value


# --- rounding, decay, wrap, saturation --------------------------------------
def shift_left(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x << bits`` for integer or integer-valued float tensors (bits >= 0)."""
    return x * (1 << bits)


def shift_right_floor(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Arithmetic ``x >> bits`` (rounds toward -inf), as numpy's right_shift; integer
    tensors shift (several times faster than a floor division), integer-valued float
    tensors divide."""
    if x.is_floating_point():
        return torch.div(x, 1 << bits, rounding_mode="floor")
    return torch.bitwise_right_shift(x, bits)


def decay(x: torch.Tensor, decay_factor) -> torch.Tensor:
    """``trunc0(x * (4096 - decay_factor) / 4096)``: Loihi's decay, rounding toward zero
    (Lava: ``sign(p) * (|p| >> 12)``).

    ``decay_factor`` is a 12-bit decay (0 keeps x, 4096 zeroes it); a scalar or a
    tensor broadcastable to x.
    """
    p = x * (DECAY_UNITY - decay_factor)
    if p.dtype.is_floating_point:
        return torch.trunc(p / DECAY_UNITY)
    r = p.abs() >> DECAY_SHIFT
    return torch.where(p < 0, -r, r)


def wrap_current(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of the current: once, ``u > 2**23 -> u - 2**24`` and
    ``u <= -2**23 -> u + 2**24`` (values further out wrap only once, as in Lava)."""
    u = torch.where(u > STATE_MAX, u - 2 * STATE_MAX, u)
    return torch.where(u <= -STATE_MAX, u + 2 * STATE_MAX, u)


def saturate_voltage(v: torch.Tensor) -> torch.Tensor:
    """Clip the voltage to the 24-bit range ``[-(2**23 - 1), 2**23 - 1]``."""
    return torch.clamp(v, -VOLTAGE_LIMIT, VOLTAGE_LIMIT)


class CubaState(NamedTuple):
    """Current u and voltage v (24-bit integers, in units of weight << 6)."""

    current: torch.Tensor
    voltage: torch.Tensor


def cuba_initial_state(shape, dtype=torch.int64, device=None) -> CubaState:
    z = torch.zeros(shape, dtype=dtype, device=device)
    return CubaState(z, z.clone())


def cuba_subthreshold(
    synaptic_input: torch.Tensor,
    state: CubaState,
    p: CubaParameters,
    bias: Optional[torch.Tensor] = None,
) -> CubaState:
    """Leaky integration of one step, before the threshold (see module docstring)."""
    u = wrap_current(decay(state.current, _per_neuron(p.current_decay, state.current))
                     + shift_left(synaptic_input, ACTIVATION_SHIFT))
    v = decay(state.voltage, _per_neuron(p.voltage_decay, state.voltage)) + u
    if bias is not None:
        v = v + shift_left(bias, BIAS_EXP)
    return CubaState(u, saturate_voltage(v))


def cuba_step(
    synaptic_input: torch.Tensor,
    state: CubaState,
    p: CubaParameters,
    bias: Optional[torch.Tensor] = None,
):
    """One bit-accurate CUBA-LIF step -> ``(spikes, new_state)``.

    synaptic_input: integer input ``a`` (int16 on the chip), shape (..., neurons)
    spikes: bool tensor; strict threshold ``v > threshold << 6``; v is reset to 0
    where a spike occurs; u is not reset.
    """
    u, v = cuba_subthreshold(synaptic_input, state, p, bias)
    spikes = v > shift_left(torch.as_tensor(_per_neuron(p.threshold, v)), THRESHOLD_SHIFT)
    v = torch.where(spikes, torch.zeros_like(v), v)
    return spikes, CubaState(u, v)


def synaptic_input(weight: torch.Tensor, spikes: torch.Tensor, weight_exp: int = 0) -> torch.Tensor:
    """Dense synaptic input ``a = (W @ s) << weight_exp`` (arithmetic right shift
    for negative exponents). weight: (out, in) integers; spikes: (..., in), binary
    or graded. Float tensors holding integers stay exact while |a| < 2**53 (the
    training forward); integer tensors are multiplied in int64. The simulator's
    batched synapses (sim.simulator) pick an exact faster dtype from bounds."""
    if weight.dtype.is_floating_point or spikes.dtype.is_floating_point:
        a = spikes.to(torch.float64) @ weight.to(torch.float64).T
    else:
        a = spikes.to(torch.int64) @ weight.to(torch.int64).T
    return shift_exponent(a, weight_exp)


def quantize_weight_tensor(weight: torch.Tensor, exponent: int) -> torch.Tensor:
    """:func:`neurodeploy.fixedpoint.quantize_weights` on a tensor: Loihi 8-bit
    integer weights at scale 2**exponent, as a tensor of the same dtype and device
    holding integers (the exporter's rule, used with a straight-through gradient by
    hardware-aware training). No gradient flows through it."""
    q = quantize_weights(weight.detach().cpu().double().numpy(), exponent)
    return torch.from_numpy(q).to(dtype=weight.dtype, device=weight.device)


def shift_exponent(a: torch.Tensor, exponent: int) -> torch.Tensor:
    """``a << exponent`` (arithmetic floor shift ``>> -exponent`` when negative)."""
    if exponent > 0:
        return shift_left(a, exponent)
    if exponent < 0:
        return shift_right_floor(a, -exponent)
    return a


def graded_dense_input(product: torch.Tensor, exponent: int) -> torch.Tensor:
    """Lava's bit-accurate Dense on graded messages: the integer product ``W @ s``
    (int64, exact) as numpy's int32 dot leaves it (wrapped to 32 bits), then
    ``<< exponent`` (floor ``>>`` when negative) in int32."""
    a = wrap_int32(product)
    if exponent > 0:
        return wrap_int32(shift_left(a, exponent))
    return shift_exponent(a, exponent)  # a right shift stays within int32


def graded_delay_dense_input(weight: torch.Tensor, messages: torch.Tensor, exponent: int,
                             rows: int = 256) -> torch.Tensor:
    """Lava's bit-accurate DelayDense (netx's dense block with delays) on graded
    messages, for the weights of one delay: each product ``w * s`` in numpy int32
    (wrapped to 32 bits), their sum in int64, then ``<< exponent`` (floor ``>>`` when
    negative) in int64. The caller adds the delays' results into Lava's int32 buffer
    (:func:`wrap_int32` of the sum). weight (out, in), messages (..., in): integers."""
    w = weight.to(torch.int64)
    s = messages.to(torch.int64)
    top_s = int(s.abs().max()) if s.numel() else 0
    top_w = int(w.abs().max()) if w.numel() else 0
    if top_s * top_w < 2 ** 31:  # no product wraps: one exact matrix product
        bound = top_s * (int(w.abs().sum(1).max()) if w.numel() else 0)
        dtype = torch.float32 if bound < 2 ** 24 else torch.float64 if bound < 2 ** 53 else None
        a = s @ w.T if dtype is None else (s.to(dtype) @ w.to(dtype).T).to(torch.int64)
        return shift_exponent(a, exponent)
    flat = s.reshape(-1, s.shape[-1])
    out = torch.empty((flat.shape[0], w.shape[0]), dtype=torch.int64)
    for r in range(0, flat.shape[0], rows):  # (rows, out, in) products at a time
        out[r:r + rows] = wrap_int32(flat[r:r + rows, None, :] * w[None]).sum(-1)
    return shift_exponent(out.reshape(s.shape[:-1] + (w.shape[0],)), exponent)


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap to ``bits`` (Lava Conv's ``signed_clamp``); integer
    tensors by a bit mask, integer-valued float tensors by a remainder."""
    base = 1 << bits
    if x.is_floating_point():
        return torch.remainder(x + base // 2, base) - base // 2
    y = x + base // 2
    return y.bitwise_and_(base - 1).sub_(base // 2)


class SigmaDeltaState(NamedTuple):
    """sigma (accumulated input), act (previous activation), residue; integers
    in units of 2**-12 of the graded spike (24-bit registers in Lava)."""

    sigma: torch.Tensor
    act: torch.Tensor
    residue: torch.Tensor


def wrap_int32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap to 32 bits, as numpy int32 arithmetic does."""
    return wrap_signed(x, 32)


def delta_encode(act: torch.Tensor, prev_act: torch.Tensor, residue: torch.Tensor,
                 threshold: int):
    """Delta encoding: ``delta = act - prev_act + residue`` (int32); send ``delta``
    where ``|delta| >= threshold << 12`` (non-strict; int32 abs, so never for -2**31),
    keep the rest as residue. Returns ``(s_scaled, new_residue)``; the graded spike
    sent is ``s_scaled >> state_exp`` (floor)."""
    delta = wrap_int32(act - prev_act + residue)
    sent = (delta.abs() >= (int(threshold) << SDNN_SCALE)) & (delta != INT32_MIN)
    s = torch.where(sent, delta, torch.zeros_like(delta))
    return s, delta - s


def sigma_delta_step(a: torch.Tensor, state: SigmaDeltaState, threshold: int,
                     bias: Optional[torch.Tensor] = None):
    """One fixed-point SigmaDelta step (``PySigmaDeltaModelFixed``) with netx's
    ReLU activation -> ``(graded spikes, new_state)``:
    ``sigma += a; act = relu(sigma + bias << 12); s = delta_encode(...) >> 6``, in
    int32 registers."""
    sigma = wrap_int32(state.sigma + a)
    act = sigma if bias is None else wrap_int32(sigma + shift_left(bias, SDNN_SCALE))
    act = torch.clamp(act, min=0)
    s, residue = delta_encode(act, state.act, state.residue, threshold)
    return shift_right_floor(s, SDNN_STATE_EXP), SigmaDeltaState(sigma, act, residue)


def delta_input_step(a: torch.Tensor, state: SigmaDeltaState, threshold: int):
    """netx's SDNN input layer (``PyDeltaModelFixed``): ``act = a << 12``; delta
    encoded as in :func:`sigma_delta_step`, no bias, no ReLU (int32 registers)."""
    act = wrap_int32(shift_left(a, SDNN_SCALE))
    s, residue = delta_encode(act, state.act, state.residue, threshold)
    return shift_right_floor(s, SDNN_STATE_EXP), SigmaDeltaState(state.sigma, act, residue)
