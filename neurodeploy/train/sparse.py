"""Sparse backward pass for CUBA-LIF layers (sparse spiking gradient descent).

After Perez-Nieves & Goodman 2021 (arXiv 2105.08810): with the surrogate
derivative truncated to zero outside ``|v - threshold| < band``, only the
*active* (sample, step, neuron) entries carry gradient, and the weight gradient
can be computed from those entries alone.

Forward (one layer, per sample; a = 1 - current_decay, c = 1 - voltage_decay;
the equations of :mod:`neurodeploy.train.neuron`)::

    x[t] = W s_in[t] (+ W_rec s[t-1])
    u[t] = a u[t-1] + x[t]
    v[t] = c v[t-1] + u[t] + bias          (v before reset; called v_pre below)
    s[t] = H(v[t] - theta);  v[t] <- v[t] (1 - s[t])

Gradient definition (the one dense autograd computes through
:func:`neurodeploy.train.neuron.cuba_float_step`; :func:`cuba_layer` with
``backward="dense"`` is that reference):

* dS/dV is the band-truncated surrogate ``sg`` at ``v_pre[t] - theta``; entries
  with ``|v_pre - theta| >= band`` contribute nothing. Let ``e[t] = G[t] sg[t]``
  where ``G[t] = dL/ds[t]`` (total, including the recurrent path).
* The reset is detached: ``v[t] = v_pre[t] (1 - s[t])`` is differentiated with
  ``s[t]`` held constant. So the gradient through the voltage stops at the last
  spike, while the current ``u`` (never reset) carries it further back. This is
  kept exactly (unlike the paper's single trace, which fits reset-by-subtraction).
* Everything else (both leaks, the bias, the recurrent input ``W_rec s[t-1]``
  with gradient into ``s[t-1]``) is kept exactly.

Sparse weight gradient. ``v_pre[t]`` depends on ``W`` through the state chain
restarted after the neuron's last spike ``r < t`` (``r = -1``: none)::

    dv_pre[t]/dW_ji = sum_{k=r+1..t} c^(t-k) y_i[k],  y_i[k] = sum_{t'<=k} a^(k-t') s_in_i[t']
                    = Y_i[t] - c^(t-r) Y_i[r],         Y_i[t] = sum_{k<=t} c^(t-k) y_i[k]

with ``Y`` a doubly leaky-filtered input trace that does not depend on the
output neuron. Hence ``dW = A @ Y`` with ``A`` a sparse (out, batch*time) matrix
holding ``e`` at each active (b, t, j) and ``-e c^(t-r)`` at (b, r, j): at most
two nonzeros per active entry. The bias and ``W_rec`` (input ``s[t-1]``) use the
same formula. Cost: O(active * in) instead of O(batch * time * out * in).

Gradient to the input and the recurrent path: ``dx[t] = du[t]`` from the
adjoint of the (u, v) filter, ``dv[t] = e[t] + c (1 - s[t]) dv[t+1]``,
``du[t] = dv[t] + a du[t+1]``, run backward over time on (batch, out) tensors
(elementwise only); ``dL/ds_in = dx W``. For a recurrent layer ``G[t]`` at the
active entries needs ``W_rec^T dx[t+1]``, gathered for those entries only. The
adjoint is skipped for a feed-forward layer whose input needs no gradient.
When the input is another sparse layer's spikes (unchanged, on CPU with the compiled
pass, the layer wider than ``sparse_cpu.NARROW_LAYER``), ``dL/ds_in`` is computed only
at that layer's active entries, the only ones its backward reads (its ``e = G sg`` is
0 elsewhere), as the paper scatters into the entries active in the layer below. The
parameter gradients are unchanged; the gradient of those spikes themselves (seen by
``retain_grad`` or ``autograd.grad``) then lacks this layer's part off the active
entries (``INPUT_GRADIENT_AT_ACTIVE_ONLY = False`` computes it everywhere).

Implementations: this module (torch, any device); :mod:`neurodeploy.train.sparse_cpu`
(the whole backward as one numba pass, used automatically for CPU tensors when
numba is installed); :mod:`neurodeploy.train.sparse_cuda` (Triton kernels for the
time loops, used automatically for CUDA tensors: the adjoint runs over every entry with
``e`` nonzero only at the active ones, and the weight gradient is ``du^T x``, one GEMM,
which on a GPU is faster than building ``A`` and ``Y``). Both imported lazily.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from neurodeploy.train.events import input_current, weight_gradient
from neurodeploy.train.neuron import (
    CubaFloatParameters,
    CubaFloatState,
    SurrogateParameters,
    cuba_float_charge,
    cuba_float_sequence,
    cuba_float_step,
    in_band,
    reset_fired,
    surrogate_derivative,
)

BACKWARDS = ("dense", "sparse")
#: CPU tensors: run the backward (and a feed-forward layer's forward time loop) through
#: the compiled code of train.sparse_cpu when numba is installed (False: the torch
#: implementation below, e.g. to compare)
USE_COMPILED_CPU = True
#: CPU, compiled pass: a sparse layer whose input is another sparse layer's spikes
#: computes the gradient into them only at that layer's active entries, all that its
#: backward reads (False: everywhere, e.g. to inspect those spikes' gradient)
INPUT_GRADIENT_AT_ACTIVE_ONLY = True
#: CPU, feed-forward layers without bias: above this fraction of active entries the weight
#: gradient is one GEMM over every entry (du^T x_in) instead of the sparse A @ Y
GEMM_WEIGHT_GRADIENT_ABOVE = 0.15
#: CUDA: a sparse layer whose input is another feed-forward sparse layer's spikes
#: (unchanged) keeps that layer's uint8 copy of them for its weight gradient instead of
#: the float tensor (a quarter of the bytes; the float spikes can then be freed after
#: the forward)
SAVE_INPUT_SPIKES_AS_UINT8 = True


def check_backward_mode(backward: str, layer_kind: str, layer_name: str = "layer") -> None:
    """Raise a clear error unless ``backward`` is valid for a layer of ``layer_kind``
    ('cuba' is the only kind with a sparse backward: dense or recurrent CUBA-LIF)."""
    if backward not in BACKWARDS:
        raise ValueError(f"{layer_name}: backward must be one of {BACKWARDS}, got {backward!r}")
    if backward == "sparse" and layer_kind != "cuba":
        raise ValueError(
            f"{layer_name}: the sparse backward exists only for CUBA-LIF dense/recurrent layers, "
            f"not for a {layer_kind!r} layer; use backward='dense' for it")


def _check_inputs(x_in, weight, bias, weight_rec, surrogate, backward):
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if not isinstance(surrogate, SurrogateParameters):
        raise TypeError(f"surrogate must be SurrogateParameters, got {type(surrogate).__name__}")
    if backward == "sparse":
        if surrogate.band is None:
            raise ValueError("the sparse backward needs a truncated surrogate: set surrogate band "
                             "(e.g. train.surrogate.band: 0.2); got band None")
        if not surrogate.band > 0:
            raise ValueError(f"surrogate band must be > 0, got {surrogate.band}")
    if x_in.dim() != 3:
        raise ValueError(f"x_in must be (batch, time, in), got shape {tuple(x_in.shape)}")
    if weight.dim() != 2 or weight.shape[1] != x_in.shape[2]:
        raise ValueError(f"weight must be (out, in) with in = {x_in.shape[2]} (x_in's last dim), "
                         f"got shape {tuple(weight.shape)}")
    out = weight.shape[0]
    if not x_in.is_floating_point():
        raise TypeError(f"x_in must be a floating point tensor, got {x_in.dtype}")
    named = [("weight", weight), ("bias", bias), ("weight_rec", weight_rec)]
    for name, t in named:
        if t is None:
            continue
        if t.dtype != x_in.dtype:
            raise TypeError(f"{name} dtype {t.dtype} does not match x_in dtype {x_in.dtype}")
        if t.device != x_in.device:
            raise ValueError(f"{name} is on {t.device}, x_in on {x_in.device}")
    if bias is not None and tuple(bias.shape) != (out,):
        raise ValueError(f"bias must be ({out},), got shape {tuple(bias.shape)}")
    if weight_rec is not None and tuple(weight_rec.shape) != (out, out):
        raise ValueError(f"weight_rec must be ({out}, {out}), got shape {tuple(weight_rec.shape)}")


def cuba_layer(x_in: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               p: CubaFloatParameters, surrogate: SurrogateParameters,
               weight_rec: Optional[torch.Tensor] = None, backward: str = "dense",
               stats: Optional[dict] = None) -> torch.Tensor:
    """A dense (optionally recurrent) CUBA-LIF layer over time -> spikes (batch, time, out).

    x_in: (batch, time, in) input spikes or values; weight: (out, in); bias: (out,)
    or None; weight_rec: (out, out) or None (input ``weight_rec @ s[t-1]``).
    backward: 'dense' = autograd BPTT through neuron.cuba_float_step (the reference);
    'sparse' = the sparse backward (module docstring), needs ``surrogate.band``.
    The spikes are identical in both modes. stats (sparse only): a dict to which the
    number of active entries ("active") and of all entries ("entries") are added.
    """
    _check_inputs(x_in, weight, bias, weight_rec, surrogate, backward)
    if backward == "dense":
        return _dense_layer(x_in, weight, bias, p, surrogate, weight_rec)
    kernels = TorchKernels
    if x_in.is_cuda:
        from neurodeploy.train.sparse_cuda import TritonKernels
        kernels = TritonKernels
    return _sparse_layer(x_in, weight, bias, weight_rec, p, surrogate, kernels, stats)


def _sparse_layer(x_in, weight, bias, weight_rec, p, surrogate, kernels, stats=None):
    """The sparse layer with the given kernels; what it learns about its output (active
    entries on CPU, the uint8 copy of the spikes on CUDA) is attached to the output for
    a sparse layer that takes it as input."""
    found: dict = {}
    out = SparseCubaFunction.apply(x_in, weight, bias, weight_rec, p, surrogate, kernels, stats,
                                   _entries_below(x_in), found, _uint8_spikes_of(x_in))
    if "active" in found:   # for a sparse layer that takes these spikes as its input
        out._sparse_active_entries = ActiveEntries(found["active"], tuple(out.shape), out._version)
    if "spikes_uint8" in found:
        out._sparse_spikes_uint8 = Uint8Spikes(found["spikes_uint8"], tuple(out.shape),
                                               out._version)
    return out


@dataclass(frozen=True)
class ActiveEntries:
    """The active entries of a sparse layer on CPU, attached to its output spikes:
    flat (T, B, N)-order indices into a (B, T, N) output of ``shape``, valid while the
    tensor's version is ``version`` (no in-place change since)."""
    indices: torch.Tensor
    shape: tuple
    version: int


@dataclass(frozen=True)
class Uint8Spikes:
    """The uint8 copy of a sparse CUDA-kernel layer's output spikes (the one its own
    backward keeps), attached to those spikes; valid while the tensor's version is
    ``version``."""
    spikes: torch.Tensor
    shape: tuple
    version: int


def _entries_below(x_in: torch.Tensor) -> Optional[torch.Tensor]:
    """The active entries of the sparse CPU layer whose output ``x_in`` is, unchanged
    since; None otherwise. Only there does the layer below read dL/dx_in (its error is
    ``G sg``, and sg is 0 elsewhere), so the compiled CPU pass computes the input
    gradient at those entries only."""
    entries = getattr(x_in, "_sparse_active_entries", None)
    if (entries is None or not INPUT_GRADIENT_AT_ACTIVE_ONLY or x_in.is_cuda
            or entries.version != x_in._version or entries.shape != tuple(x_in.shape)):
        return None
    return entries.indices


def _uint8_spikes_of(x_in: torch.Tensor) -> Optional[torch.Tensor]:
    """The uint8 copy of ``x_in`` kept by the sparse CUDA-kernel layer whose output it
    is, unchanged since; None otherwise."""
    copy = getattr(x_in, "_sparse_spikes_uint8", None)
    if (copy is None or not SAVE_INPUT_SPIKES_AS_UINT8 or copy.version != x_in._version
            or copy.shape != tuple(x_in.shape)):
        return None
    return copy.spikes


def _dense_layer(x_in, weight, bias, p, surrogate, weight_rec):
    """Dense BPTT: the time loop of neuron.cuba_float_step (as one fused autograd node
    without recurrent weights, through autograd step by step with them)."""
    current = input_current(x_in, weight)
    if weight_rec is None:
        return cuba_float_sequence(current, p, surrogate, bias)
    b, t, n = current.shape
    state = CubaFloatState(current.new_zeros(b, n), current.new_zeros(b, n))
    s = current.new_zeros(b, n)
    spikes = []
    for x in current.unbind(1):  # not current[:, k]: see neuron.cuba_float_sequence
        if weight_rec is not None:
            x = x + s @ weight_rec.T
        s, state = cuba_float_step(x, state, p, surrogate, bias)
        spikes.append(s)
    return torch.stack(spikes, dim=1)


# --- torch implementation of the sparse backward ---------------------------------------------

def forward_active(x_in, weight, bias, weight_rec, p, surrogate):
    """Forward without autograd -> (spikes (B, T, N), active flat index in (T, B, N) order
    (int64), surrogate derivative at the active entries). The step of
    neuron.cuba_float_step (its :func:`~neurodeploy.train.neuron.cuba_float_charge` and
    :func:`~neurodeploy.train.neuron.reset_fired`), so the spikes match the dense
    reference bit for bit."""
    spikes, (ti, bi, ji), sg = forward_active_entries(x_in, weight, bias, weight_rec, p, surrogate)
    b, _, n = spikes.shape
    return spikes, (ti * b + bi) * n + ji, sg


def forward_active_entries(x_in, weight, bias, weight_rec, p, surrogate):
    """:func:`forward_active` with the active entries as (step, sample, neuron) index
    tensors, sorted in (T, B, N) order."""
    current = input_current(x_in, weight)
    b, t, n = current.shape
    u = current.new_zeros(b, n)
    v = current.new_zeros(b, n)
    s = current.new_zeros(b, n)
    spikes = current.new_empty(b, t, n)
    wr_t = weight_rec.T if weight_rec is not None else None
    for k in range(t):
        x = current[:, k]
        if wr_t is not None:
            x = x + s @ wr_t
        u, v = cuba_float_charge(x, u, v, 1.0 - p.current_decay, 1.0 - p.voltage_decay, bias)
        vmt = v - p.threshold
        s = (vmt > 0).to(vmt.dtype)
        v = reset_fired(v, s)
        spikes[:, k] = s
        current[:, k] = vmt   # step k's current is used: v - threshold takes its place
    vmt_tbn = current.transpose(0, 1)
    ti, bi, ji = torch.nonzero(in_band(vmt_tbn, surrogate), as_tuple=True)
    sg = surrogate_derivative(current[bi, ti, ji], surrogate)
    return spikes, (ti, bi, ji), sg


def split_tbn(active, b, n):
    """Flat (T, B, N)-order indices -> (step, sample, neuron) index tensors."""
    ti = torch.div(active, b * n, rounding_mode="floor")
    rem = active - ti * (b * n)
    bi = torch.div(rem, n, rounding_mode="floor")
    return ti, bi, rem - bi * n


def filtered_trace(x: torch.Tensor, a: float, c: float) -> torch.Tensor:
    """Y[t] = c Y[t-1] + y[t], y[t] = a y[t-1] + x[t] over dim 1 of (B, T, n), fresh state.
    Two in-place ops per step; memory-bound (a blocked-in-time matmul form measured no
    faster on CPU)."""
    out = torch.empty_like(x)
    y = torch.zeros_like(x[:, 0])
    for k in range(x.shape[1]):
        torch.add(x[:, k], y, alpha=a, out=y)
        if k:
            torch.add(y, out[:, k - 1], alpha=c, out=out[:, k])
        else:
            out[:, 0] = y
    return out


def last_spike_before(spikes: torch.Tensor, bi, ti, ji) -> torch.Tensor:
    """For entries (bi, ti, ji) of spikes (B, T, N): the step of neuron ji's last spike
    strictly before ti in sample bi (int64; -1 when none). Searches the sorted spike
    keys, so it costs O(spikes + entries log spikes), not O(B T N)."""
    b, t, n = spikes.shape
    sb, st, sj = torch.nonzero(spikes > 0, as_tuple=True)
    spike_keys = torch.sort((sb * n + sj) * t + st).values
    keys = (bi * n + ji) * t + ti
    pos = torch.searchsorted(spike_keys, keys) - 1   # last spike key < entry key
    prev = spike_keys[pos.clamp(min=0)] if spike_keys.numel() else keys.new_full(keys.shape, -1)
    same = (pos >= 0) & (torch.div(prev, t, rounding_mode="floor") == bi * n + ji)
    return torch.where(same, prev - (bi * n + ji) * t, torch.full_like(keys, -1))


def sparse_weight_gradient(e, bi, ti, ji, r, c, inputs, out_features, trace=None,
                           max_trace_elements=None):
    """dW = A @ Y (module docstring): e, bi, ti, ji, r per active entry; inputs (B, T, n)
    is the layer's input sequence (s_in, or s[t-1] for W_rec); c = (a, c) decays;
    trace: the filtered_trace implementation. Y is built in batch chunks of at most
    ``max_trace_elements`` elements (bounds the backward's transient memory).
    Returns (out, n)."""
    b, t, n = inputs.shape
    d_w = inputs.new_zeros(out_features, n)
    if e.numel() == 0:
        return d_w
    trace = trace or filtered_trace
    chunk = b if max_trace_elements is None else max(1, min(b, max_trace_elements // (t * n)))
    for b0 in range(0, b, chunk):
        b1 = min(b, b0 + chunk)
        if chunk == b:
            sel = slice(None)
        else:
            sel = torch.nonzero((bi >= b0) & (bi < b1)).squeeze(1)
            if sel.numel() == 0:
                continue
        y = trace(inputs[b0:b1].contiguous(), *c).reshape((b1 - b0) * t, n)
        rows, cols, vals = _sparse_pairs(e[sel], bi[sel] - b0, ti[sel], ji[sel], r[sel], c[1], t)
        # CSR with duplicates merged: consecutive active steps after the same spike share
        # their (b, r, j) reset entry (~25 % fewer nonzeros at the benchmark's activity)
        width = (b1 - b0) * t
        keys, order = torch.sort(rows * width + cols)
        keys, inverse = torch.unique_consecutive(keys, return_inverse=True)
        vals = torch.zeros(keys.numel(), dtype=e.dtype, device=e.device).index_add_(
            0, inverse, vals[order])
        rows = torch.div(keys, width, rounding_mode="floor")
        crow = torch.zeros(out_features + 1, dtype=torch.int64, device=e.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=out_features), 0)
        cols = keys - rows * width
        with warnings.catch_warnings():   # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            a_mat = torch.sparse_csr_tensor(crow, cols, vals, (out_features, width),
                                            check_invariants=False)
            d_w += a_mat @ y
        del y
    return d_w


def _sparse_pairs(e, bi, ti, ji, r, c, t):
    has = r >= 0
    decay = torch.pow(torch.as_tensor(c, dtype=e.dtype, device=e.device), (ti - r)[has].to(e.dtype))
    rows = torch.cat([ji, ji[has]])
    cols = torch.cat([bi * t + ti, bi[has] * t + r[has]])
    vals = torch.cat([e, -e[has] * decay])
    return rows, cols, vals


def sparse_bias_gradient(e, ti, ji, r, c, t, out_features):
    """dbias_j = sum over active of e (Yb[t] - c^(t-r) Yb[r]), Yb[t] = sum_{k<=t} c^(t-k)."""
    yb = torch.empty(t, dtype=e.dtype, device=e.device)
    acc = 0.0
    for k in range(t):
        acc = c * acc + 1.0
        yb[k] = acc
    has = r >= 0
    decay = torch.pow(torch.as_tensor(c, dtype=e.dtype, device=e.device), (ti - r)[has].to(e.dtype))
    contrib = e * yb[ti]
    contrib[has] -= e[has] * decay * yb[r[has]]
    return torch.zeros(out_features, dtype=e.dtype, device=e.device).index_add_(0, ji, contrib)


def adjoint(grad_spikes, spikes, active_tbn, sg, p, weight_rec, need_dx):
    """Backward over time of the (u, v) filter -> (e per active entry, dx (B, T, N) or
    None). ``e = G sg`` with G = dL/ds including, when weight_rec is set, the recurrent
    term W_rec^T dx[t+1] gathered at the active entries only."""
    b, t, n = spikes.shape
    ti, bi, ji = split_tbn(active_tbn, b, n)
    g_act = grad_spikes[bi, ti, ji]
    if weight_rec is None and not need_dx:
        return g_act * sg, None
    a = 1.0 - p.current_decay
    c = 1.0 - p.voltage_decay
    counts = torch.bincount(ti, minlength=t).tolist()
    ends = torch.tensor(counts).cumsum(0).tolist()
    e = torch.empty_like(sg)
    keep = (1.0 - spikes).mul_(c)          # c (1 - s[t]): the detached reset cuts dv
    dx = grad_spikes.new_empty(b, t, n) if need_dx else None
    dv = grad_spikes.new_zeros(b, n)
    du = grad_spikes.new_zeros(b, n)
    wr_t = weight_rec.T if weight_rec is not None else None
    for k in range(t - 1, -1, -1):
        lo, hi = ends[k] - counts[k], ends[k]
        dv.mul_(keep[:, k])
        if hi > lo:
            bk, jk = bi[lo:hi], ji[lo:hi]
            g = g_act[lo:hi]
            if wr_t is not None and k + 1 < t:
                g = g + (du[bk] * wr_t[jk]).sum(-1)
            ek = g * sg[lo:hi]
            e[lo:hi] = ek
            dv.index_put_((bk, jk), ek, accumulate=True)
        torch.add(dv, du, alpha=a, out=du)
        if need_dx:
            dx[:, k] = du
    return e, dx


def _cpu_kernels():
    from neurodeploy.train import sparse_cpu
    return sparse_cpu


class TorchKernels:
    """The time loops of the sparse layer in plain torch (any device). On CPU tensors
    the backward runs as one compiled pass instead (train.sparse_cpu) when numba is
    installed; this torch path is its fallback and the tests' second reference."""

    forward_active = staticmethod(forward_active)
    filtered_trace = staticmethod(filtered_trace)
    adjoint = staticmethod(adjoint)


class SparseCubaFunction(torch.autograd.Function):
    """Sparse-backward CUBA-LIF layer (module docstring). Saved for backward: the input
    (by reference), the output spikes (or, for kernels with ``SAVES_OWN_SPIKES``, their
    own copy among their extra tensors), the active indices and their surrogate values;
    no per-step state."""

    @staticmethod
    def forward(ctx, x_in, weight, bias, weight_rec, p, surrogate, *extra):
        # extra: (kernels=TorchKernels, stats=None, below=None, found=None,
        # x_uint8=None); stats, a dict, gets "active" and "entries" added (the active
        # (sample, step, neuron) entries and all of them); below: the active entries of
        # the sparse layer whose output x_in is (_entries_below); found, a dict, gets this
        # layer's active indices on CPU and its uint8 spikes from kernels that keep them;
        # x_uint8: x_in's uint8 copy (_uint8_spikes_of), kept in its place by kernels
        # whose backward takes it (TAKES_UINT8_INPUT)
        kernels = extra[0] if extra else TorchKernels
        stats = extra[1] if len(extra) > 1 else None
        ctx.below = extra[2] if len(extra) > 2 else None
        found = extra[3] if len(extra) > 3 else None
        x_uint8 = extra[4] if len(extra) > 4 else None
        ctx.n_extra = len(extra)
        with torch.no_grad():
            out = None
            if kernels is TorchKernels and USE_COMPILED_CPU and not x_in.is_cuda:
                out = _cpu_kernels().forward_active(x_in, weight, bias, p, surrogate, weight_rec)
            if out is None:
                out = kernels.forward_active(x_in, weight, bias, weight_rec, p, surrogate)
            # kernels may add tensors of their own for the backward (Triton: row starts)
            spikes, active, sg, *aux = out
        if found is not None and not x_in.is_cuda and kernels is TorchKernels:
            found["active"] = active   # flat (T, B, N) order on CPU
        if (found is not None and getattr(kernels, "SAVES_OWN_SPIKES", False)
                and aux and aux[-1].dtype == torch.uint8):
            found["spikes_uint8"] = aux[-1]
        if stats is not None:
            stats["active"] = stats.get("active", 0) + active.numel()
            stats["entries"] = stats.get("entries", 0) + spikes.numel()
        ctx.p = p
        ctx.kernels = kernels
        ctx.has_bias = bias is not None
        ctx.has_rec = weight_rec is not None
        # kernels that keep their own copy of the spikes (in aux) do not keep the output
        kept = None if getattr(kernels, "SAVES_OWN_SPIKES", False) else spikes
        if x_uint8 is not None and getattr(kernels, "TAKES_UINT8_INPUT", False):
            x_in = x_uint8   # the same values (0/1) in a quarter of the bytes
        ctx.save_for_backward(x_in, weight, weight_rec, kept, active, sg, *aux)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        x_in, weight, weight_rec, spikes, active, sg, *aux = ctx.saved_tensors
        p = ctx.p
        need_dx = ctx.needs_input_grad[0]
        with torch.no_grad():
            if hasattr(ctx.kernels, "layer_backward"):   # CUDA: the whole layer at once
                need = ctx.needs_input_grad
                d_x, d_w, d_b, d_wr = ctx.kernels.layer_backward(
                    x_in, weight, weight_rec, spikes, active, sg, *aux, grad_spikes, p,
                    need_dx, need[1], ctx.has_bias and need[2], ctx.has_rec and need[3])
                return (d_x, d_w, d_b, d_wr, None, None) + (None,) * ctx.n_extra
        grad_spikes = grad_spikes.contiguous()
        if ctx.kernels is TorchKernels and not grad_spikes.is_cuda and USE_COMPILED_CPU:
            fused = _fused_cpu_backward(ctx, x_in, weight, weight_rec, spikes, active, sg,
                                        grad_spikes, p, need_dx)
            if fused is not None:
                return fused
        with torch.no_grad():
            e, dx = ctx.kernels.adjoint(grad_spikes, spikes, active, sg, p, weight_rec, need_dx)
            return _gradients(ctx, x_in, weight, weight_rec, spikes, active, e, dx, p)


def _fused_cpu_backward(ctx, x_in, weight, weight_rec, spikes, active, sg, grad_spikes, p, need_dx):
    """The whole backward of the layer in one compiled CPU pass (train.sparse_cpu), or
    None without numba."""
    need_params = any(ctx.needs_input_grad[1:4])
    if (not ctx.has_bias and not ctx.has_rec and ctx.needs_input_grad[1]
            and active.numel() > GEMM_WEIGHT_GRADIENT_ABOVE * spikes.numel()):
        # many active entries: the adjoint in the compiled pass, then the weight gradient
        # dW = du^T x_in and the input gradient du W as GEMMs over every entry (du is 0
        # where no active entry reaches it), not A @ Y entry by entry
        out = _cpu_kernels().fused_layer_backward(
            x_in, spikes, grad_spikes, active, sg, 1.0 - p.current_decay, 1.0 - p.voltage_decay,
            None, True, False)
        if out is None:
            return None
        du = out[0]
        d_w = weight_gradient(x_in, du)
        return (du @ weight if need_dx else None, d_w, None, None, None, None) + (None,) * ctx.n_extra
    out = _cpu_kernels().fused_layer_backward(
        x_in, spikes, grad_spikes, active, sg, 1.0 - p.current_decay, 1.0 - p.voltage_decay,
        weight_rec, need_dx, need_params, weight=weight, lower_active=ctx.below)
    if out is None:
        return None
    d_x, d_w, d_b, d_wr = out
    return (d_x,
            d_w if ctx.needs_input_grad[1] else None,
            d_b if ctx.has_bias and ctx.needs_input_grad[2] else None,
            d_wr if ctx.has_rec and ctx.needs_input_grad[3] else None,
            None, None) + (None,) * ctx.n_extra


def _gradients(ctx, x_in, weight, weight_rec, spikes, active, e, dx, p):
    """Parameter and input gradients from the active errors ``e`` (and dx if computed)."""
    b, t, n = spikes.shape
    ti, bi, ji = split_tbn(active, b, n)
    r = last_spike_before(spikes, bi, ti, ji)
    decays = (1.0 - p.current_decay, 1.0 - p.voltage_decay)
    d_x = dx @ weight if dx is not None else None
    # transient trace no larger than what the dense backward allocates anyway: the
    # gradient of the input currents (B, T, out), and of the input when it needs one
    budget = b * t * max(n, x_in.shape[2] if dx is not None else 0)
    d_w = None
    if ctx.needs_input_grad[1]:
        d_w = sparse_weight_gradient(e, bi, ti, ji, r, decays, x_in, n, ctx.kernels.filtered_trace,
                                     budget)
    d_b = None
    if ctx.has_bias and ctx.needs_input_grad[2]:
        d_b = sparse_bias_gradient(e, ti, ji, r, decays[1], t, n)
    d_wr = None
    if ctx.has_rec and ctx.needs_input_grad[3]:
        prev = torch.zeros_like(spikes)
        prev[:, 1:] = spikes[:, :-1]
        d_wr = sparse_weight_gradient(e, bi, ti, ji, r, decays, prev, n, ctx.kernels.filtered_trace)
    return (d_x, d_w, d_b, d_wr, None, None) + (None,) * ctx.n_extra
