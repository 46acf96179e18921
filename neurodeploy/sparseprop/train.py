"""Gradients by backpropagation through the recorded event sequence (SparseProp's
backward pass), and a small Adam trainer. numpy and numba only.

State between events: each neuron's scheduled spike time ``x_i`` (absolute, seconds).
Event ``s`` (spiker ``j``, time ``t_s = x_j``) changes only ``j`` and its targets::

    x_i <- t_s + ptc(x_i - t_s; w_ji, I_i)     for each target i of j
    x_j <- t_s + T(I_j)                         reset
    x_k unchanged                               every other neuron

so for a fixed order of events the spike times are differentiable functions of the
weights ``w``, drives ``I`` and initial voltages ``v0``. With ``lam_i = dL/dx_i`` run
backwards over the events (``u_i = x_i - t_s`` the target's time to spike before the
jump, ``P = ptc``)::

    dL/dt_s  = g_s + lam_j + sum_i lam_i (1 - dP/du)     g_s: the loss's direct dL/dt_s
    dL/dw_ji += lam_i dP/dw;   dL/dI_i += lam_i dP/dI;   dL/dI_j += lam_j dT/dI
    lam_i    <- lam_i dP/du;   lam_j <- dL/dt_s

and finally through ``x_i = u(v0_i; I_i)``. Each event touches its K targets only:
O(K) per spike, as the forward pass. The derivation is in docs/sparseprop.md.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numba
import numpy as np

from neurodeploy.sparseprop import models as _m
from neurodeploy.sparseprop.network import CSR
from neurodeploy.sparseprop.simulate import HeapSimulator, Spikes

logger = logging.getLogger(__name__)

_JIT = dict(cache=True, nogil=True)


@dataclass
class Trainable:
    """A network whose weights and drives are learned.

    params:  model and tau (its ``drive`` is the default for ``drive``)
    csr:     connectivity over presynaptic neurons; ``weights`` are voltage jumps
    drive:   float64[N], external drive I of each neuron (dimensionless)
    v0:      float64[N], initial membrane potentials (dimensionless)
    """

    params: _m.ModelParams
    csr: CSR
    drive: np.ndarray
    v0: np.ndarray

    def __post_init__(self):
        self.drive = np.array(np.broadcast_to(self.drive, (self.csr.n,)), dtype=np.float64)
        self.v0 = np.array(self.v0, dtype=np.float64)


@dataclass
class Recording:
    """Events of a forward pass and what the adjoint needs from them.

    spikes:   the events, in order
    pre_jump: each target's time to spike (s) just before its jump, event by event
    initial:  float64[N], scheduled spike times x_i (s) at t = 0
    final:    float64[N], scheduled spike times x_i (s) at ``t_end``
    t_end:    end of the simulated interval (s): ``t_stop``, or the last spike's time
    """

    spikes: Spikes
    pre_jump: np.ndarray
    initial: np.ndarray
    final: np.ndarray
    t_end: float


@dataclass
class LossGrad:
    """A loss value and its partial derivatives w.r.t. what the forward pass produced.

    spike_times: dL/dt_s for every recorded spike
    final:       dL/dx_i at ``t_end`` (None: zero)
    initial:     dL/dx_i at t = 0 (None: zero)
    drive:       direct dL/dI_i, besides the dependence through spike times (None: zero)
    """

    value: float
    spike_times: np.ndarray
    final: Optional[np.ndarray] = None
    initial: Optional[np.ndarray] = None
    drive: Optional[np.ndarray] = None


class _RecordingSimulator(HeapSimulator):
    def _advance(self, size, t_stop, out_t, out_i):
        deg = int(np.max(np.diff(self.csr.indptr))) if self.csr.n else 0
        self._rec = np.empty(max(size * deg, 1))
        self.counters[1] = 0
        m = super()._advance(size, t_stop, out_t, out_i)
        self.recorded.append(self._rec[:self.counters[1]].copy())
        return m


def forward(net: Trainable, n_spikes: int, t_stop: float = math.inf) -> Recording:
    """Simulate with the heap simulator, recording what the backward pass needs."""
    sim = _RecordingSimulator(net.params, net.v0, csr=net.csr, drive=net.drive)
    sim.recorded = []
    initial = sim.scheduled_times()
    spikes = sim.run(n_spikes, t_stop)
    pre = np.concatenate(sim.recorded) if sim.recorded else np.empty(0)
    t_end = float(t_stop) if math.isfinite(t_stop) else (float(spikes.times[-1]) if len(spikes) else 0.0)
    return Recording(spikes, pre, initial, sim.scheduled_times(), t_end)


@numba.njit(**_JIT)
def _backward(model, tau, drive, v0, indptr, indices, weights, times, neurons, pre,
              dl_dt, lam, dl_dx0, g_w, g_drive, g_v0):
    n = drive.shape[0]
    r = pre.shape[0]
    for s in range(times.shape[0] - 1, -1, -1):
        j = neurons[s]
        a = indptr[j]
        b = indptr[j + 1]
        r -= b - a
        d_t = dl_dt[s] + lam[j]
        g_drive[j] += lam[j] * _m.period_grad(model, drive[j], tau)
        for q in range(a, b):
            i = indices[q]
            d_du, d_dw, d_di = _m.ptc_grad(model, pre[r + q - a], weights[q], drive[i], tau)
            li = lam[i]
            d_t += li * (1.0 - d_du)
            lam[i] = li * d_du
            g_w[q] += li * d_dw
            g_drive[i] += li * d_di
        lam[j] = d_t
    for i in range(n):
        li = lam[i] + dl_dx0[i]
        du_dv, du_di = _m.time_to_spike_grad(model, v0[i], drive[i], tau)
        g_drive[i] += li * du_di
        g_v0[i] = li * du_dv


def backward(net: Trainable, rec: Recording, grad: LossGrad) -> Dict[str, np.ndarray]:
    """Gradients of a loss (its partials in ``grad``) w.r.t. the network's parameters.

    Returns ``weights`` (float64[nnz], CSR order), ``drive`` (float64[N]) and ``v0``.
    """
    n = net.csr.n

    def vec(a, size, name):
        a = np.zeros(size) if a is None else np.array(a, dtype=np.float64)
        if a.shape != (size,):
            raise ValueError(f"{name}: expected {size} values, got shape {a.shape}")
        return a

    dl_dt = vec(grad.spike_times, rec.spikes.times.size, "dL/dt (one per spike)")
    lam = vec(grad.final, n, "dL/dx at the end")
    dl_dx0 = vec(grad.initial, n, "dL/dx at t = 0")
    g_drive = vec(grad.drive, n, "dL/dI")
    g_w = np.zeros(net.csr.weights.size)
    g_v0 = np.zeros(n)
    _backward(net.params.model_id, net.params.tau, net.drive, net.v0, net.csr.indptr,
              net.csr.indices, net.csr.weights, rec.spikes.times, rec.spikes.neurons,
              rec.pre_jump, dl_dt, lam, dl_dx0, g_w, g_drive, g_v0)
    return {"weights": g_w, "drive": g_drive, "v0": g_v0}


# ---------------------------------------------------------------- losses on spike times

LossFn = Callable[[Recording, Trainable], LossGrad]


def rate_loss(target_rate) -> LossFn:
    """Relative squared error of firing rates measured by phase winding (smooth).

    Over ``[0, t_end]`` neuron i completes ``c_i = n_i + (u_i(0) - u_i(t_end)) / T_i``
    cycles (``n_i`` spikes, ``u_i`` its time to spike, ``T_i`` its free period): a count
    that moves continuously when a spike crosses either end of the window and is nonzero
    for silent neurons. ``r_i = c_i / t_end`` (Hz);
    ``L = mean_i ((r_i - r*_i) / r*_i)^2`` with ``r*`` the target rates (Hz).
    """
    target_rate = np.asarray(target_rate, dtype=np.float64)

    def loss(rec: Recording, net: Trainable) -> LossGrad:
        n, D = net.csr.n, rec.t_end
        tau, model = net.params.tau, net.params.model_id
        T = np.array([_m.period(model, I, tau) for I in net.drive])
        dT = np.array([_m.period_grad(model, I, tau) for I in net.drive])
        u0 = rec.initial
        u_end = rec.final - D
        counts = np.bincount(rec.spikes.neurons, minlength=n)
        c = counts + (u0 - u_end) / T
        tgt = np.broadcast_to(target_rate, (n,))
        err = (c / D - tgt) / tgt
        d_c = 2.0 * err / (n * tgt * D)
        return LossGrad(float(np.mean(err ** 2)), np.zeros(rec.spikes.times.size),
                        final=-d_c / T, initial=d_c / T, drive=-d_c * (u0 - u_end) / T ** 2 * dT)

    return loss


def spike_time_loss(target_times) -> LossFn:
    """``L = 0.5 mean_s (t_s - target_s)^2`` over the first ``len(target_times)`` spikes
    (a loss on the timing of a fixed number of network events)."""
    target_times = np.asarray(target_times, dtype=np.float64)

    def loss(rec: Recording, net: Trainable) -> LossGrad:
        t = rec.spikes.times
        m = min(target_times.size, t.size)
        err = t[:m] - target_times[:m]
        dl = np.zeros(t.size)
        dl[:m] = err / max(m, 1)
        return LossGrad(float(0.5 * np.mean(err ** 2)) if m else 0.0, dl)

    return loss


def loss_and_grad(net: Trainable, loss: LossFn, n_spikes: int, t_stop: float = math.inf):
    """(loss value, gradients, spikes) for one forward and backward pass."""
    rec = forward(net, n_spikes, t_stop)
    grad = loss(rec, net)
    return grad.value, backward(net, rec, grad), rec.spikes


@dataclass
class History:
    loss: List[float] = field(default_factory=list)


def train(net: Trainable, loss: LossFn, steps: int, *, n_spikes: int,
          t_stop: float = math.inf, lr: float = 1e-2, lr_halflife: float = math.inf,
          learn_weights: bool = True, learn_drive: bool = True) -> History:
    """Adam on weights and drives (in place on ``net``), step size
    ``lr / (1 + step / lr_halflife)``. Drives stay above the model's minimum (LIF 1,
    QIF 0) by a margin of 1e-3; weights are unconstrained. Each step's loss is logged
    at DEBUG (logger ``neurodeploy.sparseprop.train``)."""
    low = (1.0 if net.params.model == "lif" else 0.0) + 1e-3
    names = [k for k, on in (("weights", learn_weights), ("drive", learn_drive)) if on]
    m = {k: 0.0 for k in names}
    v = {k: 0.0 for k in names}
    beta1, beta2, eps = 0.9, 0.999, 1e-12
    hist = History()
    for step in range(1, steps + 1):
        value, grads, _ = loss_and_grad(net, loss, n_spikes, t_stop)
        hist.loss.append(value)
        logger.debug(f"step {step:4d}  loss {value:.6g}")
        for k in names:
            g = grads[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            rate = lr / (1.0 + step / lr_halflife)
            upd = rate * (m[k] / (1 - beta1 ** step)) / (np.sqrt(v[k] / (1 - beta2 ** step)) + eps)
            if k == "weights":
                net.csr = net.csr.with_weights(net.csr.weights - upd)
            else:
                net.drive = np.maximum(net.drive - upd, low)
    return hist
