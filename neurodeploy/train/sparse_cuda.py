"""Triton kernels for the sparse backward on CUDA (see :mod:`neurodeploy.train.sparse`).

On a GPU the dense BPTT backward is slow because of its launch count (autograd walks
~10 nodes per layer and step, each a tiny kernel), not its arithmetic. So here each
time loop is one kernel: a program owns (one sample, a block of neurons), or (a few
samples, all neurons) for a recurrent layer, and walks over time in registers.

* ``forward``: the CUBA-LIF forward of a feed-forward layer from the input currents
  (``x_in @ W.T`` stays a cuBLAS matmul), writing spikes; the same arithmetic in the
  same order as
  neuron.cuba_float_step, with FMA contraction disabled, so spikes match torch's; in
  place of the currents it leaves the band-truncated surrogate derivative, which is
  compacted once (``torch.nonzero``). Saved for the backward: the spikes, the active
  indices and their surrogate values.
* ``adjoint`` / ``adjoint_rec``: the backward over time of the (u, v) filter. The
  error ``e = G sg`` is nonzero only at the active entries (sg is scattered into a
  zeroed buffer); ``dv[t] = e[t] + c (1 - s[t]) dv[t+1]`` and
  ``du[t] = dv[t] + a du[t+1]`` run for every (sample, neuron), and ``du`` (the
  gradient of the layer's input current) overwrites the buffer. The recurrent kernel
  adds ``W_rec^T du[t+1]`` to G in the same pass.

From ``du``, ``dL/dW = du^T x_in`` (and ``dL/dW_rec = du[t]^T s[t-1]``,
``dL/ds_in = du W``) are single cuBLAS products, and the bias gradient is the sum of
``dv`` over time, kept per program. This is the same gradient as the CPU paths'
``A @ Y`` (``du`` is the filtered sum of the active errors); on the GPU the dense
products over ``du`` take ~0.25 ms, less than building the sparse ``A`` and the input
trace ``Y`` (the first CUDA version did that: its backward was 5x faster than dense
where this one is 40-60x, and it took more memory than dense; docs/sparse_backward.md). A recurrent layer's forward needs a matmul with W_rec per
step that must round as torch's does, so it stays in torch. Triton is imported only
when these kernels are first used; ``TRITON_INTERPRET=1`` runs them on CPU tensors
(tests).
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
    def forward_kernel(cur_ptr, bias_ptr, prm_ptr, spk_ptr, T, N,
                       HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        a = tl.load(prm_ptr)
        c = tl.load(prm_ptr + 1)
        th = tl.load(prm_ptr + 2)
        scale = tl.load(prm_ptr + 3)
        height = tl.load(prm_ptr + 4)
        band = tl.load(prm_ptr + 5)
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
            # the band-truncated surrogate derivative (neuron.surrogate_derivative)
            q = scale * tl.abs(vmt) + 1.0
            sg = tl.where(tl.abs(vmt) < band, height / (q * q), 0.0)
            tl.store(cur_ptr + base + t * N + offs, sg, mask=mask)

    @triton.jit
    def adjoint_kernel(grad_ptr, spk_ptr, buf_ptr, dbias_ptr, prm_ptr, T, N,
                       BLOCK: tl.constexpr):
        # buf: sg at the active entries, 0 elsewhere -> overwritten with du
        b = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        a = tl.load(prm_ptr)
        c = tl.load(prm_ptr + 1)
        dv = tl.zeros([BLOCK], dtype=a.dtype)
        du = tl.zeros([BLOCK], dtype=a.dtype)
        db = tl.zeros([BLOCK], dtype=a.dtype)
        base = b * T * N
        for k in range(T):
            idx = base + (T - 1 - k) * N + offs
            s = tl.load(spk_ptr + idx, mask=mask, other=0.0)
            g = tl.load(grad_ptr + idx, mask=mask, other=0.0)
            sg = tl.load(buf_ptr + idx, mask=mask, other=0.0)
            dv = c * (1.0 - s) * dv + g * sg
            du = dv + a * du
            db += dv
            tl.store(buf_ptr + idx, du, mask=mask)
        tl.store(dbias_ptr + b * N + offs, db, mask=mask)

    @triton.jit
    def adjoint_rec_kernel(grad_ptr, spk_ptr, buf_ptr, dv_ptr, dbias_ptr, wrec_ptr, prm_ptr,
                           B, T, N, BS: tl.constexpr, BJ: tl.constexpr, BK: tl.constexpr):
        # a program owns BS samples and all N neurons; du[t + 1] (in buf) and dv (in
        # dv_ptr, zeroed) go through memory between steps, hence the barrier per step
        rows = tl.program_id(0) * BS + tl.arange(0, BS)
        rmask = rows < B
        rbase = rows.to(tl.int64) * T * N
        a = tl.load(prm_ptr)
        c = tl.load(prm_ptr + 1)
        for k in range(T):
            t = T - 1 - k
            has_next = k > 0
            for jb in range(0, N, BJ):
                cols = jb + tl.arange(0, BJ)
                m2 = rmask[:, None] & (cols < N)[None, :]
                rec = tl.zeros([BS, BJ], dtype=a.dtype)
                for kb in range(0, N, BK):
                    ks = kb + tl.arange(0, BK)
                    kmask = ks < N
                    dn = tl.load(buf_ptr + rbase[:, None] + (t + 1) * N + ks[None, :],
                                 mask=(rmask[:, None] & kmask[None, :]) & has_next, other=0.0)
                    w = tl.load(wrec_ptr + ks[:, None] * N + cols[None, :],
                                mask=kmask[:, None] & (cols < N)[None, :], other=0.0)
                    rec += tl.sum(dn[:, :, None] * w[None, :, :], axis=1)
                du_next = tl.load(buf_ptr + rbase[:, None] + (t + 1) * N + cols[None, :],
                                  mask=m2 & has_next, other=0.0)
                idx = rbase[:, None] + t * N + cols[None, :]
                g = tl.load(grad_ptr + idx, mask=m2, other=0.0) + rec
                sg = tl.load(buf_ptr + idx, mask=m2, other=0.0)
                s = tl.load(spk_ptr + idx, mask=m2, other=0.0)
                state = rows[:, None] * N + cols[None, :]
                dv = tl.load(dv_ptr + state, mask=m2, other=0.0)
                dv = c * (1.0 - s) * dv + g * sg
                tl.store(dv_ptr + state, dv, mask=m2)
                tl.store(buf_ptr + idx, dv + a * du_next, mask=m2)
                db = tl.load(dbias_ptr + state, mask=m2, other=0.0)
                tl.store(dbias_ptr + state, db + dv, mask=m2)
            tl.debug_barrier()

    @triton.jit
    def scatter_kernel(idx_ptr, val_ptr, out_ptr, M, lo, hi, BLOCK: tl.constexpr):
        # out[idx - lo] = val for the entries with lo <= idx < hi (one batch chunk)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < M
        i = tl.load(idx_ptr + offs, mask=m, other=-1)
        keep = m & (i >= lo) & (i < hi)
        tl.store(out_ptr + (i - lo), tl.load(val_ptr + offs, mask=keep, other=0.0), mask=keep)

    return triton, forward_kernel, adjoint_kernel, adjoint_rec_kernel, scatter_kernel


BLOCK = 128
#: recurrent adjoint: samples per program, and the neuron blocks of its W_rec product
REC_SAMPLES, REC_BLOCK_J, REC_BLOCK_K = 1, 256, 16
#: the backward's (batch, time, neuron) buffer ``du`` is built at most this large (bytes):
#: larger layers run in batch chunks (bounds the transient memory; each chunk costs a
#: few more launches)
CHUNK_BYTES = 16 << 20


def _launch(kernel, grid, *args, **meta):
    # the forward: no FMA contraction keeps its rounding equal to torch's separate ops
    # (a compile option of the CUDA backend; the interpreter ignores it)
    return kernel[grid](*args, **meta, enable_fp_fusion=False)


@functools.lru_cache(maxsize=256)
def _params(dtype, device, *values):
    # cached: a fresh host-to-device copy per launch would wait for the GPU each time
    return torch.tensor(values, dtype=dtype, device=device)


def _grid(b, n):
    return (b, (n + BLOCK - 1) // BLOCK)


class TritonKernels:
    """The CUDA implementation behind :class:`neurodeploy.train.sparse.SparseCubaFunction`:
    ``forward_active`` (active indices in (batch, time, neuron) order) and
    ``layer_backward`` (the whole backward of the layer)."""

    @staticmethod
    def forward_active(x_in, weight, bias, weight_rec, p, surrogate):
        if weight_rec is not None:   # per-step matmul with W_rec: torch loop
            spikes, (ti, bi, ji), sg = _torch_impl.forward_active_entries(
                x_in, weight, bias, weight_rec, p, surrogate)
            _, t, n = spikes.shape
            return spikes, (bi * t + ti) * n + ji, sg
        forward_kernel = _kernels()[1]
        current = (x_in @ weight.T).contiguous()
        b, t, n = current.shape
        spikes = torch.empty_like(current)
        prm = _params(current.dtype, current.device, 1.0 - p.current_decay,
                      1.0 - p.voltage_decay, p.threshold, surrogate.scale, surrogate.height,
                      surrogate.band)
        bias_arg = bias.contiguous() if bias is not None else prm
        _launch(forward_kernel, _grid(b, n), current, bias_arg, prm, spikes, t, n,
                HAS_BIAS=bias is not None, BLOCK=BLOCK)
        # the kernel left the surrogate derivative in place of the currents: nonzero
        # exactly at the active entries (it is > 0 inside the band)
        flat = current.view(-1)
        active = torch.nonzero(flat).squeeze(1)
        return spikes, active, flat[active]

    @staticmethod
    def layer_backward(x_in, weight, weight_rec, spikes, active, sg, grad_spikes, p,
                       need_dx, need_w, need_b, need_wr):
        """-> (dL/dx_in, dL/dW, dL/dbias, dL/dW_rec), each None unless asked for. Runs
        over batch chunks whose ``du`` buffer is at most CHUNK_BYTES."""
        _, _, adjoint_kernel, adjoint_rec_kernel, scatter_kernel = _kernels()
        b, t, n = spikes.shape
        grad_spikes = grad_spikes.contiguous()
        spikes = spikes.contiguous()
        x_flat = x_in.reshape(b * t, -1)
        dtype, device = sg.dtype, sg.device
        prm = _params(dtype, device, 1.0 - p.current_decay, 1.0 - p.voltage_decay)
        chunks = triton_cdiv(b * t * n * sg.element_size(), max(1, CHUNK_BYTES))
        rows = triton_cdiv(b, min(b, chunks))   # equal chunks
        d_x = grad_spikes.new_empty(b, t, weight.shape[1]) if need_dx else None
        d_w = d_wr = None
        if weight_rec is None:   # written whole by the kernel
            dbias, dv = torch.empty(b, n, dtype=dtype, device=device), None
        else:                    # accumulated by the kernel
            dbias = torch.zeros(b, n, dtype=dtype, device=device)
            dv = torch.zeros(b, n, dtype=dtype, device=device)
        for b0 in range(0, b, rows):
            b1 = min(b, b0 + rows)
            du = torch.zeros((b1 - b0) * t * n, dtype=dtype, device=device)
            if rows == b:
                du[active] = sg
            elif active.numel():
                scatter_kernel[(triton_cdiv(active.numel(), 1024),)](
                    active, sg, du, active.numel(), b0 * t * n, b1 * t * n, BLOCK=1024)
            du = du.view(b1 - b0, t, n)
            if weight_rec is None:
                adjoint_kernel[_grid(b1 - b0, n)](grad_spikes[b0:b1], spikes[b0:b1], du,
                                                  dbias[b0:b1], prm, t, n, BLOCK=BLOCK)
            else:
                bj = min(REC_BLOCK_J, max(16, 1 << (n - 1).bit_length()))
                adjoint_rec_kernel[(triton_cdiv(b1 - b0, REC_SAMPLES),)](
                    grad_spikes[b0:b1], spikes[b0:b1], du, dv[b0:b1], dbias[b0:b1],
                    weight_rec.contiguous(), prm, b1 - b0, t, n,
                    BS=REC_SAMPLES, BJ=bj, BK=min(REC_BLOCK_K, bj))
            flat = du.view(-1, n)
            if need_dx:   # 2-d product straight into d_x (a 3-d matmul with out= copies)
                torch.mm(flat, weight, out=d_x[b0:b1].view(-1, weight.shape[1]))
            if need_w:
                xs = x_flat[b0 * t:b1 * t]
                d_w = flat.T @ xs if d_w is None else d_w.addmm_(flat.T, xs)
            if need_wr:
                d_wr = _recurrent_weight_grad(du, spikes[b0:b1], d_wr)
            del du, flat   # before the next chunk's buffer is allocated
        d_b = dbias.sum(0) if need_b else None
        return d_x, d_w, d_b, d_wr


def _recurrent_weight_grad(du, spikes, acc):
    """acc + sum over samples and t >= 1 of du[t]^T s[t-1]: the flat product of rows
    r and r - 1, less the pairs that cross from one sample's last step to the next
    sample's first (no copies of the (batch, time, neuron) tensors)."""
    b, t, n = du.shape
    flat_du, flat_s = du.reshape(b * t, n), spikes.reshape(b * t, n)
    part = flat_du[1:].T @ flat_s[:-1]
    if b > 1:
        part -= du[1:, 0].T @ spikes[:-1, -1]
    return part if acc is None else acc.add_(part)


def triton_cdiv(a, b):
    return (a + b - 1) // b
