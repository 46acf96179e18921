"""Sparse backward pass for CUBA-LIF layers (sparse spiking gradient descent,
Perez-Nieves & Goodman 2021), exact for a truncated surrogate.

Forward (per layer, fresh state, as :mod:`neurodeploy.train.neuron`)::

    x[t] = W s_in[t] (+ W_rec s[t-1])       u[t] = a u[t-1] + x[t]        a = 1 - current_decay
    v[t] = b v^[t-1] + u[t] + bias           s[t] = H(v[t] - theta)      b = 1 - voltage_decay
    v^[t] = v[t] (1 - s[t])                 (reset; the mask (1 - s) is not differentiated)

Gradient definition (the one the dense reference computes with autograd): the
surrogate ``dS/dV = surrogate_derivative(v - theta)`` is exactly zero outside the band
``|v - theta| < band``, the reset mask is a constant, and everything else is exact
BPTT, including the recurrent spike path for recurrent layers. Writing
``g[t] = dL/ds[t] * dS/dV`` (nonzero only on *active* (sample, step, neuron) entries),

    dL/dv[k] = sum_{tau >= k} g[tau] R(tau, k),  R = b^(tau-k) if no spike in [k, tau-1], else 0
    dL/du[t] = sum_{k >= t} a^(k-t) dL/dv[k],     dL/dx = dL/du

and, with presynaptic traces ``U[k] = sum_{t<=k} a^(k-t) s_in[t]``,
``V[k] = sum_{k'<=k} b^(k-k') U[k']`` and ``L(tau)`` the neuron's last spike before tau,

    dW[j, i] = sum over active (n, tau, j) of g * (V[n, tau, i] - b^(tau - L) V[n, L, i])

so the weight gradient costs O(active entries x fan-in) instead of O(B T N_out N_in).
The gradient to the layer's input, ``dL/ds_in = dL/dx @ W``, is only needed where
the layer below is active (elsewhere its surrogate is zero): when the input spikes
come from a sparse layer, it is computed on those entries only (the tensor carries
their indices); otherwise in full.

Two implementations behind :func:`cuba_layer`: torch (CPU and any device) and a
Triton kernel for the weight-gradient scatter on CUDA tensors
(:mod:`neurodeploy.train.sparse_cuda`, imported lazily).
"""
from __future__ import annotations

from typing import Optional

import torch

from neurodeploy.train.neuron import (
    CubaFloatParameters, CubaFloatState, SpikeFunction, SurrogateParameters, cuba_float_step,
    surrogate_derivative,
)

BACKWARDS = ("dense", "sparse")


def _check(x_in, weight, bias, weight_rec, p, surrogate, backward):
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if not isinstance(p, CubaFloatParameters):
        raise TypeError(f"the sparse backward is defined for CUBA-LIF layers; got neuron "
                        f"parameters of type {type(p).__name__}")
    if x_in.dim() != 3:
        raise ValueError(f"input must be (batch, time, features), got shape {tuple(x_in.shape)}")
    if weight.dim() != 2 or weight.shape[1] != x_in.shape[2]:
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match input features {x_in.shape[2]}")
    for name, t in (("weight", weight), ("bias", bias), ("weight_rec", weight_rec)):
        if t is not None and (t.dtype != x_in.dtype or t.device != x_in.device):
            raise TypeError(f"{name} is {t.dtype} on {t.device}, input is {x_in.dtype} on {x_in.device}")
    if not x_in.dtype.is_floating_point:
        raise TypeError(f"input must be a floating-point tensor, got {x_in.dtype}")
    n = weight.shape[0]
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"bias shape {tuple(bias.shape)} != ({n},)")
    if weight_rec is not None and weight_rec.shape != (n, n):
        raise ValueError(f"weight_rec shape {tuple(weight_rec.shape)} != ({n}, {n})")
    if backward == "sparse" and surrogate.band is None:
        raise ValueError("the sparse backward needs a truncated surrogate: set surrogate.band > 0")


def cuba_layer(x_in: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               p: CubaFloatParameters, surrogate: SurrogateParameters,
               weight_rec: Optional[torch.Tensor] = None, backward: str = "dense") -> torch.Tensor:
    """CUBA-LIF layer over time: input (batch, time, in) -> spikes (batch, time, out).

    backward='dense': ordinary autograd BPTT (the reference); 'sparse': the custom
    backward over active entries. Both give the same spikes, and the same gradients
    for the same surrogate (with its band).
    """
    _check(x_in, weight, bias, weight_rec, p, surrogate, backward)
    if backward == "dense":
        return dense_reference(x_in, weight, bias, p, surrogate, weight_rec)
    active_below = getattr(x_in, "_active_entries", None)
    out, an, at, aj = _SparseCuba.apply(x_in, weight, bias, weight_rec, p, surrogate, active_below)
    out._active_entries = (an, at, aj)  # lets the layer above compute only the input gradient needed
    return out


def dense_reference(x_in, weight, bias, p, surrogate, weight_rec=None):
    """The same layer with dense autograd BPTT (reset mask detached)."""
    current = x_in @ weight.T
    b, t, n = current.shape
    state = CubaFloatState(current.new_zeros(b, n), current.new_zeros(b, n))
    s = current.new_zeros(b, n)
    spikes = []
    for k in range(t):
        x = current[:, k] if weight_rec is None else current[:, k] + s @ weight_rec.T
        s, state = cuba_float_step(x, state, p, surrogate, bias)
        spikes.append(s)
    return torch.stack(spikes, dim=1)


def _filter(x: torch.Tensor, decay_keep: float) -> torch.Tensor:
    """y[t] = decay_keep * y[t-1] + x[t] along dim 1 (time)."""
    y = torch.empty_like(x)
    acc = torch.zeros_like(x[:, 0])
    for k in range(x.shape[1]):
        acc = decay_keep * acc + x[:, k]
        y[:, k] = acc
    return y


class _SparseCuba(torch.autograd.Function):
    """Forward: the dense dynamics, plus what the sparse backward needs: the active
    entries with their surrogate derivative and last spike, the spikes, and the
    presynaptic traces V (input, and own delayed spikes for recurrent layers), as in
    the paper's forward (which also stores a presynaptic trace)."""

    @staticmethod
    def forward(ctx, x_in, weight, bias, weight_rec, p, surrogate, active_below):
        with torch.no_grad():
            current = x_in @ weight.T
            bsz, steps, n = current.shape
            keep_u, keep_v = 1.0 - p.current_decay, 1.0 - p.voltage_decay
            u = current.new_zeros(bsz, n)
            v = current.new_zeros(bsz, n)
            s = current.new_zeros(bsz, n)
            spikes = torch.empty_like(current)
            vmt = torch.empty_like(current)
            last = torch.full((bsz, n), -1, dtype=torch.int32, device=current.device)
            last_before = torch.empty((bsz, steps, n), dtype=torch.int32, device=current.device)
            x_det = x_in.detach()
            tr_u = x_det.new_zeros(bsz, x_det.shape[2])
            tr_v = torch.zeros_like(tr_u)
            v_trace = torch.empty_like(x_det)
            if weight_rec is not None:
                rec_u, rec_v = torch.zeros_like(s), torch.zeros_like(s)
                v_trace_rec = torch.empty_like(current)
            for k in range(steps):
                tr_u = keep_u * tr_u + x_det[:, k]
                tr_v = keep_v * tr_v + tr_u
                v_trace[:, k] = tr_v
                if weight_rec is None:
                    x = current[:, k]
                else:
                    x = current[:, k] + s @ weight_rec.T
                    rec_u = keep_u * rec_u + s  # trace of s[t-1]
                    rec_v = keep_v * rec_v + rec_u
                    v_trace_rec[:, k] = rec_v
                u = keep_u * u + x
                v = keep_v * v + u
                if bias is not None:
                    v = v + bias
                vmt[:, k] = v - p.threshold
                s = (v > p.threshold).to(v.dtype)
                spikes[:, k] = s
                last_before[:, k] = last
                last = torch.where(s > 0, k, last)
                v = v * (1.0 - s)
            active = (vmt.abs() < surrogate.band).nonzero(as_tuple=True)  # (n, t, j) indices
            dsdv = surrogate_derivative(vmt[active], surrogate)
            last_active = last_before[active].to(torch.int64)
            del vmt, last_before, current
        ctx.p, ctx.surrogate = p, surrogate
        ctx.has_bias, ctx.recurrent = bias is not None, weight_rec is not None
        ctx.active_below = active_below
        ctx.shape = (bsz, steps, n)
        ctx.save_for_backward(weight, weight_rec if weight_rec is not None else weight.new_zeros(0),
                              spikes, *active, dsdv, last_active, v_trace,
                              v_trace_rec if weight_rec is not None else weight.new_zeros(0))
        ctx.mark_non_differentiable(*active)
        return (spikes, *active)

    @staticmethod
    def backward(ctx, grad_spikes, *_grad_indices):
        weight, weight_rec, spikes, an, at, aj, dsdv, last, v_trace, v_trace_rec = ctx.saved_tensors
        p = ctx.p
        bsz, steps, n = ctx.shape
        keep_u, keep_v = 1.0 - p.current_decay, 1.0 - p.voltage_decay
        need_input = ctx.needs_input_grad[0]

        if ctx.recurrent:
            g_dense, du = _recurrent_scan(grad_spikes, spikes, weight_rec, an, at, aj, dsdv, keep_u, keep_v)
            g = g_dense[an, at, aj]
        else:
            g = grad_spikes[an, at, aj] * dsdv  # g = dL/ds * dS/dV on active entries
            du = _scan(g, an, at, aj, spikes, keep_u, keep_v) if need_input else None

        grad_w = _trace_gradient(g, an, at, aj, last, v_trace, keep_v, n)
        grad_w_rec = _trace_gradient(g, an, at, aj, last, v_trace_rec, keep_v, n) if ctx.recurrent else None
        grad_b = None
        if ctx.has_bias:
            ones = torch.ones(1, steps, 1, dtype=g.dtype, device=g.device)
            c = _filter(ones, keep_v)[0, :, 0]  # C[t] = sum_{k<=t} b^(t-k)
            coeff = c[at] - torch.where(last >= 0, keep_v ** (at - last).to(g.dtype) * c[last.clamp(min=0)],
                                        torch.zeros_like(g))
            grad_b = torch.zeros(n, dtype=g.dtype, device=g.device).index_add_(0, aj, g * coeff)

        grad_x = None
        if need_input:
            below = ctx.active_below
            if below is None:
                grad_x = du @ weight
            else:  # only where the layer below is active: elsewhere its surrogate is zero
                bn, bt, bi = below
                grad_x = torch.zeros(bsz, steps, weight.shape[1], dtype=du.dtype, device=du.device)
                chunk = max(1, (1 << 22) // max(n, 1))
                for start in range(0, len(bn), chunk):
                    sl = slice(start, start + chunk)
                    grad_x[bn[sl], bt[sl], bi[sl]] = (du[bn[sl], bt[sl]] * weight[:, bi[sl]].T).sum(-1)
        return grad_x, grad_w, grad_b, grad_w_rec, None, None, None


def _scan(g, an, at, aj, spikes, keep_u, keep_v):
    """dL/du (batch, time, out) from g on active entries (backward in time)."""
    bsz, steps, n = spikes.shape
    g_dense = torch.zeros_like(spikes)
    g_dense[an, at, aj] = g
    du = torch.empty_like(spikes)
    dv_next = torch.zeros_like(spikes[:, 0])
    du_next = torch.zeros_like(spikes[:, 0])
    for k in range(steps - 1, -1, -1):
        dv = g_dense[:, k] + keep_v * (1.0 - spikes[:, k]) * dv_next
        du_k = dv + keep_u * du_next
        du[:, k] = du_k
        dv_next, du_next = dv, du_k
    return du


def _recurrent_scan(grad_spikes, spikes, weight_rec, an, at, aj, dsdv, keep_u, keep_v):
    """Backward scan for a recurrent layer: g[t] also receives W_rec^T dL/du[t+1]."""
    bsz, steps, n = spikes.shape
    dsdv_dense = torch.zeros_like(spikes)
    dsdv_dense[an, at, aj] = dsdv
    g_dense = torch.zeros_like(spikes)
    du = torch.empty_like(spikes)
    dv_next = torch.zeros_like(spikes[:, 0])
    du_next = torch.zeros_like(spikes[:, 0])
    for k in range(steps - 1, -1, -1):
        ds = grad_spikes[:, k]
        if k + 1 < steps:
            ds = ds + du_next @ weight_rec  # s[k] feeds x[k+1] through W_rec
        g_k = ds * dsdv_dense[:, k]
        g_dense[:, k] = g_k
        dv = g_k + keep_v * (1.0 - spikes[:, k]) * dv_next
        du_k = dv + keep_u * du_next
        du[:, k] = du_k
        dv_next, du_next = dv, du_k
    return g_dense, du


def _trace_gradient(g, an, at, aj, last, v_trace, keep_v, n_out):
    """dW[j, :] = sum over active (n, t, j): g * (V[n, t] - b^(t - L) V[n, L])."""
    if g.is_cuda:
        from neurodeploy.train.sparse_cuda import trace_gradient_cuda
        return trace_gradient_cuda(g, an, at, aj, last, v_trace, keep_v, n_out)
    return trace_gradient_torch(g, an, at, aj, last, v_trace, keep_v, n_out)


def trace_gradient_torch(g, an, at, aj, last, v_trace, keep_v, n_out):
    bsz, steps, n_in = v_trace.shape
    flat = v_trace.reshape(bsz * steps, n_in)
    has_last = last >= 0
    decay = torch.where(has_last, keep_v ** (at - last).to(g.dtype), torch.zeros_like(g))
    rows = torch.cat([aj, aj[has_last]])
    cols = torch.cat([an * steps + at, (an * steps + last)[has_last]])
    vals = torch.cat([g, -(g * decay)[has_last]])
    if len(vals) == 0:
        return torch.zeros(n_out, n_in, dtype=v_trace.dtype, device=v_trace.device)
    sp = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n_out, bsz * steps),
                                 check_invariants=False)
    return torch.sparse.mm(sp, flat)
