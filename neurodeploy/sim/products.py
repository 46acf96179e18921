"""Synapse products of the fast simulator (:mod:`neurodeploy.sim.simulator`).

A :class:`Synapse` computes the synaptic input ``a[k] = sum_d (W_d @ x[k - 1 - d]) <<
exp`` of a chunk of steps as one product, exactly, the way
:mod:`neurodeploy.sim.reference` states it a step at a time. The product's dtype is
picked from a bound on its sums: float32 or float64 when every sum is an exactly
held integer, else int64. Binary input into 8-bit dense weights uses the int8 GEMM or,
when few inputs are active, the event-driven sum of weight rows (a fitted cost model
picks); a float64 conv runs as one float32 conv of the input's base-2**p digits.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy._numba import parallel
from neurodeploy._numba import prange as _prange
from neurodeploy.network import Conv
from neurodeploy.sim.reference import SynapseWeights, block_weights

#: fewest bits per digit for which a float64 conv is done as a float32 conv of digits
SPLIT_MIN_BITS = 6
#: Lava's Conv model casts its (exact) sums to int32: |sum| beyond this leaves it
LAVA_CONV_SUM_LIMIT = 2 ** 31


class LavaConvOverflowWarning(UserWarning):
    """A graded conv's sums leave int32, where Lava's Conv model stops being exact."""



class Synapse:
    """W @ s for dense or conv blocks, exact, with Lava's per-synapse exponent,
    delays (grouped by value) and Conv's 24-bit wrap. ``weights``: the synapse's
    integers when they are not the block's own (see
    :func:`neurodeploy.sim.reference.recurrent_block_weights`);
    ``block`` then gives a conv's geometry only."""

    def __init__(self, index: int, block, graded_input: bool, in_shape: Tuple[int, ...],
                 input_bound: float, weights: Optional[SynapseWeights] = None):
        self.index = index
        self.graded_input = graded_input
        self.in_shape = in_shape  # torch order, without batch
        self.conv = isinstance(block, Conv)
        if self.conv:
            self.stride, self.padding = block.stride, block.padding
            self.dilation, self.groups = block.dilation, block.groups
        sw = block_weights(index, block) if weights is None else weights
        w, self.exp, self.delays = sw.weight, sw.exponent, sw.delays
        if self.exp < 0 and not np.any(w % (1 << -self.exp)) and not (graded_input and not self.conv):
            # netx scaled the stored integers up by 2**-exp: for integer inputs
            # (W @ s) >> -exp == (W >> -exp) @ s exactly, so drop the shift (not for
            # graded input into Dense: Lava wraps W @ s to int32 before the shift)
            w, self.exp = w >> -self.exp, 0
        self.max_delay = 0 if self.delays is None else int(self.delays.max())
        row_sum = float(np.abs(w).reshape(w.shape[0], -1).sum(1).max(initial=0))
        self.warned = False
        self.bound = row_sum * max(input_bound, 1.0)
        self.dtype = exact_dtype(self.bound)
        # Conv's 24-bit wrap is the identity while |W @ s| < 2**23
        self.wraps = self.conv and self.bound >= 2 ** (fx.CONV_ACCUMULATOR_BITS - 1)
        # Binary input and 8-bit signed weights: exact int8 x int8 -> int32 matrix
        # product (VNNI/AMX kernels); float fallback kept.
        self.int8 = (not self.conv and not graded_input and self.delays is None
                     and w.size > 0 and w.min() >= -128 and w.max() <= 127
                     and w.shape[1] * 128 < 2 ** 31 and hasattr(torch, "_int_mm"))
        if self.int8:
            # (K, N) with row stride N even for K = 1: torch's int8 GEMM misreads a
            # (1, N) operand whose size-1 axis has stride 1 (what torch.tensor(w.T) gives)
            self.w_int8 = torch.from_numpy(np.ascontiguousarray(w.T, dtype=np.int8))
        if self.delays is None:
            self.weights = [(0, torch.tensor(w, dtype=self.dtype))]
            if self.conv:
                self.weights = [(0, self.weights[0][1].contiguous(memory_format=torch.channels_last))]
        else:
            self.weights = [(int(dv), torch.as_tensor(np.where(self.delays == dv, w, 0), dtype=self.dtype))
                            for dv in np.unique(self.delays)]
        # A conv that needs float64 (graded input) runs as one float32 conv of the
        # input's base-2**split_bits digits, each exact: |digit| <= 2**split_bits and
        # 2**split_bits * max row sum <= 2**24 (float64 convs are several times slower)
        self.split_bits = 0
        if (self.conv and self.dtype == torch.float64 and row_sum > 0
                and _compiled_digits() is not None):
            bits = int(np.floor(np.log2(2.0 ** 24 / row_sum)))
            if bits >= SPLIT_MIN_BITS:
                self.split_bits = bits
                self.w32 = torch.tensor(w, dtype=torch.float32).contiguous(
                    memory_format=torch.channels_last)

    def _warn_if_lava_leaves_int32(self, a: torch.Tensor) -> None:
        """Lava's fixed-point Conv model sums in float64 (scipy; its torch path is
        switched off in lava-nc 0.10), exactly, then casts the sums to int32 before its
        24-bit wrap: a sum beyond int32 comes out as -2**31 on x86 (0 after the wrap;
        C leaves the cast undefined). The simulator keeps the exact sum, wrapped to 24
        bits; say so once per layer when one of this chunk's sums ``a`` is such a sum."""
        lo, hi = torch.aminmax(a)
        if float(lo) >= -LAVA_CONV_SUM_LIMIT and float(hi) < LAVA_CONV_SUM_LIMIT:
            return
        self.warned = True
        largest = max(-float(lo), float(hi))
        warnings.warn(LavaConvOverflowWarning(
            f"layer {self.index} (conv): graded messages give sums up to {largest:.3g}, beyond "
            "int32; Lava's Conv model casts its (exact, float64) sums to int32, which makes such a "
            "sum -2**31 (0 after its 24-bit wrap), so its synaptic input, and then its spikes, leave "
            "the exact integers that the simulator keeps (wrapped to 24 bits)"), stacklevel=3)

    def _apply(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x: (F, B, ...) held input frames -> (F, B, N) held output, in the synapse dtype."""
        f, b = x.shape[:2]
        if self.conv:  # input and output held as (H, W, C): channels_last, no copies
            c_in, h, w_in = self.in_shape
            if self.split_bits:
                return self._digit_conv(x.reshape(f * b, h, w_in, c_in)).reshape(f, b, -1)
            y = self._conv(x.reshape(f * b, h, w_in, c_in).permute(0, 3, 1, 2), w)
            return y.permute(0, 2, 3, 1).reshape(f, b, -1)
        if self.int8 and x.dtype == torch.int8:
            rows = x.reshape(f * b, -1)
            event = _event_product(rows, self.w_int8)
            if event is not None:
                return event.reshape(f, b, -1)
            try:
                return torch._int_mm(rows, self.w_int8).reshape(f, b, -1)
            except RuntimeError:  # shape or platform not supported by the int8 kernel
                self.int8 = False
                x = x.to(self.dtype)
        return x.reshape(f, b, -1) @ w.T

    def _digit_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Exact conv of int64 x (R, H, W, C) -> float64 (R, H', W', C'): the digits of
        x in base 2**p (the top one signed) as one float32 conv of n R images, then
        sum_k conv(digit_k) 2**(p k) by Horner's rule (integers below 2**53)."""
        p = self.split_bits
        lo, hi = (int(v) for v in torch.aminmax(x)) if x.numel() else (0, 0)
        n = 1
        while max(-lo, hi) >= 1 << (p * n):  # then |x| < 2**(p n): top digit in [-2**p, 2**p)
            n += 1
        split, combine = _compiled_digits()
        digits = np.empty((n,) + tuple(x.shape), np.float32)
        split(x.contiguous().numpy().reshape(-1), p, digits.reshape(n, -1))
        d = torch.from_numpy(digits).reshape((n * x.shape[0],) + tuple(x.shape[1:]))
        y = self._conv(d.permute(0, 3, 1, 2), self.w32).permute(0, 2, 3, 1).contiguous()
        out = torch.empty((x.shape[0],) + tuple(y.shape[1:]), dtype=torch.float64)
        combine(y.numpy().reshape(n, -1), p, out.numpy().reshape(-1))
        return out

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, stride=self.stride, padding=self.padding,
                                          dilation=self.dilation, groups=self.groups)

    def __call__(self, full: torch.Tensor, chunk: int) -> torch.Tensor:
        """full: held input frames (D + 1 + chunk, B, N_in) whose first D + 1 are the
        previous chunk's tail -> synaptic input a (chunk, B, N) int64, where
        ``a[k] = sum_d (W_d @ x[k - 1 - d]) << exp``."""
        if self.graded_input:
            x = full if self.split_bits else full.to(self.dtype)
        else:  # 0 message bits: the synapse sees s != 0 (full is already bool)
            if full.dtype != torch.bool:
                full = full != 0
            x = full.view(torch.int8) if self.int8 else full.to(self.dtype)
        d_max = self.max_delay
        total = None
        for d, w in self.weights:
            if self.graded_input and not self.conv and self.delays is not None:
                # Lava's DelayDense: int32 products, int64 sum and shift (the integer
                # messages themselves), the delays' sum wrapped below as its int32 buffer
                a = fx.graded_delay_dense_input(w, full[d_max - d: d_max - d + chunk], self.exp)
            else:
                a = self._apply(w, x[d_max - d: d_max - d + chunk])
                if self.conv and self.graded_input and self.bound >= LAVA_CONV_SUM_LIMIT and not self.warned:
                    self._warn_if_lava_leaves_int32(a)
                if self.graded_input and not self.conv:  # int32 dot and shift, as Lava's Dense
                    a = fx.graded_dense_input(a.to(torch.int64), self.exp)
                elif self.exp != 0 or self.wraps:
                    a = fx.shift_exponent(a.to(torch.int64), self.exp)
                # else float32 stays: exact integers, |sum over delays| < 2**24 by the bound
            total = a if total is None else total + a
        if self.wraps:
            total = fx.wrap_signed(total, fx.CONV_ACCUMULATOR_BITS)
        elif self.graded_input and self.delays is not None:  # DelayDense's int32 buffer
            total = fx.wrap_int32(total)
        return total  # int64/int32, or float32/float64 holding exact integers


def exact_dtype(bound: float) -> torch.dtype:
    """The fastest dtype whose products hold every integer sum below ``bound`` exactly."""
    if bound < 2 ** 24:
        return torch.float32
    if bound < 2 ** 53:
        return torch.float64
    return torch.int64


#: cost model of the event-driven product (the sum of the active inputs' weight rows,
#: four rows per pass, int16 partial sums) against the int8 GEMM, per sample row, in ns,
#: fitted on the 2-core AVX512 machine (R = 4096 rows, K x N from 100 x 50 to 784 x 512,
#: 0.5-15 % active): listing the events ~15 + 0.12 K, each event ~4.9 + 0.006 N; the
#: GEMM ~0.0023 K max(N, 32). Events win below ~10 % active for 784 x 512, ~3 % for
#: 512 x 128 and never for a 10-neuron output layer.
EVENT_ROW_NS = (15.0, 0.12)
EVENT_NS = (4.9, 0.006)
GEMM_WEIGHT_NS = 0.0023
#: events summed in int16 before they are added to the int32 result: 255 * 128 < 2**15
EVENT_GROUP = 255


def _events_win(density: float, k: int, n: int) -> bool:
    """Whether the event-driven product is predicted to beat the int8 GEMM for a
    (R, k) @ (k, n) product whose input has this fraction of nonzeros."""
    events = (EVENT_ROW_NS[0] + EVENT_ROW_NS[1] * k
              + density * k * (EVENT_NS[0] + EVENT_NS[1] * n))
    return events < GEMM_WEIGHT_NS * k * max(n, 32)


def _event_product(rows: torch.Tensor, w_int8: torch.Tensor) -> Optional[torch.Tensor]:
    """rows (R, K) int8 0/1 @ w_int8 (K, N) -> int32 (R, N), event-driven, or None when
    the GEMM is faster for this input density and shape (or numba is missing). Exact:
    at most EVENT_GROUP weights in [-128, 127] summed in int16, those sums in int32."""
    kernel = _compiled_event_loops()
    if kernel is None or rows.shape[0] == 0 or not rows.is_contiguous():
        return None
    xn = rows.numpy()
    sample = xn[:: max(1, xn.shape[0] // 32)]
    if not _events_win(np.count_nonzero(sample) / sample.size, *w_int8.shape):
        return None
    words = xn.view(np.uint64) if xn.shape[1] % 8 == 0 else np.zeros((xn.shape[0], 0), np.uint64)
    out = torch.empty((xn.shape[0], w_int8.shape[1]), dtype=torch.int32)
    assert 4 <= EVENT_GROUP <= 256
    kernel(xn, words, w_int8.numpy(), out.numpy(), EVENT_GROUP)
    return out


def _event_loops(x, words, w, out, group):  # pragma: no cover - compiled
    # out[r] = sum of w[i] over x[r, i] != 0. A row's events are listed first (zero
    # 8-byte words of x skipped), then added four weight rows per pass (a quarter of the
    # accumulator traffic) into int16 sums (twice the lanes of int32), which go into the
    # int32 result before more than `group` events are in them
    rows, k_all = x.shape
    n = w.shape[1]
    n_words = words.shape[1]
    for r in _prange(rows):
        acc = np.zeros(n, np.int16)
        idx = np.empty(k_all, np.int64)
        xr = x[r]
        wr = words[r]
        m = 0
        for q in range(n_words + 1):
            if q < n_words:
                if wr[q] == 0:
                    continue
                lo, hi = q * 8, q * 8 + 8
            else:  # the tail that is not a whole word
                lo, hi = n_words * 8, k_all
            for i in range(lo, hi):
                if xr[i] != 0:
                    idx[m] = i
                    m += 1
        o = out[r]
        o[:] = 0
        e = 0
        count = 0
        while e + 4 <= m:
            w0, w1, w2, w3 = w[idx[e]], w[idx[e + 1]], w[idx[e + 2]], w[idx[e + 3]]
            for j in range(n):
                acc[j] += np.int16(w0[j]) + np.int16(w1[j]) + np.int16(w2[j]) + np.int16(w3[j])
            e += 4
            count += 4
            if count > group - 4:  # flushed at most `group` events in; after it count <= group - 4
                for j in range(n):
                    o[j] += acc[j]
                    acc[j] = 0
                count = 0
        while e < m:  # the last 1-3 events: count + 3 <= group
            wi = w[idx[e]]
            for j in range(n):
                acc[j] += wi[j]
            e += 1
        for j in range(n):
            o[j] += acc[j]


def _compiled_event_loops():
    """The compiled event-driven product, or None without numba."""
    return parallel(_event_loops)


def _split_digits(x, p, digits):  # pragma: no cover - compiled
    # digits[k, i] = digit k of x[i] in base 2**p: k < n - 1 in [0, 2**p), the last the
    # floor-shifted rest (signed)
    n = digits.shape[0]
    mask = (1 << p) - 1
    for i in _prange(x.size):
        v = x[i]
        for k in range(n - 1):
            digits[k, i] = np.float32(v & mask)
            v = v >> p
        digits[n - 1, i] = np.float32(v)


def _combine_digits(y, p, out):  # pragma: no cover - compiled
    # out[i] = sum_k y[k, i] 2**(p k), Horner from the top digit, in float64
    n = y.shape[0]
    scale = np.float64(1 << p)
    for i in _prange(out.size):
        acc = np.float64(y[n - 1, i])
        for k in range(n - 2, -1, -1):
            acc = acc * scale + np.float64(y[k, i])
        out[i] = acc


def _compiled_digits():
    """The compiled digit split and recombination, or None without numba."""
    split = parallel(_split_digits)
    return None if split is None else (split, parallel(_combine_digits))

