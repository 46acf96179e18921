"""The Spiking Recurrent Cell (SRC) in Loihi 2 fixed point, defined once.

The float cell (De Geeter, Ernst, Drion, arXiv 2306.03623; see ``docs/src.md``)::

    i[t]   = alpha i[t-1] + W s_in[t]
    x[t]   = rho tanh(i[t] / rho)
    h[t]   = z h[t-1] + (1 - z) tanh(x[t] + r h[t-1] + r_s h_s[t-1] + b_h)
    h_s[t] = z_s h_s[t-1] + (1 - z_s) h[t-1],   z_s = z_hyp if h[t-1] <= theta_s else z_dep
    s[t]   = max(h[t], 0)

becomes, per neuron, with every quantity an integer (all registers signed 24 bit,
as Loihi 2's neuron state; ``decay`` and rounding are Loihi's, from
:mod:`neurodeploy.fixedpoint`)::

    i'   = sat24( decay(i, input_decay) + (a << input_shift) )
    x    = sign(i') x_table[ min(|i'| >> x_shift, 255) ]                    (Q12)
    p    = sat24( x + (gain_fast h >> 4) + (gain_slow h_s >> 4) + (bias << 6) )
    c    = sign(p) h_table[ min(|p| >> h_shift, 255) ]                      (Q12)
    h'   = c + decay(h - c, update_decay)
    h_s' = h + decay(h_s - h, h > gate_threshold ? slow_decay_active : slow_decay_rest)
    out  = max(h', 0) >> message_shift    ('graded')
         | h' > 0                         ('binary')
         | i'                             ('current': the readout, a leaky integrator)

``h``, ``h_s``, ``x`` and ``p`` are Q12 fixed point (4096 = 1.0). ``i`` is in the
layer's weight units: ``i_float = i / 2**(e + 6)`` for weight exponent ``e`` (binary
input spikes enter as ``a << 6``, graded 6-bit messages ``max(h, 0) >> 6`` as ``a``).
``decay(x, d) = trunc0(x (4096 - d) / 4096)`` (a 12-bit decay with Loihi's +1
offset, 1..4096; 4096 zeroes x). tanh and the rho saturation are odd lookup tables
of 256 unsigned 16-bit entries; the gate z_s is a comparator that selects one of two
decays; the gains r, r_s are signed 8-bit mantissas with 4 fractional bits (shift
and add on the chip). numpy only; the Lava process model (``neurodeploy.lava_src``)
writes the same arithmetic out again, independently, and the tests hold them equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import numpy as np

from neurodeploy.fixedpoint import (
    BIAS_EXP,
    BIAS_RANGE,
    CURRENT_DECAY_RANGE,
    DECAY_SHIFT,
    DECAY_UNITY,
    STATE_BITS,
    VOLTAGE_LIMIT,
    check_range,
)

# --- constants (bit widths) -------------------------------------------------------
FRACTION_BITS = 12  #: h, h_s, x, p are Q12: 4096 = 1.0
UNIT = 1 << FRACTION_BITS
TABLE_SIZE = 256  #: entries per lookup table (8-bit index)
TABLE_RANGE = (0, (1 << 16) - 1)  #: unsigned 16-bit table entries
GAIN_SHIFT = 4  #: r and r_s are mantissas with 4 fractional bits
GAIN_RANGE = (-128, 127)  #: signed 8 bit: r in [-8, 7.94]
DECAY_RANGE = CURRENT_DECAY_RANGE  #: 12 bit + Loihi's offset: 1..4096
SHIFT_RANGE = (0, STATE_BITS - 1)  #: table index shifts
INPUT_SHIFT_RANGE = (0, 6)  #: a << input_shift (6 for binary spikes, as CUBA's a << 6)
MESSAGE_SHIFT_RANGE = (0, FRACTION_BITS)
GATE_THRESHOLD_RANGE = (-UNIT, UNIT)  #: Q12, compared with h in [-4096, 4096]
OUTPUTS = ("graded", "binary", "current")
#: bits of the messages each output kind sends (graded: max(h, 0) >> message_shift)
CURRENT_MESSAGE_BITS = 24
DEFAULT_H_SHIFT = 6  #: tanh table step 2**-6 over [0, 4): tanh(4) = 0.9993


def message_bits(output: str, message_shift: int) -> int:
    """Bits of the messages an SRC layer sends (0 for binary spikes)."""
    if output == "binary":
        return 0
    if output == "graded":
        return FRACTION_BITS + 1 - int(message_shift)
    return CURRENT_MESSAGE_BITS


@dataclass(frozen=True)
class SrcParameters:
    """Integer SRC fields of one layer (the netx extension block stores exactly these).

    input_decay: 12-bit decay of i (1..4096), ``round((1 - alpha) 4096)``
    input_shift: synaptic input enters i as ``a << input_shift`` (0..6)
    x_shift, x_table: rho saturation, ``x = sign(i) x_table[min(|i| >> x_shift, 255)]``
        (Q12; 256 unsigned 16-bit entries)
    h_shift, h_table: tanh, ``c = sign(p) h_table[min(|p| >> h_shift, 255)]`` (Q12)
    gain_fast, gain_slow: r and r_s, signed 8-bit mantissas, value / 16
    update_decay: 12-bit decay for z, ``round((1 - z) 4096)`` (4096: z = 0)
    gate_threshold: theta_s in Q12 (-4096..4096)
    slow_decay_rest, slow_decay_active: 12-bit decays for z_hyp (h <= theta_s) and
        z_dep (h > theta_s)
    output: 'graded' (``max(h, 0) >> message_shift``), 'binary' (``h > 0``) or
        'current' (the readout: i itself)
    message_shift: 0..12
    reset_state: h and h_s at the start and after every reset (Q12, -4096..4096;
        i starts at 0).
    """

    input_decay: int
    input_shift: int
    x_shift: int
    x_table: Tuple[int, ...]
    h_shift: int
    h_table: Tuple[int, ...]
    gain_fast: int
    gain_slow: int
    update_decay: int
    gate_threshold: int
    slow_decay_rest: int
    slow_decay_active: int
    output: str = "graded"
    message_shift: int = 6
    reset_state: int = 0

    def __post_init__(self):
        for name in ("x_table", "h_table"):
            t = tuple(int(v) for v in np.asarray(getattr(self, name)).reshape(-1))
            if len(t) != TABLE_SIZE:
                raise ValueError(f"{name} must have {TABLE_SIZE} entries, found {len(t)}")
            check_range(name, np.asarray(t), *TABLE_RANGE)
            object.__setattr__(self, name, t)
        check_range("input_decay", self.input_decay, *DECAY_RANGE)
        check_range("input_shift", self.input_shift, *INPUT_SHIFT_RANGE)
        check_range("x_shift", self.x_shift, *SHIFT_RANGE)
        check_range("h_shift", self.h_shift, *SHIFT_RANGE)
        check_range("gain_fast", self.gain_fast, *GAIN_RANGE)
        check_range("gain_slow", self.gain_slow, *GAIN_RANGE)
        check_range("update_decay", self.update_decay, *DECAY_RANGE)
        check_range("gate_threshold", self.gate_threshold, *GATE_THRESHOLD_RANGE)
        check_range("slow_decay_rest", self.slow_decay_rest, *DECAY_RANGE)
        check_range("slow_decay_active", self.slow_decay_active, *DECAY_RANGE)
        check_range("message_shift", self.message_shift, *MESSAGE_SHIFT_RANGE)
        check_range("reset_state", self.reset_state, *GATE_THRESHOLD_RANGE)
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")

    @property
    def message_bits(self) -> int:
        return message_bits(self.output, self.message_shift)

    def tables(self) -> Tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.x_table, np.int64), np.asarray(self.h_table, np.int64)


class SrcState(NamedTuple):
    """i (input current, weight units), h (fast state, Q12), h_s (slow state, Q12):
    int64 arrays holding signed 24-bit values."""

    current: np.ndarray
    fast: np.ndarray
    slow: np.ndarray


def initial_state(shape, reset_state: int = 0) -> SrcState:
    """i = 0; h = h_s = ``reset_state`` (Q12; a layer's ``SrcParameters.reset_state``)."""
    z = np.zeros(shape, np.int64)
    return SrcState(z, z + int(reset_state), z + int(reset_state))


# --- arithmetic ---------------------------------------------------------------------
def decay(x: np.ndarray, d) -> np.ndarray:
    """``trunc0(x (4096 - d) / 4096)``: Loihi's decay (as :func:`fixedpoint.decay`)."""
    p = np.asarray(x, np.int64) * (DECAY_UNITY - np.asarray(d, np.int64))
    return np.sign(p) * (np.abs(p) >> DECAY_SHIFT)


def saturate(x: np.ndarray) -> np.ndarray:
    """Clip to the signed 24-bit range ``[-(2**23 - 1), 2**23 - 1]``."""
    return np.clip(x, -VOLTAGE_LIMIT, VOLTAGE_LIMIT)


def odd_lookup(x: np.ndarray, table: np.ndarray, shift: int) -> np.ndarray:
    """``sign(x) table[min(|x| >> shift, 255)]``: an odd function from a table over |x|."""
    idx = np.minimum(np.abs(x) >> shift, TABLE_SIZE - 1)
    return np.sign(x) * table[idx]


def gain(g: int, x: np.ndarray) -> np.ndarray:
    """``(g x) >> 4`` (floor): a gain with 4 fractional bits."""
    return (int(g) * x) >> GAIN_SHIFT


def src_step(a: np.ndarray, state: SrcState, p: SrcParameters,
             bias: Optional[np.ndarray] = None, tables=None):
    """One fixed-point SRC step -> ``(messages, new_state)`` (see the module docstring).

    a: integer synaptic input (..., neurons); bias: bias mantissa per neuron (13 bit,
    enters p as ``bias << 6``) or None. ``tables``: ``p.tables()``, to skip rebuilding
    them every step."""
    x_table, h_table = p.tables() if tables is None else tables
    i_prev, h, hs = state
    i = saturate(decay(i_prev, p.input_decay) + (np.asarray(a, np.int64) << p.input_shift))
    x = odd_lookup(i, x_table, p.x_shift)
    pre = x + gain(p.gain_fast, h) + gain(p.gain_slow, hs)
    if bias is not None:
        pre = pre + (np.asarray(bias, np.int64) << BIAS_EXP)
    pre = saturate(pre)
    c = odd_lookup(pre, h_table, p.h_shift)
    h_new = c + decay(h - c, p.update_decay)
    d_slow = np.where(h > p.gate_threshold, p.slow_decay_active, p.slow_decay_rest)
    hs_new = h + decay(hs - h, d_slow)
    if p.output == "graded":
        out = np.maximum(h_new, 0) >> p.message_shift
    elif p.output == "binary":
        out = (h_new > 0).astype(np.int64)
    else:
        out = i
    return out, SrcState(i, h_new, hs_new)


# --- float -> fixed point ---------------------------------------------------------------
def decay_field(keep: float) -> int:
    """A float keep factor per step (alpha, z, z_s in [0, 1)) -> its 12-bit decay
    ``round((1 - keep) 4096)`` in 1..4096."""
    return int(np.clip(np.round((1.0 - float(keep)) * DECAY_UNITY), *DECAY_RANGE))


def gain_field(g: float, name: str) -> int:
    q = int(np.round(float(g) * (1 << GAIN_SHIFT)))
    check_range(name, q, *GAIN_RANGE)
    return q


def x_table_shift(rho: float, weight_exponent: int, input_units_shift: int = 6) -> int:
    """Index shift of the rho table for a layer whose i holds ``i_float * 2**(e + 6)``:
    the smallest shift whose 256 entries cover |i_float| < 4 rho."""
    step = math.log2(4.0 * float(rho) / TABLE_SIZE)
    return max(0, int(math.ceil(step)) + int(weight_exponent) + int(input_units_shift))


def rho_table(rho: float, shift: int, weight_exponent: int, input_units_shift: int = 6) -> np.ndarray:
    """Entry k: ``rho tanh(i / rho)`` in Q12 at the middle of its bin, |i| = (k + 1/2)
    2**shift in integer units (``i_float = i / 2**(e + 6)``)."""
    k = np.arange(TABLE_SIZE, dtype=np.float64)
    i_float = (k + 0.5) * 2.0 ** (int(shift) - int(weight_exponent) - int(input_units_shift))
    return np.round(UNIT * float(rho) * np.tanh(i_float / float(rho))).astype(np.int64)


def tanh_table(shift: int = DEFAULT_H_SHIFT) -> np.ndarray:
    """Entry k: ``tanh(p)`` in Q12 at the middle of its bin, |p| = (k + 1/2) 2**shift / 4096."""
    k = np.arange(TABLE_SIZE, dtype=np.float64)
    return np.round(UNIT * np.tanh((k + 0.5) * 2.0 ** int(shift) / UNIT)).astype(np.int64)


def quantize_bias(bias: np.ndarray) -> np.ndarray:
    """Float b_h -> bias mantissa ``round(b_h 2**6)`` (p gets ``bias << 6`` in Q12),
    checked against the 13-bit range."""
    q = np.round(np.asarray(bias, np.float64) * (UNIT >> BIAS_EXP)).astype(np.int64)
    check_range("bias mantissa", q, *BIAS_RANGE)
    return q


def quantize_parameters(*, alpha: float, rho: float, r: float, r_s: float, z: float,
                        z_hyp: float, z_dep: float, gate_threshold: float,
                        weight_exponent: int, input_shift: int, output: str = "graded",
                        message_shift: int = 6, initial_state: float = 0.0) -> SrcParameters:
    """Float cell constants + the layer's weight exponent -> :class:`SrcParameters`."""
    xs = x_table_shift(rho, weight_exponent)
    return SrcParameters(
        input_decay=decay_field(alpha), input_shift=int(input_shift),
        x_shift=xs, x_table=tuple(rho_table(rho, xs, weight_exponent)),
        h_shift=DEFAULT_H_SHIFT, h_table=tuple(tanh_table(DEFAULT_H_SHIFT)),
        gain_fast=gain_field(r, "gain_fast (r)"), gain_slow=gain_field(r_s, "gain_slow (r_s)"),
        update_decay=decay_field(z), gate_threshold=int(np.round(gate_threshold * UNIT)),
        slow_decay_rest=decay_field(z_hyp), slow_decay_active=decay_field(z_dep),
        output=output, message_shift=int(message_shift),
        reset_state=int(np.round(float(initial_state) * UNIT)))


def units(weight_exponent: int) -> float:
    """Integer units of i per float unit: ``2**(e + 6)``."""
    return 2.0 ** (int(weight_exponent) + 6)
