"""Triton kernels for the sparse backward on CUDA (see :mod:`neurodeploy.train.sparse`).

The torch implementation's cost on a GPU is its time loops: ~10 small kernel
launches per step for the forward, 2 per step for each input trace, 3+ per step for
the adjoint. Here each loop is one kernel; a program owns (one sample, a block of
neurons/channels) and walks over time in registers:

* ``forward``: the CUBA-LIF forward of a feed-forward layer from the input currents
  (``x_in @ W.T`` stays a cuBLAS matmul), writing spikes and ``v - threshold``;
  the same arithmetic in the same order as neuron.cuba_float_step, with FMA
  contraction disabled, so spikes match torch's.
* ``trace``: the doubly filtered input trace Y of the weight gradient.
* ``adjoint``: the (u, v) adjoint of a feed-forward layer (only needed when the
  layer's input needs a gradient).

The weight gradient ``A @ Y`` is a sparse (CSR) x dense product, done by cuSPARSE
through torch. A recurrent layer's forward and adjoint need a matmul with W_rec per
step and stay in torch. Triton is imported only when these kernels are first used;
``TRITON_INTERPRET=1`` runs them on CPU tensors (tests).
"""
from __future__ import annotations

import functools

import torch

from neurodeploy.train import sparse as _torch_impl


@functools.lru_cache(maxsize=None)
def _kernels():
    try:
        import triton
        import triton.language as tl
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the CUDA sparse backward needs triton (pip install triton); "
                          f"it could not be imported: {err}") from err

    @triton.jit
    def forward_kernel(cur_ptr, bias_ptr, prm_ptr, spk_ptr, vmt_ptr, T, N,
                       HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        a = tl.load(prm_ptr)
        c = tl.load(prm_ptr + 1)
        th = tl.load(prm_ptr + 2)
        u = tl.zeros([BLOCK], dtype=a.dtype)
        v = tl.zeros([BLOCK], dtype=a.dtype)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs, mask=mask, other=0.0)
        base = b * T * N
        for t in range(T):
            x = tl.load(cur_ptr + base + t * N + offs, mask=mask, other=0.0)
            u = a * u + x
            v = c * v + u
            if HAS_BIAS:
                v = v + bias
            vmt = v - th
            s = (vmt > 0).to(a.dtype)
            v = v * (1.0 - s)
            tl.store(spk_ptr + base + t * N + offs, s, mask=mask)
            tl.store(vmt_ptr + base + t * N + offs, vmt, mask=mask)

    @triton.jit
    def trace_kernel(x_ptr, prm_ptr, y_ptr, T, N, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        a = tl.load(prm_ptr)
        c = tl.load(prm_ptr + 1)
        y = tl.zeros([BLOCK], dtype=a.dtype)
        yy = tl.zeros([BLOCK], dtype=a.dtype)
        base = b * T * N
        for t in range(T):
            x = tl.load(x_ptr + base + t * N + offs, mask=mask, other=0.0)
            y = a * y + x
            yy = c * yy + y
            tl.store(y_ptr + base + t * N + offs, yy, mask=mask)

    @triton.jit
    def adjoint_kernel(e_ptr, spk_ptr, prm_ptr, dx_ptr, T, N, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        a = tl.load(prm_ptr)
        c = tl.load(prm_ptr + 1)
        dv = tl.zeros([BLOCK], dtype=a.dtype)
        du = tl.zeros([BLOCK], dtype=a.dtype)
        base = b * T * N
        for k in range(T):
            t = T - 1 - k
            s = tl.load(spk_ptr + base + t * N + offs, mask=mask, other=0.0)
            e = tl.load(e_ptr + base + t * N + offs, mask=mask, other=0.0)
            dv = c * (1.0 - s) * dv + e
            du = dv + a * du
            tl.store(dx_ptr + base + t * N + offs, du, mask=mask)

    return triton, forward_kernel, trace_kernel, adjoint_kernel


BLOCK = 128


def _launch(kernel, grid, *args, **meta):
    # no FMA contraction: keeps the forward's rounding equal to torch's separate ops
    # (a compile option of the CUDA backend; the interpreter ignores it)
    return kernel[grid](*args, **meta, enable_fp_fusion=False)


def _params(dtype, device, *values):
    return torch.tensor(values, dtype=dtype, device=device)


def _grid(b, n):
    return (b, (n + BLOCK - 1) // BLOCK)


class TritonKernels:
    """Triton versions of :class:`neurodeploy.train.sparse.TorchKernels`."""

    @staticmethod
    def forward_active(x_in, weight, bias, weight_rec, p, surrogate):
        if weight_rec is not None:   # per-step matmul with W_rec: torch loop
            return _torch_impl.forward_active(x_in, weight, bias, weight_rec, p, surrogate)
        _, forward_kernel, _, _ = _kernels()
        current = (x_in @ weight.T).contiguous()
        b, t, n = current.shape
        spikes = torch.empty_like(current)
        vmt = torch.empty_like(current)
        prm = _params(current.dtype, current.device, 1.0 - p.current_decay,
                      1.0 - p.voltage_decay, p.threshold)
        bias_arg = bias.contiguous() if bias is not None else prm
        _launch(forward_kernel, _grid(b, n), current, bias_arg, prm, spikes, vmt, t, n,
                HAS_BIAS=bias is not None, BLOCK=BLOCK)
        flat = vmt.transpose(0, 1).reshape(-1)   # (T, B, N) order, as the torch version
        active = torch.nonzero(flat.abs() < surrogate.band).squeeze(1)
        sg = _torch_impl.surrogate_derivative(flat[active], surrogate)
        return spikes, active, sg

    @staticmethod
    def filtered_trace(x, a, c):
        _, _, trace_kernel, _ = _kernels()
        x = x.contiguous()
        b, t, n = x.shape
        out = torch.empty_like(x)
        _launch(trace_kernel, _grid(b, n), x, _params(x.dtype, x.device, a, c), out, t, n,
                BLOCK=BLOCK)
        return out

    @staticmethod
    def adjoint(grad_spikes, spikes, active_tbn, sg, p, weight_rec, need_dx):
        if weight_rec is not None or not need_dx:
            return _torch_impl.adjoint(grad_spikes, spikes, active_tbn, sg, p, weight_rec, need_dx)
        _, _, _, adjoint_kernel = _kernels()
        b, t, n = spikes.shape
        g_tbn = grad_spikes.transpose(0, 1).reshape(-1)
        e = g_tbn[active_tbn] * sg
        e_dense = torch.zeros(t * b * n, dtype=sg.dtype, device=sg.device)
        e_dense[active_tbn] = e
        e_dense = e_dense.view(t, b, n).transpose(0, 1).contiguous()
        dx = torch.empty_like(e_dense)
        _launch(adjoint_kernel, _grid(b, n), e_dense, spikes.contiguous(),
                _params(sg.dtype, sg.device, 1.0 - p.current_decay, 1.0 - p.voltage_decay),
                dx, t, n, BLOCK=BLOCK)
        return e, dx
