"""Neuron models in their event-driven form: state = time to the next spike.

Between input spikes a neuron's state moves at unit speed towards its spike, so for
every neuron the *time to spike* ``u`` (seconds) is its phase, counted backwards:
``u = T`` right after a reset, ``u = 0`` at threshold, ``T`` the free period. An input
spike through a synapse of weight ``w`` (a voltage jump, in units of the threshold)
maps ``u`` to ``ptc(u)``, the model's phase-transition curve. Both models are written
as small pure functions of explicit arguments; the simulator and the trainer call them.

Parameters (shared by the functions below):

* ``tau`` -- membrane time constant (seconds, float64, > 0);
* ``I``   -- external drive (dimensionless, in units of the threshold; float64);
* ``w``   -- synaptic weight = voltage jump on the target (dimensionless; < 0 inhibits).

LIF (leaky integrate-and-fire): ``tau dV/dt = -V + I``, ``I > 1``, threshold 1, reset 0::

    V(u)  = I - (I - 1) exp(u / tau)                   voltage at time-to-spike u
    u(V)  = tau ln((I - V) / (I - 1))
    T     = tau ln(I / (I - 1))                        free period (V: 0 -> 1)
    ptc   = tau ln(exp(u / tau) + c),  c = -w / (I - 1)

If the jump reaches the threshold (``exp(u/tau) + c <= 1``) the neuron fires at once:
``ptc = 0``.

QIF (quadratic integrate-and-fire, theta neuron): ``tau dV/dt = V^2 + I``, ``I > 0``,
threshold +inf, reset -inf; with ``a = sqrt(I)`` and ``theta = pi - 2 a u / tau``
(``V = a tan(theta / 2)``, the phase of the theta neuron, from -pi at reset to pi)::

    V(u)  = a cot(a u / tau)
    u(V)  = (tau / a) (pi/2 - atan(V / a))
    T     = pi tau / a
    ptc   = (tau / a) (pi/2 - atan(cot(a u / tau) + w / a))

The ``*_grad`` functions return the partial derivatives the adjoint needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba

LIF = 0
QIF = 1
MODELS = {"lif": LIF, "qif": QIF}

_JIT = dict(cache=True, nogil=True)


@dataclass(frozen=True)
class ModelParams:
    """Parameters of a homogeneous network's neurons.

    model:     "lif" or "qif"
    tau:       membrane time constant (seconds, float64, > 0)
    drive:     external drive I (dimensionless, units of the threshold; LIF > 1, QIF > 0)
    threshold: spike threshold of V (dimensionless; LIF 1, QIF +inf)
    reset:     reset value of V (dimensionless; LIF 0, QIF -inf)
    """

    model: str
    tau: float
    drive: float

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model: expected one of {sorted(MODELS)}, got {self.model!r}")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau: expected a positive number of seconds, got {self.tau}")
        low = 1.0 if self.model == "lif" else 0.0
        if not (math.isfinite(self.drive) and self.drive > low):
            raise ValueError(f"drive: expected I > {low:g} for {self.model} (a neuron that "
                             f"fires on its own), got {self.drive}")

    @property
    def model_id(self) -> int:
        return MODELS[self.model]

    @property
    def threshold(self) -> float:
        return 1.0 if self.model == "lif" else math.inf

    @property
    def reset(self) -> float:
        return 0.0 if self.model == "lif" else -math.inf

    @property
    def period(self) -> float:
        """Free period T (seconds): reset to threshold without input."""
        return period(self.model_id, self.drive, self.tau)


# ---------------------------------------------------------------- LIF

@numba.njit(**_JIT)
def lif_period(I, tau):
    return tau * math.log(I / (I - 1.0))


@numba.njit(**_JIT)
def lif_period_grad(I, tau):
    """dT/dI."""
    return -tau / (I * (I - 1.0))


@numba.njit(**_JIT)
def lif_voltage(u, I, tau):
    return I - (I - 1.0) * math.exp(u / tau)


@numba.njit(**_JIT)
def lif_time_to_spike(v, I, tau):
    return tau * math.log((I - v) / (I - 1.0))


@numba.njit(**_JIT)
def lif_time_to_spike_grad(v, I, tau):
    """(du/dV, du/dI) of ``lif_time_to_spike``."""
    return -tau / (I - v), tau * (1.0 / (I - v) - 1.0 / (I - 1.0))


@numba.njit(**_JIT)
def lif_ptc(u, w, I, tau):
    s = math.exp(u / tau) - w / (I - 1.0)
    if s <= 1.0:
        return 0.0
    return tau * math.log(s)


@numba.njit(**_JIT)
def lif_ptc_grad(u, w, I, tau):
    """(d ptc/du, d ptc/dw, d ptc/dI); zero where the jump reaches the threshold."""
    e = math.exp(u / tau)
    s = e - w / (I - 1.0)
    if s <= 1.0:
        return 0.0, 0.0, 0.0
    return e / s, -tau / (s * (I - 1.0)), tau * w / (s * (I - 1.0) * (I - 1.0))


# ---------------------------------------------------------------- QIF / theta

@numba.njit(**_JIT)
def qif_period(I, tau):
    return math.pi * tau / math.sqrt(I)


@numba.njit(**_JIT)
def qif_period_grad(I, tau):
    return -0.5 * math.pi * tau / (I * math.sqrt(I))


@numba.njit(**_JIT)
def qif_voltage(u, I, tau):
    """V at time to spike u; the reset (-inf) for u >= T."""
    a = math.sqrt(I)
    x = a * u / tau
    if x >= math.pi:
        return -math.inf
    return a / math.tan(x)


@numba.njit(**_JIT)
def qif_time_to_spike(v, I, tau):
    a = math.sqrt(I)
    return tau / a * (0.5 * math.pi - math.atan(v / a))


@numba.njit(**_JIT)
def qif_time_to_spike_grad(v, I, tau):
    """(du/dV, du/dI) of ``qif_time_to_spike`` (V = -inf: the reset, u = T)."""
    a = math.sqrt(I)
    if math.isinf(v):
        return 0.0, qif_period_grad(I, tau) if v < 0 else 0.0
    q = v / a
    du_dv = -tau / (I * (1.0 + q * q))
    du_da = -tau / I * (0.5 * math.pi - math.atan(q)) + tau / a * q / (a * (1.0 + q * q))
    return du_dv, du_da / (2.0 * a)


@numba.njit(**_JIT)
def qif_ptc(u, w, I, tau):
    a = math.sqrt(I)
    z = 1.0 / math.tan(a * u / tau) + w / a
    return tau / a * (0.5 * math.pi - math.atan(z))


@numba.njit(**_JIT)
def qif_ptc_grad(u, w, I, tau):
    """(d ptc/du, d ptc/dw, d ptc/dI)."""
    a = math.sqrt(I)
    cot = 1.0 / math.tan(a * u / tau)
    z = cot + w / a
    den = 1.0 + z * z
    csc2 = 1.0 + cot * cot
    d_du = csc2 / den
    d_dw = -tau / (I * den)
    dz_da = -csc2 * u / tau - w / I
    d_da = -tau / I * (0.5 * math.pi - math.atan(z)) - tau / a * dz_da / den
    return d_du, d_dw, d_da / (2.0 * a)


# ---------------------------------------------------------------- dispatch by model id

@numba.njit(**_JIT)
def period(model, I, tau):
    if model == LIF:
        return lif_period(I, tau)
    return qif_period(I, tau)


@numba.njit(**_JIT)
def period_grad(model, I, tau):
    if model == LIF:
        return lif_period_grad(I, tau)
    return qif_period_grad(I, tau)


@numba.njit(**_JIT)
def voltage(model, u, I, tau):
    if model == LIF:
        return lif_voltage(u, I, tau)
    return qif_voltage(u, I, tau)


@numba.njit(**_JIT)
def time_to_spike(model, v, I, tau):
    if model == LIF:
        return lif_time_to_spike(v, I, tau)
    return qif_time_to_spike(v, I, tau)


@numba.njit(**_JIT)
def time_to_spike_grad(model, v, I, tau):
    if model == LIF:
        return lif_time_to_spike_grad(v, I, tau)
    return qif_time_to_spike_grad(v, I, tau)


@numba.njit(**_JIT)
def ptc(model, u, w, I, tau):
    if model == LIF:
        return lif_ptc(u, w, I, tau)
    return qif_ptc(u, w, I, tau)


@numba.njit(**_JIT)
def ptc_grad(model, u, w, I, tau):
    if model == LIF:
        return lif_ptc_grad(u, w, I, tau)
    return qif_ptc_grad(u, w, I, tau)


def balanced_drive(model: str, tau: float, J0: float, K: int, rate: float) -> float:
    """External drive I from the balance condition for a target mean rate (Hz).

    The recurrent inhibition ``-J0 sqrt(K) tau rate`` must cancel the excess drive:
    LIF ``I = 1 + tau sqrt(K) J0 rate``; QIF ``I = tau sqrt(K) J0 rate``.
    """
    excess = tau * math.sqrt(K) * J0 * rate
    return 1.0 + excess if model == "lif" else excess
