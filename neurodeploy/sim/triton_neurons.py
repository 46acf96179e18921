"""The simulator's neuron recurrences as Triton kernels: one program per block of
neurons, looping over a chunk of steps with the state in registers.

The arithmetic is :func:`neurodeploy.fixedpoint._cuba_neuron_steps` and
:func:`neurodeploy.fixedpoint._sigma_delta_neuron_steps` (the CPU simulator's
compiled loops) written over blocks of neurons, in int64 registers:

CUBA-LIF, per neuron and step (``reset`` zeroes u and v first):

    u = trunc0(u * (4096 - iDecay) / 4096) + (a << 6), wrapped once into (-2**23, 2**23]
    v = sat24(trunc0(v * (4096 - vDecay) / 4096) + u + (bias << 6))
    s = v > vTh << 6;  v = 0 where s

sigma-delta (int32 registers, Lava's numpy models): hidden ``sigma += a``,
``act = relu(sigma + bias << 12)``; input ``act = a << 12``; then
``delta = act - act_prev + residue``, sent when ``|delta| >= vTh << 12`` (never for
-2**31), the message ``sent >> 6``; a sigma output layer sends sigma itself.

Inputs ``a`` are (steps, n) of any integer or integer-valued float dtype; with
``first`` given, step t reads ``a[t - 1]`` and step 0 reads ``first`` (a synapse's
one-step delay). Per-neuron fields of m values repeat along the n neurons
(``j % m``), a bias of nb values likewise (``j % nb``). The kernels run on CUDA
tensors, or on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set
before Triton is imported), which is how the tests without a GPU run them.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from neurodeploy import fixedpoint as fx

#: neurons per program
BLOCK = 512
SD_HIDDEN, SD_INPUT, SD_SIGMA_OUTPUT = fx.SD_HIDDEN, fx.SD_INPUT, fx.SD_SIGMA_OUTPUT


# sizes and thresholds are not specialised on (1, multiples of 16): one compiled
# kernel per combination of the constexpr flags
@triton.jit(do_not_specialize=["m", "nb", "steps", "n"])
def _cuba_kernel(a_ptr, first_ptr, reset_ptr, cf_ptr, vf_ptr, th_ptr, m, bias_ptr, nb,
                 u_ptr, v_ptr, s_ptr, u_rec_ptr, v_rec_ptr, steps, n,
                 DELAYED: tl.constexpr, HAS_BIAS: tl.constexpr, RECORD: tl.constexpr,
                 BLOCK: tl.constexpr):
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = j < n
    k = j % m
    cf = tl.load(cf_ptr + k, mask=live, other=0).to(tl.int64)
    vf = tl.load(vf_ptr + k, mask=live, other=0).to(tl.int64)
    th = tl.load(th_ptr + k, mask=live, other=0).to(tl.int64)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + j % nb, mask=live, other=0).to(tl.int64) << 6
    else:
        bias = tl.zeros([BLOCK], dtype=tl.int64)
    u = tl.load(u_ptr + j, mask=live, other=0).to(tl.int64)
    v = tl.load(v_ptr + j, mask=live, other=0).to(tl.int64)
    held = tl.zeros([BLOCK], dtype=tl.int64)
    if DELAYED:
        held = tl.load(first_ptr + j, mask=live, other=0).to(tl.int64)
    for t in range(steps):
        row = t * n + j
        if DELAYED:
            a_t = held
            held = tl.load(a_ptr + row, mask=live, other=0).to(tl.int64)
        else:
            a_t = tl.load(a_ptr + row, mask=live, other=0).to(tl.int64)
        r = tl.load(reset_ptr + t)
        u = tl.where(r != 0, 0, u)
        v = tl.where(r != 0, 0, v)
        p = u * cf
        q = tl.abs(p) >> 12
        u = tl.where(p >= 0, q, -q) + (a_t << 6)
        u = tl.where(u > 8388608, u - 16777216, tl.where(u <= -8388608, u + 16777216, u))
        p = v * vf
        q = tl.abs(p) >> 12
        v = tl.where(p >= 0, q, -q) + u + bias
        v = tl.minimum(tl.maximum(v, -8388607), 8388607)
        fired = v > th
        tl.store(s_ptr + row, fired.to(tl.int8), mask=live)
        v = tl.where(fired, 0, v)
        if RECORD:
            tl.store(u_rec_ptr + row, u, mask=live)
            tl.store(v_rec_ptr + row, v, mask=live)
    tl.store(u_ptr + j, u, mask=live)
    tl.store(v_ptr + j, v, mask=live)


@triton.jit
def _wrap32(x):
    return x.to(tl.int32).to(tl.int64)


@triton.jit(do_not_specialize=["th", "nb", "steps", "n"])
def _sigma_delta_kernel(a_ptr, first_ptr, th, bias_ptr, nb, sigma_ptr, act_ptr, residue_ptr,
                        out_ptr, sigma_rec_ptr, steps, n, KIND: tl.constexpr, DELAYED: tl.constexpr,
                        HAS_BIAS: tl.constexpr, RECORD: tl.constexpr, BLOCK: tl.constexpr):
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = j < n
    if HAS_BIAS:
        bias = tl.load(bias_ptr + j % nb, mask=live, other=0).to(tl.int64) << 12
    else:
        bias = tl.zeros([BLOCK], dtype=tl.int64)
    sigma = tl.load(sigma_ptr + j, mask=live, other=0).to(tl.int64)
    act = tl.load(act_ptr + j, mask=live, other=0).to(tl.int64)
    residue = tl.load(residue_ptr + j, mask=live, other=0).to(tl.int64)
    held = tl.zeros([BLOCK], dtype=tl.int64)
    if DELAYED:
        held = tl.load(first_ptr + j, mask=live, other=0).to(tl.int64)
    for t in range(steps):
        row = t * n + j
        if DELAYED:
            a_t = held
            held = tl.load(a_ptr + row, mask=live, other=0).to(tl.int64)
        else:
            a_t = tl.load(a_ptr + row, mask=live, other=0).to(tl.int64)
        if KIND == 2:  # sigma output: sigma sent as is
            sigma = _wrap32(sigma + a_t)
            tl.store(out_ptr + row, sigma, mask=live)
        else:
            if KIND == 1:  # delta input layer
                new_act = _wrap32(a_t << 12)
            else:
                sigma = _wrap32(sigma + a_t)
                new_act = tl.maximum(_wrap32(sigma + bias), 0)
            delta = _wrap32(new_act - act + residue)
            sent = tl.where((tl.abs(delta) >= th) & (delta != -2147483648), delta, 0)
            residue = delta - sent
            act = new_act
            tl.store(out_ptr + row, sent >> 6, mask=live)
        if RECORD:
            tl.store(sigma_rec_ptr + row, sigma, mask=live)
    tl.store(sigma_ptr + j, sigma, mask=live)
    tl.store(act_ptr + j, act, mask=live)
    tl.store(residue_ptr + j, residue, mask=live)


def _grid(n: int):
    return (triton.cdiv(max(n, 1), BLOCK),)


def cuba_parameters(p: fx.CubaParameters, device) -> tuple:
    """(4096 - iDecay, 4096 - vDecay, vTh << 6) as int64 tensors on ``device``, each of
    one value or of the per-neuron count (a shared field repeated)."""
    m = p.per_neuron or 1
    cd, vd, th = (torch.from_numpy(fx.field_array(f, m)) for f in (p.current_decay, p.voltage_decay,
                                                                     p.threshold))
    return ((fx.DECAY_UNITY - cd).to(device), (fx.DECAY_UNITY - vd).to(device),
            (th << fx.THRESHOLD_SHIFT).to(device))


def cuba_steps(a: torch.Tensor, parameters: tuple, bias: Optional[torch.Tensor], reset: torch.Tensor,
               u: torch.Tensor, v: torch.Tensor, spikes: torch.Tensor,
               first: Optional[torch.Tensor] = None, u_rec: Optional[torch.Tensor] = None,
               v_rec: Optional[torch.Tensor] = None) -> None:
    """CUBA-LIF neurons over ``a`` (steps, n): ``u``, ``v`` (n,) int64 updated in place,
    ``spikes`` (steps, n) int8 (0/1) written, and ``u_rec``, ``v_rec`` (steps, n) int64
    when given. ``parameters``: :func:`cuba_parameters`; ``bias``: mantissas (nb,) int64;
    ``reset`` (steps,) int8: zero u and v before that step."""
    steps, n = a.shape
    assert steps * n < 2 ** 31, "one kernel call indexes its (steps, n) input in int32"
    cf, vf, th = parameters
    record = u_rec is not None
    dummy = u
    _cuba_kernel[_grid(n)](
        a, a if first is None else first, reset, cf, vf, th, cf.numel(),
        dummy if bias is None else bias, 1 if bias is None else bias.numel(),
        u, v, spikes, u_rec if record else dummy, v_rec if record else dummy, steps, n,
        DELAYED=first is not None, HAS_BIAS=bias is not None, RECORD=record, BLOCK=BLOCK)


def sigma_delta_steps(a: torch.Tensor, kind: int, threshold: int, bias: Optional[torch.Tensor],
                      sigma: torch.Tensor, act: torch.Tensor, residue: torch.Tensor, out: torch.Tensor,
                      first: Optional[torch.Tensor] = None,
                      sigma_rec: Optional[torch.Tensor] = None) -> None:
    """Sigma-delta neurons of ``kind`` (SD_HIDDEN, SD_INPUT, SD_SIGMA_OUTPUT) over ``a``
    (steps, n): the int64 (n,) registers updated in place, ``out`` (steps, n) int64
    messages written, ``sigma_rec`` (steps, n) int64 when given."""
    steps, n = a.shape
    assert steps * n < 2 ** 31, "one kernel call indexes its (steps, n) input in int32"
    record = sigma_rec is not None
    _sigma_delta_kernel[_grid(n)](
        a, a if first is None else first, int(threshold) << fx.SDNN_SCALE,
        sigma if bias is None else bias, 1 if bias is None else bias.numel(),
        sigma, act, residue, out, sigma_rec if record else sigma, steps, n,
        KIND=int(kind), DELAYED=first is not None, HAS_BIAS=bias is not None, RECORD=record,
        BLOCK=BLOCK)
