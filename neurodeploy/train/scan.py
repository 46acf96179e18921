"""Dense BPTT of a layer of float CUBA-LIF neurons as one autograd node.

:func:`neurodeploy.train.neuron.cuba_float_step` defines the dynamics; autograd
through its time loop (:func:`neurodeploy.train.neuron.cuba_float_sequence_reference`)
is the reference gradient. That loop records a graph of about fifteen nodes per step
and stacks the steps' tensors in both directions; here the whole recurrence is one
node: the forward runs the same steps, op by op in the same float order (so the spikes
are bit-identical), and keeps the surrogate derivative of each entry; the backward runs
the adjoint of the recurrence backward in time::

    dL/dw[t] = dL/dv[t] (1 - s[t]) + dL/ds[t] * surrogate'(w[t] - threshold)
    dL/dv[t] = (1 - voltage_decay) dL/dw[t+1]        (w[t]: the voltage before reset)
    dL/du[t] = dL/dw[t] + (1 - current_decay) dL/du[t+1]
    dL/dx[t] = dL/du[t],   dL/dbias = sum over t of dL/dw[t]

On CPU both passes are compiled loops (numba, samples split across cores); elsewhere
(CUDA, or without numba) they are per-step torch operations outside autograd.
Tests pin both to the autograd reference.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from neurodeploy._numba import prange as _prange
from neurodeploy.train.neuron import (
    CubaFloatParameters,
    SurrogateParameters,
    cuba_float_charge,
    reset_fired,
    surrogate_derivative,
)

#: the step as the loops call it; _compiled puts numba-compiled versions in their place
_charge, _reset = cuba_float_charge, reset_fired


def _forward_loops(x, bias, has_bias, a, c, threshold, scale, height, band, one,
                   spikes, dsg):  # pragma: no cover - compiled
    """x (B, T, N) input currents -> spikes and surrogate derivatives, both (B, T, N);
    a, c: 1 - current_decay, 1 - voltage_decay; band <= 0: no truncation. Scalars
    (one = 1) arrive in x's dtype, so every product rounds as torch's does. The step is
    neuron.cuba_float_charge and neuron.reset_fired, compiled."""
    nb, nt, nn = x.shape
    zero = one - one
    for b in _prange(nb):
        u = np.zeros(nn, x.dtype)
        v = np.zeros(nn, x.dtype)
        for t in range(nt):
            for j in range(nn):
                if has_bias:
                    uj, vj = _charge(x[b, t, j], u[j], v[j], a, c, bias[j])
                else:
                    uj, vj = _charge(x[b, t, j], u[j], v[j], a, c)
                vmt = vj - threshold
                d = scale * abs(vmt) + one
                g = height / (d * d)
                if band > 0 and not abs(vmt) < band:
                    g = zero
                dsg[b, t, j] = g
                s = one if vmt > 0 else zero
                spikes[b, t, j] = s
                u[j] = uj
                v[j] = _reset(vj, s)


def _backward_loops(grad_spikes, spikes, dsg, a, c, one, grad_x,
                    grad_bias_parts):  # pragma: no cover - compiled
    """The adjoint recurrence (module docstring), backward in time per sample;
    grad_bias_parts (B, N): each sample's sum of dL/dw."""
    nb, nt, nn = grad_spikes.shape
    for b in _prange(nb):
        gu = np.zeros(nn, grad_spikes.dtype)
        gw_next = np.zeros(nn, grad_spikes.dtype)
        for t in range(nt - 1, -1, -1):
            for j in range(nn):
                gw = c * gw_next[j] * (one - spikes[b, t, j]) + grad_spikes[b, t, j] * dsg[b, t, j]
                gu[j] = gw + a * gu[j]
                grad_x[b, t, j] = gu[j]
                gw_next[j] = gw
                grad_bias_parts[b, j] += gw


_loops: dict = {}


def _compiled(fn):
    """``fn`` compiled with numba (parallel, GIL released) calling the compiled
    neuron.cuba_float_charge and reset_fired; None without numba. Not cached on disk:
    numba's cache of a caller does not see a change in the functions it calls."""
    if fn not in _loops:
        try:
            import numba
        except ImportError:
            _loops[fn] = None
        else:
            globals_ = dict(fn.__globals__, _prange=numba.prange,
                            _charge=numba.njit(inline="always")(cuba_float_charge),
                            _reset=numba.njit(inline="always")(reset_fired))
            _loops[fn] = numba.njit(parallel=True, nogil=True)(type(fn)(fn.__code__, globals_))
    return _loops[fn]


def _scalars(p: CubaFloatParameters, dtype):
    cast = np.dtype(str(dtype).replace("torch.", "")).type
    return cast(1.0 - p.current_decay), cast(1.0 - p.voltage_decay), cast(p.threshold), cast


def _forward_torch(x, bias, p, surrogate):
    """The steps of cuba_float_step without autograd (CUDA, or no numba)."""
    b, t, n = x.shape
    u = x.new_zeros(b, n)
    v = x.new_zeros(b, n)
    spikes = torch.empty_like(x)
    dsg = torch.empty_like(x)
    for k in range(t):
        u, v = cuba_float_charge(x[:, k], u, v, 1.0 - p.current_decay, 1.0 - p.voltage_decay, bias)
        vmt = v - p.threshold
        s = (vmt > 0).to(vmt.dtype)
        v = reset_fired(v, s)
        spikes[:, k] = s
        dsg[:, k] = surrogate_derivative(vmt, surrogate)
    return spikes, dsg


def _backward_torch(grad_spikes, spikes, dsg, p):
    b, t, n = grad_spikes.shape
    grad_x = torch.empty_like(grad_spikes)
    gu = grad_spikes.new_zeros(b, n)
    gw = grad_spikes.new_zeros(b, n)
    grad_bias = grad_spikes.new_zeros(n)
    a, c = 1.0 - p.current_decay, 1.0 - p.voltage_decay
    for k in range(t - 1, -1, -1):
        gw = c * gw * (1.0 - spikes[:, k]) + grad_spikes[:, k] * dsg[:, k]
        gu = gw + a * gu
        grad_x[:, k] = gu
        grad_bias += gw.sum(0)
    return grad_x, grad_bias


def _use_compiled(x: torch.Tensor):
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return _compiled(_forward_loops)


class CubaScanFunction(torch.autograd.Function):
    """current (B, T, N), bias (N,) or None -> spikes (B, T, N); see the module docstring."""

    @staticmethod
    def forward(ctx, current, bias, p: CubaFloatParameters, surrogate: SurrogateParameters):
        x = current.detach().contiguous()
        bias_d = bias.detach().to(x.dtype).contiguous() if bias is not None else None
        fwd = _use_compiled(x)
        if fwd is not None:
            a, c, threshold, cast = _scalars(p, x.dtype)
            spikes = torch.empty_like(x)
            dsg = torch.empty_like(x)
            band = cast(surrogate.band) if surrogate.band is not None else cast(0.0)
            bias_np = bias_d.numpy() if bias_d is not None else np.zeros(1, x.numpy().dtype)
            fwd(x.numpy(), bias_np, bias_d is not None, a, c, threshold, cast(surrogate.scale),
                cast(surrogate.height), band, cast(1.0), spikes.numpy(), dsg.numpy())
        else:
            spikes, dsg = _forward_torch(x, bias_d, p, surrogate)
        ctx.save_for_backward(spikes, dsg)
        ctx.p = p
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        spikes, dsg = ctx.saved_tensors
        g = grad_spikes.contiguous()
        p = ctx.p
        if _use_compiled(g) is not None:
            a, c, _, cast = _scalars(p, g.dtype)
            grad_x = torch.empty_like(g)
            parts = torch.zeros(g.shape[0], g.shape[2], dtype=g.dtype)
            _compiled(_backward_loops)(g.numpy(), spikes.numpy(), dsg.numpy(), a, c,
                                       cast(1.0), grad_x.numpy(), parts.numpy())
            grad_bias = parts.sum(0)
        else:
            grad_x, grad_bias = _backward_torch(g, spikes, dsg, p)
        if not ctx.has_bias:
            return grad_x, None, None, None
        return grad_x, grad_bias.to(ctx.bias_dtype), None, None


def cuba_scan(current: torch.Tensor, p: CubaFloatParameters, surrogate: SurrogateParameters,
              bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Spikes (batch, time, neurons) of CUBA-LIF neurons driven by ``current`` from a
    fresh state; gradients as autograd through :func:`cuba_float_step` gives them."""
    return CubaScanFunction.apply(current, bias, p, surrogate)
