"""Loihi's fixed-point neuron and synapse arithmetic and bit widths, defined once.

Everything that must give the chip's spikes bit for bit calls this module: the
quantiser, the hardware-exact evaluation, the bit-accurate simulator and the
hardware-aware training forward. It imports numpy only (numba compiles its loops
when installed): reading a netx file, quantising a network description and
mapping it never import torch. The same arithmetic on torch tensors (decay,
wrap, saturation, one CUBA step, sigma-delta steps, for the training forward and
the simulator's batched products) is :mod:`neurodeploy.train.fixedpoint`; its
names are also reachable here as attributes (``fixedpoint.cuba_step``), which
imports torch on first use. The outside reference both are tested against is
Lava's ``PyLifModelBitAcc`` and ``PyDenseModelBitAcc`` (tag ``fixed_pt``) as
lava-dl's netx builds them.

CUBA-LIF step, in Lava's order (all quantities integers):

    u[t] = wrap24( trunc0(u[t-1] * (4096 - current_decay) / 4096) + (a[t] << 6) )
    v[t] = sat24( trunc0(v[t-1] * (4096 - voltage_decay) / 4096) + u[t] + (bias << 6) )
    s[t] = v[t] > (threshold << 6);   v[t] = 0 where s[t]

``current_decay`` here is netx's ``iDecay`` (Lava's ``du + 1``: the +1 current
decay offset); ``voltage_decay`` is ``vDecay`` = Lava's ``dv``; ``threshold`` is
``vThMant`` = Lava's ``vth``; ``bias`` is the bias mantissa with netx's fixed
``bias_exp = 6``. ``trunc0`` rounds toward zero. Decays and thresholds are one
value per layer or one per neuron (slayer's ``shared_param=False``).

Bit widths and limits live here and nowhere else; ``hw_configs/`` states the same
numbers per target and a test holds the two together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from neurodeploy._numba import parallel
from neurodeploy._numba import prange as _prange
from neurodeploy.errors import InputError, MissingDependencyError

# --- Loihi constants -------------------------------------------------------
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT  # 4096: decays are 12-bit fractions of this
STATE_BITS = 24  # u and v are 24-bit signed registers
STATE_MAX = 1 << (STATE_BITS - 1)  # 2**23
VOLTAGE_LIMIT = STATE_MAX - 1  # v saturates at +-(2**23 - 1)
ACTIVATION_SHIFT = 6  # synaptic input is MSB-aligned: a << 6
THRESHOLD_SHIFT = 6  # threshold is MSB-aligned: vth << 6
BIAS_EXP = 6  # netx maps a CUBA bias to bias_mant with bias_exp = 6

# bit widths of Lava's LIF / Dense fields (lava.proc.lif, lava.proc.dense; the same
# in hw_configs/loihi1.yaml and loihi2.yaml: weight_bits, state_bits,
# bias_mantissa_bits, threshold_bits)
WEIGHT_BITS = 8  # synaptic weight mantissa (num_weight_bits <= 8)
DECAY_BITS = 12  # du, dv unsigned
THRESHOLD_BITS = 17  # vth unsigned
BIAS_MANTISSA_BITS = 13  # bias_mant signed
DELAY_BITS = 6  # axonal delay of Loihi 2's synapses (Lava DelayDense)

CURRENT_DECAY_RANGE = (1, 1 << DECAY_BITS)  # netx iDecay; Lava du = iDecay - 1 is unsigned 12 bit
VOLTAGE_DECAY_RANGE = (0, (1 << DECAY_BITS) - 1)  # netx vDecay = Lava dv, unsigned 12 bit
THRESHOLD_RANGE = (0, (1 << THRESHOLD_BITS) - 1)  # vth, unsigned 17 bit
BIAS_RANGE = (-(1 << (BIAS_MANTISSA_BITS - 1)), (1 << (BIAS_MANTISSA_BITS - 1)) - 1)  # signed 13 bit

#: Largest axonal delay the chip takes: 6 bits, 0..63 steps (Lava's bit-accurate
#: DelayDense refuses more "for Loihi"); hw_configs' ``max_delay_steps``.
MAX_DELAY = (1 << DELAY_BITS) - 1
#: Largest delay a netx file can carry: netx builds DelayDense with ``max_delay=62``
#: and clamps larger stored delays to 62 (with a warning), so the writer and the
#: reader keep delays within 0..62.
NETX_MAX_DELAY = 62

#: (iDecay, vDecay, vThMant) netx gives a dense block stored without a ``neuron/``
#: group: a non-leaky integrator built as Lava LIF(du=-1, dv=4096, vth=1 << 17).
#: Outside the 12/17-bit fields, but it is what Lava runs; accepted only as a whole.
NETX_DEFAULT_CUBA = (0, 4096, 1 << 17)
#: Integer synaptic weights as Lava's Dense accepts them after its clip, by sign mode.
WEIGHT_RANGE_MIXED = (-256, 254)  # mixed-sign 8 bit: even values only (lowest bit truncated)
WEIGHT_RANGE_EXCITATORY = (0, 255)
WEIGHT_RANGE_INHIBITORY = (-255, 0)


class BitWidthError(InputError):
    """A parameter lies outside the bit width Loihi gives it (an :class:`InputError`,
    exit code 2)."""


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



# --- CUBA-LIF ---------------------------------------------------------------
#: a neuron field: one integer for the layer, or one per neuron (a tuple)
Field = Union[int, Tuple[int, ...]]


def _field(value) -> Field:
    """An int, or a tuple of ints for a per-neuron array (a 1-element array is one
    value, as slayer itself stores it)."""
    a = np.asarray(value)
    if a.size == 0:
        raise BitWidthError("must hold one value or one per neuron, got none")
    if a.ndim == 0 or a.size == 1:
        v = a.reshape(-1)[0]
        if not np.isfinite(v) or v != np.round(v):
            raise BitWidthError(f"must hold integers, got {v}")
        return int(v)
    if not np.all(np.isfinite(a)) or not np.array_equal(np.round(a), a):
        raise BitWidthError(f"must hold integers, got {a.ravel()[:4]}...")
    return tuple(int(v) for v in a.reshape(-1))


def field_array(value: Field, n: Optional[int] = None) -> np.ndarray:
    """A field as an int64 array: shape (1,) for one value, (m,) per neuron; with
    ``n``, repeated to n entries (m must divide n: per-neuron values run along the
    last axis of the neurons' held order, e.g. the channel of an (H, W, C) layer)."""
    a = np.asarray(value, dtype=np.int64).reshape(-1)
    if n is None:
        return a
    if n % a.size:
        raise ValueError(f"{a.size} per-neuron values do not divide {n} neurons")
    return np.tile(a, n // a.size)


@dataclass(frozen=True)
class CubaParameters:
    """Integer CUBA-LIF parameters, in netx's fields; each one value for the layer
    or a tuple of one value per neuron (slayer's ``shared_param=False``: one per
    channel of a conv layer).

    current_decay: iDecay, 1..4096 (12 bit + Loihi's offset; 4096 zeroes u each step)
    voltage_decay: vDecay, 0..4095 (12 bit; 0 = no leak)
    threshold: vThMant, 0..131071 (17 bit); spikes when v > threshold << 6
    """

    current_decay: Field
    voltage_decay: Field
    threshold: Field

    def __post_init__(self):
        for name in ("current_decay", "voltage_decay", "threshold"):
            try:
                object.__setattr__(self, name, _field(getattr(self, name)))
            except BitWidthError as e:
                raise BitWidthError(f"{name}: {e}") from None
        if (self.current_decay, self.voltage_decay, self.threshold) == NETX_DEFAULT_CUBA:
            return  # netx's neuron for a block without a neuron group (see NETX_DEFAULT_CUBA)
        check_range("current_decay (iDecay)", self.current_decay, *CURRENT_DECAY_RANGE)
        check_range("voltage_decay (vDecay)", self.voltage_decay, *VOLTAGE_DECAY_RANGE)
        check_range("threshold (vThMant)", self.threshold, *THRESHOLD_RANGE)
        sizes = {len(v) for v in (self.current_decay, self.voltage_decay, self.threshold)
                 if isinstance(v, tuple)}
        if len(sizes) > 1:
            raise BitWidthError(f"per-neuron iDecay, vDecay and vThMant differ in length: {sorted(sizes)}")

    @property
    def per_neuron(self) -> Optional[int]:
        """The number of per-neuron values, or None when every field is one value."""
        for v in (self.current_decay, self.voltage_decay, self.threshold):
            if isinstance(v, tuple):
                return len(v)
        return None


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



def quantize_weights(weight: np.ndarray, exponent: int) -> np.ndarray:
    """Float weights -> Loihi 8-bit integer weights at scale 2**exponent (int64).

    Rounds to the nearest representable value (half to even): for mixed-sign
    layers the even integers in [-256, 254] (Lava drops the lowest bit of
    mixed-sign weights), for single-sign layers the integers in [0, 255] or
    [-255, 0]. The result is a fixed point of :func:`effective_weights` (what
    Lava's Dense will use). Rounding can make a mixed layer single-signed (all
    negatives round to 0); even values are still a fixed point then.
    """
    w = np.asarray(weight, dtype=np.float64) * (2.0 ** exponent)
    mode = sign_mode(w)
    if mode == "mixed":
        q = np.clip(2 * np.round(w / 2), *WEIGHT_RANGE_MIXED)
    elif mode == "excitatory":
        q = np.clip(np.round(w), *WEIGHT_RANGE_EXCITATORY)
    else:
        q = np.clip(np.round(w), *WEIGHT_RANGE_INHIBITORY)
    q = q.astype(np.int64)
    assert np.array_equal(effective_weights(q), q)
    return q


def quantize_bias(bias: np.ndarray, exponent: int) -> np.ndarray:
    """Float bias (weight units) -> the bias mantissa at scale 2**exponent (int64,
    13-bit signed, netx's bias_exp 6): ``round(bias * 2**exponent)``, half to even."""
    q = np.round(np.asarray(bias, dtype=np.float64) * 2.0 ** exponent).astype(np.int64)
    check_range("bias mantissa", q, *BIAS_RANGE)
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
# The compiled twin of the one CUBA-LIF step, ``neurodeploy.train.fixedpoint.cuba_step``
# (the equations of this module's docstring on tensors): the same step written per
# neuron over scalars, so that numba compiles it into one loop over (neuron, time) with
# the state in registers. The test suite holds it to ``cuba_step`` bit for bit (every
# field, per-neuron fields, the wrap and the saturation, delayed and scaled input,
# resets), and both to Lava's PyLifModelBitAcc.
def _cuba_neuron_steps(a, a_first, scale, delayed, current_factors, voltage_factors, thresholds_eff,
                       per_neuron, bias, has_bias, reset, u_state, v_state, spikes, u_rec, v_rec,
                       record):  # pragma: no cover
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
            k = j if per_neuron else j - j  # per-neuron fields, or one value (index 0; j - j keeps j's type)
            p = u * current_factors[k]
            r = (p if p >= 0 else -p) >> DECAY_SHIFT
            u = (r if p >= 0 else -r) + ((a_t * scale) << ACTIVATION_SHIFT)
            if u > STATE_MAX:
                u -= 2 * STATE_MAX
            elif u <= -STATE_MAX:
                u += 2 * STATE_MAX
            q = v * voltage_factors[k]
            r = (q if q >= 0 else -q) >> DECAY_SHIFT
            v = (r if q >= 0 else -r) + u + ((bias[j] << BIAS_EXP) if has_bias else 0)
            v = min(max(v, -VOLTAGE_LIMIT), VOLTAGE_LIMIT)
            fired = v > thresholds_eff[k]
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
    Lava synapse delivers it. Per-neuron fields of ``p`` (m values) repeat over the
    neurons (see :func:`field_array`). Returns (spikes (steps, neurons) uint8, (u, v)
    final state, u_rec, v_rec); ``spikes``, when given, is written in place."""
    kernel = compiled_cuba_steps()
    if kernel is None:
        raise MissingDependencyError("the compiled CUBA-LIF loop needs numba, which is not installed "
                                     "(pip install numba)")
    steps, n = a.shape
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
    delayed = a_first is not None
    first = np.ascontiguousarray(a_first if delayed else np.zeros(1, a.dtype), dtype=a.dtype)
    per_neuron = p.per_neuron is not None
    size = n if per_neuron else None
    kernel(np.ascontiguousarray(a), first, int(scale), delayed,
           DECAY_UNITY - field_array(p.current_decay, size), DECAY_UNITY - field_array(p.voltage_decay, size),
           field_array(p.threshold, size) << THRESHOLD_SHIFT, per_neuron, bias_mant, has_bias,
           np.ascontiguousarray(reset, np.bool_), u, v, spikes, u_rec, v_rec, record)
    return spikes, (u, v), u_rec, v_rec


# --- netx synapses as Lava builds them ---------------------------------------
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
    if mx < 0:  # inhibitory only
        signed, scale = 0, -256 / mn
    elif mn >= 0:  # excitatory only
        signed, scale = 0, 255 / mx
    else:  # mixed signs
        signed = 1
        scale = min(127 / mx if mx > 0 else np.inf, -128 / mn)  # no positive weight: numpy's 127 / 0 = inf
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



# --- sigma-delta (lava.proc.sdn, fixed_pt, as netx builds it) ---------------
SDNN_SPIKE_EXP = 6  # netx Network(spike_exp=6)
SDNN_STATE_EXP = 6  # netx's state_exp
SDNN_SCALE = SDNN_SPIKE_EXP + SDNN_STATE_EXP  # vth and bias are << 12



#: Lava's sigma-delta models and graded Dense products compute in numpy int32: every
#: register (sigma, act, residue, the synaptic sum) wraps at 32 bits, and np.abs of
#: -2**31 is -2**31 (never at or above a threshold)
INT32_MIN = -(1 << 31)


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


#: the torch forms of this arithmetic (:mod:`neurodeploy.train.fixedpoint`), reachable
#: as attributes of this module; torch is imported on first use only
TENSOR_FORMS = (
    "shift_left", "shift_right_floor", "decay", "wrap_current", "saturate_voltage",
    "CubaState", "cuba_initial_state", "cuba_subthreshold", "cuba_step",
    "synaptic_input", "quantize_weight_tensor", "shift_exponent", "graded_dense_input",
    "graded_delay_dense_input", "wrap_signed", "SigmaDeltaState", "wrap_int32", "delta_encode",
    "sigma_delta_step", "delta_input_step",
)


def __getattr__(name: str):
    if name in TENSOR_FORMS:
        from neurodeploy.train import fixedpoint as tfx
        return getattr(tfx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
