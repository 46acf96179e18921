"""Loihi's fixed-point neuron and synapse arithmetic, defined once.

Everything that must give the chip's spikes bit for bit calls this module: the
quantiser, the hardware-exact evaluation, the bit-accurate simulator and the
hardware-aware training forward. It is pure torch (no Lava import); the outside
reference it is tested against is Lava's ``PyLifModelBitAcc`` and
``PyDenseModelBitAcc`` (tag ``fixed_pt``) as lava-dl's netx builds them.

The functions work on integer tensors (``torch.int64``) and on float64 tensors
that hold integers (exact while values stay below 2**53), so a training forward
can run the same arithmetic with straight-through gradients.

CUBA-LIF step, in Lava's order (all quantities integers):

    u[t] = wrap24( trunc0(u[t-1] * (4096 - current_decay) / 4096) + (a[t] << 6) )
    v[t] = sat24( trunc0(v[t-1] * (4096 - voltage_decay) / 4096) + u[t] + (bias << 6) )
    s[t] = v[t] > (threshold << 6);   v[t] = 0 where s[t]

``current_decay`` here is netx's ``iDecay`` (Lava's ``du + 1``: the +1 current
decay offset); ``voltage_decay`` is ``vDecay`` = Lava's ``dv``; ``threshold`` is
``vThMant`` = Lava's ``vth``; ``bias`` is the bias mantissa with netx's fixed
``bias_exp = 6``. ``trunc0`` rounds toward zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

# --- Loihi constants -------------------------------------------------------
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT  # 4096: decays are 12-bit fractions of this
STATE_BITS = 24  # u and v are 24-bit signed registers
STATE_MAX = 1 << (STATE_BITS - 1)  # 2**23
VOLTAGE_LIMIT = STATE_MAX - 1  # v saturates at +-(2**23 - 1)
ACTIVATION_SHIFT = 6  # synaptic input is MSB-aligned: a << 6
THRESHOLD_SHIFT = 6  # threshold is MSB-aligned: vth << 6
BIAS_EXP = 6  # netx maps a CUBA bias to bias_mant with bias_exp = 6

CURRENT_DECAY_RANGE = (1, 4096)  # netx iDecay; Lava du = iDecay - 1 is unsigned 12 bit
VOLTAGE_DECAY_RANGE = (0, 4095)  # netx vDecay = Lava dv, unsigned 12 bit
THRESHOLD_RANGE = (0, (1 << 17) - 1)  # vth, unsigned 17 bit
BIAS_RANGE = (-(1 << 12), (1 << 12) - 1)  # bias mantissa, signed 13 bit

WEIGHT_BITS = 8
#: Integer synaptic weights as Lava's Dense accepts them after its clip, by sign mode.
WEIGHT_RANGE_MIXED = (-256, 254)  # mixed-sign 8 bit: even values only (lowest bit truncated)
WEIGHT_RANGE_EXCITATORY = (0, 255)
WEIGHT_RANGE_INHIBITORY = (-255, 0)


class BitWidthError(ValueError):
    """A parameter lies outside the bit width Loihi gives it."""


def check_range(name: str, values, lo: int, hi: int, where: str = "") -> None:
    """Raise :class:`BitWidthError` naming ``name`` if any value is outside [lo, hi]
    or not an integer."""
    arr = np.asarray(values)
    if arr.size == 0:
        return
    if not np.all(np.isfinite(arr)) or not np.all(np.equal(np.round(arr), arr)):
        raise BitWidthError(f"{where}{name} must hold integers, got {arr.ravel()[:4]}...")
    mn, mx = arr.min(), arr.max()
    if mn < lo or mx > hi:
        raise BitWidthError(
            f"{where}{name} out of Loihi's range [{lo}, {hi}]: found min {mn}, max {mx}"
        )


# --- rounding, decay, wrap, saturation --------------------------------------
def shift_left(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x << bits`` for integer or integer-valued float tensors (bits >= 0)."""
    return x * (1 << bits)


def shift_right_floor(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Arithmetic ``x >> bits`` (rounds toward -inf), as numpy's right_shift."""
    return torch.div(x, 1 << bits, rounding_mode="floor")


def decay(x: torch.Tensor, decay_factor) -> torch.Tensor:
    """``trunc0(x * (4096 - decay_factor) / 4096)``: Loihi's decay, rounding toward zero.

    ``decay_factor`` is a 12-bit decay (0 keeps x, 4096 zeroes it); a scalar or a
    tensor broadcastable to x.
    """
    return torch.div(x * (DECAY_UNITY - decay_factor), DECAY_UNITY, rounding_mode="trunc")


def wrap_current(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of the current: once, ``u > 2**23 -> u - 2**24`` and
    ``u <= -2**23 -> u + 2**24`` (values further out wrap only once, as in Lava)."""
    u = torch.where(u > STATE_MAX, u - 2 * STATE_MAX, u)
    return torch.where(u <= -STATE_MAX, u + 2 * STATE_MAX, u)


def saturate_voltage(v: torch.Tensor) -> torch.Tensor:
    """Clip the voltage to the 24-bit range ``[-(2**23 - 1), 2**23 - 1]``."""
    return torch.clamp(v, -VOLTAGE_LIMIT, VOLTAGE_LIMIT)


# --- CUBA-LIF ---------------------------------------------------------------
@dataclass(frozen=True)
class CubaParameters:
    """Integer CUBA-LIF parameters, in netx's fields.

    current_decay: iDecay, 1..4096 (12 bit + Loihi's offset; 4096 zeroes u each step)
    voltage_decay: vDecay, 0..4095 (12 bit; 0 = no leak)
    threshold: vThMant, 0..131071 (17 bit); spikes when v > threshold << 6
    """

    current_decay: int
    voltage_decay: int
    threshold: int

    def __post_init__(self):
        check_range("current_decay (iDecay)", self.current_decay, *CURRENT_DECAY_RANGE)
        check_range("voltage_decay (vDecay)", self.voltage_decay, *VOLTAGE_DECAY_RANGE)
        check_range("threshold (vThMant)", self.threshold, *THRESHOLD_RANGE)


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
    u = wrap_current(decay(state.current, p.current_decay)
                     + shift_left(synaptic_input, ACTIVATION_SHIFT))
    v = decay(state.voltage, p.voltage_decay) + u
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
    spikes = v > shift_left(torch.as_tensor(p.threshold), THRESHOLD_SHIFT)
    v = torch.where(spikes, torch.zeros_like(v), v)
    return spikes, CubaState(u, v)


# --- synapses ---------------------------------------------------------------
def sign_mode(weight: np.ndarray) -> str:
    """Lava's inferred sign mode: 'excitatory' (all >= 0), 'inhibitory' (all <= 0,
    some < 0) or 'mixed'."""
    w = np.asarray(weight)
    if w.size and w.min() >= 0:
        return "excitatory"
    if w.size and w.max() <= 0:
        return "inhibitory"
    return "mixed"


def effective_weights(weight: np.ndarray, num_weight_bits: int = WEIGHT_BITS) -> np.ndarray:
    """The integer weights Lava's bit-accurate Dense uses: clip by sign mode to
    8 bit, then truncate ``(W >> k) << k`` with ``k = 8 - num_weight_bits + mixed``
    (on |W| for inhibitory). Mixed-sign 8-bit weights lose their lowest bit."""
    w = np.asarray(weight).astype(np.int64)
    mode = sign_mode(w)
    lo, hi = {"mixed": WEIGHT_RANGE_MIXED[0:1] + (255,),
              "excitatory": WEIGHT_RANGE_EXCITATORY,
              "inhibitory": WEIGHT_RANGE_INHIBITORY}[mode]
    w = np.clip(w, lo, hi)
    k = 8 - num_weight_bits + int(mode == "mixed")
    if mode == "inhibitory":
        return -((-w >> k) << k)
    return (w >> k) << k


def synaptic_input(weight: torch.Tensor, spikes: torch.Tensor, weight_exp: int = 0) -> torch.Tensor:
    """Dense synaptic input ``a = (W @ s) << weight_exp`` (arithmetic right shift
    for negative exponents). weight: (out, in) integers; spikes: (..., in), binary
    or graded. Exact in float64 while |a| < 2**53."""
    a = spikes.to(weight.dtype) @ weight.T
    if weight_exp > 0:
        return shift_left(a, weight_exp)
    if weight_exp < 0:
        return shift_right_floor(a, -weight_exp)
    return a


def conv_synaptic_input(spikes: torch.Tensor, weight: torch.Tensor, stride, padding, dilation,
                        groups: int) -> torch.Tensor:
    """Lava's fixed-point Conv (``lava.proc.conv``): ``F.conv2d`` in float32 on the
    (C, H, W) layout with the stored (out, in, kH, kW) integer weights, cast to int
    (toward zero), then a signed 24-bit wrap. No weight truncation or exponent.
    spikes: (N, C, H, W) integers -> (N, C', H', W') int64."""
    a = torch.nn.functional.conv2d(spikes.to(torch.float32), weight.to(torch.float32), stride=stride,
                                   padding=padding, dilation=dilation, groups=groups)
    a = a.to(torch.int64)  # numpy astype(int32): truncation toward zero
    base = 1 << 24
    return torch.remainder(a + base // 2, base) - base // 2


# --- quantisation -----------------------------------------------------------
def choose_weight_exponent(max_abs_weight: float, limit: int = WEIGHT_RANGE_MIXED[1]) -> int:
    """Largest exponent e with ``max_abs_weight * 2**e <= limit`` (8-bit mantissa).

    The float network is scaled by 2**e per layer so its largest weight uses the
    full 8-bit range; e is the layer's weight exponent (in netx the synapse's own
    exponent is then inferred from the stored integers, see export.netx).
    """
    if not np.isfinite(max_abs_weight):
        raise ValueError(f"weight magnitude is not finite: {max_abs_weight}")
    if max_abs_weight <= 0:
        return 0
    return int(np.floor(np.log2(limit / max_abs_weight)))


def quantize_weight_tensor(weight: torch.Tensor, exponent: int) -> torch.Tensor:
    """Float weights -> Loihi 8-bit integer weights at scale 2**exponent, as a
    tensor of the same dtype holding integers (used by the exporter and, with a
    straight-through gradient, by hardware-aware training).

    Rounds to the nearest representable value: for mixed-sign layers the even
    integers in [-256, 254] (Lava drops the lowest bit of mixed-sign weights),
    for single-sign layers the integers in [0, 255] or [-255, 0].
    """
    w = weight * (2.0 ** exponent)
    mode = sign_mode(w.detach().cpu().numpy())
    if mode == "mixed":
        q = torch.clamp(2 * torch.round(w / 2), *WEIGHT_RANGE_MIXED)
        # Rounding can make a mixed layer single-signed (all negatives round to 0);
        # even values are still a fixed point of Lava's truncation then.
    elif mode == "excitatory":
        q = torch.clamp(torch.round(w), *WEIGHT_RANGE_EXCITATORY)
    else:
        q = torch.clamp(torch.round(w), *WEIGHT_RANGE_INHIBITORY)
    return q


def quantize_weights(weight: np.ndarray, exponent: int) -> np.ndarray:
    """numpy front end of :func:`quantize_weight_tensor`: int64 weights that are a
    fixed point of :func:`effective_weights` (what Lava's Dense will use)."""
    q = quantize_weight_tensor(torch.as_tensor(np.asarray(weight, dtype=np.float64)), exponent)
    q = q.numpy().astype(np.int64)
    assert np.array_equal(effective_weights(q), q)
    return q


def quantize_decay(decay_fraction: float, offset_current: bool) -> int:
    """A float decay fraction per step (0..1) -> its 12-bit integer field.

    Current decays use Loihi's +1 offset (iDecay in 1..4096); voltage decays
    have none (vDecay in 0..4095)."""
    lo, hi = CURRENT_DECAY_RANGE if offset_current else VOLTAGE_DECAY_RANGE
    return int(np.clip(np.round(decay_fraction * DECAY_UNITY), lo, hi))


def quantize_threshold(threshold: float, exponent: int) -> int:
    """Float threshold (weight units) -> vThMant at scale 2**exponent (17 bit)."""
    q = int(np.round(threshold * 2.0 ** exponent))
    check_range("threshold (vThMant)", q, *THRESHOLD_RANGE)
    return q
