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
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch

from neurodeploy._numba import parallel, prange as _prange
from neurodeploy.errors import InputError

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

#: (iDecay, vDecay, vThMant) netx gives a dense block stored without a ``neuron/``
#: group: a non-leaky integrator built as Lava LIF(du=-1, dv=4096, vth=1 << 17).
#: Outside the 12/17-bit fields, but it is what Lava runs; accepted only as a whole.
NETX_DEFAULT_CUBA = (0, 4096, 1 << 17)
#: Integer synaptic weights as Lava's Dense accepts them after its clip, by sign mode.
WEIGHT_RANGE_MIXED = (-256, 254)  # mixed-sign 8 bit: even values only (lowest bit truncated)
WEIGHT_RANGE_EXCITATORY = (0, 255)
WEIGHT_RANGE_INHIBITORY = (-255, 0)


class BitWidthError(InputError):
    """A parameter lies outside the bit width Loihi gives it."""


def check_range(name: str, values, lo: int, hi: int, where: str = "") -> None:
    """Raise :class:`BitWidthError` naming ``name`` if any value is outside [lo, hi]
    or not an integer."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):  # fast path
        if not lo <= values <= hi:
            raise BitWidthError(f"{where}{name} out of Loihi's range [{lo}, {hi}]: found {int(values)}")
        return
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


def shift_left_(x: torch.Tensor, bits: int) -> torch.Tensor:
    """In-place :func:`shift_left` (float tensors holding integers, or int64)."""
    return x.mul_(1 << bits)


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
        if (self.current_decay, self.voltage_decay, self.threshold) == NETX_DEFAULT_CUBA:
            return  # netx's neuron for a block without a neuron group (see NETX_DEFAULT_CUBA)
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


def cuba_step_(current: torch.Tensor, voltage: torch.Tensor, synaptic_input: torch.Tensor,
               p: CubaParameters, bias_x64: Optional[torch.Tensor] = None) -> torch.Tensor:
    """In-place :func:`cuba_step` for the simulator's inner loop -> spikes (0/1).

    current, voltage: float64 (or int64) tensors holding the integers u, v; updated
    in place. synaptic_input: ``a`` (any integer or integer-valued dtype; added
    as ``a << 6``); bias_x64: ``bias << 6`` or None. Same arithmetic as :func:`cuba_step`
    (float64 is exact here: |u * 4096| < 2**37), in as few tensor passes as
    possible: decays skipped when they are identities, the once-only 24-bit wrap
    of u only evaluated when some |u| leaves the range. Returns the spikes as
    0/1 in the dtype of v.
    """
    u, v = current, voltage
    if p.current_decay != 0:
        u.mul_(DECAY_UNITY - p.current_decay).div_(DECAY_UNITY, rounding_mode="trunc")
    u.add_(synaptic_input, alpha=1 << ACTIVATION_SHIFT)
    lo, hi = torch.aminmax(u)
    if hi > STATE_MAX or lo <= -STATE_MAX:
        u.copy_(wrap_current(u))
    if p.voltage_decay != 0:
        v.mul_(DECAY_UNITY - p.voltage_decay).div_(DECAY_UNITY, rounding_mode="trunc")
    v.add_(u)
    if bias_x64 is not None:
        v.add_(bias_x64)
    v.clamp_(-VOLTAGE_LIMIT, VOLTAGE_LIMIT)
    # strict threshold on integers: v > th  <=>  clamp(v - th, 0, 1) == 1; reset
    # v to 0 where it spiked (v -= v * s): cheaper than a bool mask and a fill
    spikes = torch.sub(v, p.threshold << THRESHOLD_SHIFT).clamp_(0, 1)
    v.addcmul_(v, spikes, value=-1)
    return spikes


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
    or graded. Float tensors holding integers stay exact while |a| < 2**53 (the
    training forward); integer tensors are multiplied in int64. The simulator's
    batched synapses (sim.simulator) pick an exact faster dtype from bounds."""
    if weight.dtype.is_floating_point or spikes.dtype.is_floating_point:
        a = spikes.to(torch.float64) @ weight.to(torch.float64).T
    else:
        a = spikes.to(torch.int64) @ weight.to(torch.int64).T
    return shift_exponent(a, weight_exp)


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


# --- compiled CUBA-LIF layer (the simulator's hot loop) -----------------------
# The same step as :func:`cuba_step`, written per neuron over scalars so numba can
# compile it into one loop over (neuron, time) with the state in registers. Both
# forms are checked against Lava's PyLifModelBitAcc by the test suite.
def _cuba_neuron_steps(a, a_first, scale, delayed, current_factor, voltage_factor, threshold_eff,
                       bias, has_bias, reset, u_state, v_state, spikes, u_rec, v_rec, record):  # pragma: no cover
    # time outer, neurons inner: the input, state and spikes are read and written
    # contiguously and the neuron loop is split across cores
    steps, n = a.shape
    for t in range(steps):
        reset_t = reset[t]
        for j in _prange(n):
            if delayed:  # input of step t is a[t - 1] (a_first at t = 0): the synapse's delay
                a_t = np.int64(a_first[j]) if t == 0 else np.int64(a[t - 1, j])
            else:
                a_t = np.int64(a[t, j])
            u = 0 if reset_t else u_state[j]
            v = 0 if reset_t else v_state[j]
            p = u * current_factor
            r = (p if p >= 0 else -p) >> DECAY_SHIFT
            u = (r if p >= 0 else -r) + ((a_t * scale) << ACTIVATION_SHIFT)
            if u > STATE_MAX:
                u -= 2 * STATE_MAX
            elif u <= -STATE_MAX:
                u += 2 * STATE_MAX
            q = v * voltage_factor
            r = (q if q >= 0 else -q) >> DECAY_SHIFT
            v = (r if q >= 0 else -r) + u + ((bias[j] << BIAS_EXP) if has_bias else 0)
            v = min(max(v, -VOLTAGE_LIMIT), VOLTAGE_LIMIT)
            fired = v > threshold_eff
            spikes[t, j] = 1 if fired else 0
            v = 0 if fired else v
            u_state[j] = u
            v_state[j] = v
            if record:
                u_rec[t, j] = u
                v_rec[t, j] = v


def compiled_cuba_steps():
    """The numba-compiled per-neuron loop, or None when numba is unavailable."""
    return parallel(_cuba_neuron_steps)


def cuba_run(a: np.ndarray, p: CubaParameters, bias: Optional[np.ndarray], reset: np.ndarray,
             state: Optional[tuple] = None, record: bool = False, a_first: Optional[np.ndarray] = None,
             scale: int = 1, spikes: Optional[np.ndarray] = None):
    """Run CUBA-LIF neurons over synaptic input ``scale * a`` (steps, neurons) integers,
    resetting u and v before the steps where ``reset`` is True. With ``a_first`` the
    input is delayed by one step (step t gets a[t - 1], step 0 gets a_first), as a
    Lava synapse delivers it. Returns (spikes (steps, neurons) uint8, (u, v) final
    state, u_rec, v_rec); ``spikes``, when given, is written in place."""
    steps, n = a.shape
    if a_first is not None or scale != 1:
        if compiled_cuba_steps() is None:  # the torch fallback takes the delayed, scaled input
            first = np.zeros(n, np.int64) if a_first is None else np.asarray(a_first, np.int64)
            full = np.asarray(a, np.int64) * scale
            if a_first is not None:
                full = np.concatenate([first[None] * scale, full[:-1]])
            return cuba_run(full, p, bias, reset, state, record, spikes=spikes)
    u = np.zeros(n, np.int64) if state is None else state[0]
    v = np.zeros(n, np.int64) if state is None else state[1]
    # the bias mantissa per neuron, shifted in the loop (no per-call n-sized array when
    # the caller already holds one, or there is none)
    has_bias = bias is not None
    bias_mant = np.zeros(1, np.int64) if bias is None else np.asarray(bias, np.int64)
    if has_bias and (bias_mant.shape != (n,) or not bias_mant.flags.c_contiguous):
        bias_mant = np.ascontiguousarray(np.broadcast_to(bias_mant, (n,)))
    if spikes is None:
        spikes = np.empty((steps, n), np.uint8)
    elif spikes.shape != (steps, n) or spikes.dtype != np.uint8:
        raise ValueError(f"spikes buffer must be uint8 of shape {(steps, n)}, got {spikes.dtype} {spikes.shape}")
    u_rec = np.empty((steps, n), np.int64) if record else np.empty((1, 1), np.int64)
    v_rec = np.empty((steps, n), np.int64) if record else np.empty((1, 1), np.int64)
    kernel = compiled_cuba_steps()
    if kernel is None:  # pure torch fallback, same arithmetic
        st = CubaState(torch.from_numpy(u), torch.from_numpy(v))
        b = torch.from_numpy(np.asarray(bias, np.int64)) if bias is not None else None
        at = torch.from_numpy(np.ascontiguousarray(a, np.int64))
        for k in range(steps):
            if reset[k]:
                st = cuba_initial_state((n,))
            s_k, st = cuba_step(at[k], st, p, b)
            spikes[k] = s_k.numpy()
            if record:
                u_rec[k], v_rec[k] = st.current.numpy(), st.voltage.numpy()
        return spikes, (st.current.numpy().copy(), st.voltage.numpy().copy()), u_rec, v_rec
    delayed = a_first is not None
    first = np.ascontiguousarray(a_first if delayed else np.zeros(1, a.dtype), dtype=a.dtype)
    kernel(np.ascontiguousarray(a), first, int(scale), delayed, DECAY_UNITY - p.current_decay, DECAY_UNITY - p.voltage_decay,
           p.threshold << THRESHOLD_SHIFT, bias_mant, has_bias, np.ascontiguousarray(reset, np.bool_),
           u, v, spikes, u_rec, v_rec, record)
    return spikes, (u, v), u_rec, v_rec
# --- netx synapses as Lava builds them ---------------------------------------
MAX_DELAY = 62  # netx DelayDense max_delay (6-bit axonal delays)
CONV_ACCUMULATOR_BITS = 24  # Lava's fixed-point Conv wraps its output to signed 24 bit


def netx_dense_weights(weight: np.ndarray, apply_exponent: bool = True):
    """The integer weights and weight exponent Lava's bit-accurate Dense uses for a
    weight matrix read from a netx file -> ``(weights int64, weight_exp)``.

    Replicates ``lava.lib.dl.netx.utils.optimize_weight_bits`` (scale the stored
    integers up by ``scale_bits`` into the 8-bit range, ``weight_exp = -scale_bits``,
    ``num_weight_bits`` from the common power-of-two factor, sign mode from the
    signs) followed by ``PyDenseModelBitAcc``'s first-step clip and truncation
    (sign mode re-inferred by Lava's Dense). ``apply_exponent=False`` reproduces
    netx's recurrent block with delays, whose synapses get no ``weight_exp``.
    Synaptic input is then ``(W @ s) << weight_exp`` (floor shift for < 0).
    Weights outside [-256, 255] raise :class:`BitWidthError` (netx would clip).
    """
    w = np.asarray(weight).astype(np.int64)
    if w.size == 0 or not np.any(w):
        return np.zeros_like(w), 0
    mx, mn = int(w.max()), int(w.min())
    if mn < 0 < mx and (mx > 254 or mn < -256):
        raise BitWidthError(f"mixed-sign weights must lie in [-256, 254], found [{mn}, {mx}]")
    if mn >= 0 and mx > 255 or mx <= 0 and mn < -256:
        raise BitWidthError(f"weights must lie in [-256, 255], found [{mn}, {mx}]")
    # netx's sign mode: inhibitory only when all weights are < 0
    if mx < 0:
        mode, signed, scale = "inhibitory", 0, -256 / mn
    elif mn >= 0:
        mode, signed, scale = "excitatory", 0, 255 / mx
    else:
        mode, signed = "mixed", 1
        scale = min(127 / mx, -128 / mn)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    # n: largest power of two (<= 8) dividing every weight (netx's rounding-error loop)
    bits = int(np.bitwise_or.reduce(np.abs(w).ravel()))
    n = 8 if bits == 0 else min(8, (bits & -bits).bit_length() - 1)
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    if scale_bits < 0:
        raise BitWidthError(f"weights {mn}..{mx} need a negative netx scale ({scale_bits})")
    w = w << scale_bits
    # Lava Dense: clip to 8 bit by its own sign mode, then truncate
    return effective_weights(w, num_weight_bits), (weight_exp if apply_exponent else 0)


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


# --- sigma-delta (lava.proc.sdn, fixed_pt, as netx builds it) ---------------
SDNN_SPIKE_EXP = 6  # netx Network(spike_exp=6)
SDNN_STATE_EXP = 6  # netx's state_exp
SDNN_SCALE = SDNN_SPIKE_EXP + SDNN_STATE_EXP  # vth and bias are << 12


class SigmaDeltaState(NamedTuple):
    """sigma (accumulated input), act (previous activation), residue; integers
    in units of 2**-12 of the graded spike (24-bit registers in Lava)."""

    sigma: torch.Tensor
    act: torch.Tensor
    residue: torch.Tensor


#: Lava's sigma-delta models and graded Dense products compute in numpy int32: every
#: register (sigma, act, residue, the synaptic sum) wraps at 32 bits, and np.abs of
#: -2**31 is -2**31 (never at or above a threshold)
INT32_MIN = -(1 << 31)


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


# --- compiled sigma-delta layer (the simulator's loop for SDNN layers) ---------
# The same steps as :func:`sigma_delta_step`, :func:`delta_input_step` and a sigma
# output layer, per neuron over scalars; checked against Lava by the test suite.
SD_HIDDEN, SD_INPUT, SD_SIGMA_OUTPUT = 0, 1, 2


def _sigma_delta_neuron_steps(a, a_first, delayed, kind, threshold_eff, bias, has_bias,
                              sigma, act, residue, out, sigma_rec, record):  # pragma: no cover
    steps, n = a.shape
    for t in range(steps):
        for j in _prange(n):
            if delayed:
                a_t = np.int64(a_first[j]) if t == 0 else np.int64(a[t - 1, j])
            else:
                a_t = np.int64(a[t, j])
            # int32 registers: np.int64(np.int32(v)) wraps v to 32 bits
            if kind == SD_SIGMA_OUTPUT:
                sigma[j] = np.int64(np.int32(sigma[j] + a_t))
                out[t, j] = sigma[j]
            else:
                if kind == SD_INPUT:
                    new_act = np.int64(np.int32(a_t << SDNN_SCALE))
                else:
                    sigma[j] = np.int64(np.int32(sigma[j] + a_t))
                    new_act = np.int64(np.int32(
                        sigma[j] + ((np.int64(bias[j]) << SDNN_SCALE) if has_bias else 0)))
                    new_act = max(new_act, 0)
                delta = np.int64(np.int32(new_act - act[j] + residue[j]))
                sent = delta if (abs(delta) >= threshold_eff and delta != INT32_MIN) else 0
                residue[j] = delta - sent
                act[j] = new_act
                out[t, j] = sent >> SDNN_STATE_EXP
            if record:
                sigma_rec[t, j] = sigma[j]


def compiled_sigma_delta_steps():
    """The numba-compiled sigma-delta loop, or None when numba is unavailable."""
    return parallel(_sigma_delta_neuron_steps)


def sigma_delta_run(a: np.ndarray, kind: int, threshold: int, bias: Optional[np.ndarray],
                    state: Tuple[np.ndarray, np.ndarray, np.ndarray], out: np.ndarray,
                    a_first: Optional[np.ndarray] = None, record: bool = False) -> np.ndarray:
    """Sigma-delta neurons over synaptic input ``a`` (steps, neurons) integers, in the
    compiled loop: ``kind`` SD_HIDDEN (:func:`sigma_delta_step`), SD_INPUT
    (:func:`delta_input_step`) or SD_SIGMA_OUTPUT (sigma sent as is). ``state`` (sigma,
    act, residue) int64 arrays are updated in place and ``out`` (steps, neurons) int64
    gets the messages; with ``a_first`` the input is delayed one step as in
    :func:`cuba_run`. Returns sigma at every step when ``record`` (else an empty array)."""
    kernel = compiled_sigma_delta_steps()
    if kernel is None:
        raise RuntimeError("numba is not installed: no compiled sigma-delta loop")
    steps, n = a.shape
    sigma, act, residue = state
    has_bias = bias is not None
    bias_mant = np.zeros(1, np.int64) if bias is None else np.ascontiguousarray(bias, np.int64)
    sigma_rec = np.empty((steps, n) if record else (1, 1), np.int64)
    delayed = a_first is not None
    first = np.ascontiguousarray(a_first if delayed else np.zeros(1, a.dtype), dtype=a.dtype)
    kernel(np.ascontiguousarray(a), first, delayed, int(kind), int(threshold) << SDNN_SCALE,
           bias_mant, has_bias, sigma, act, residue, out, sigma_rec, record)
    return sigma_rec
