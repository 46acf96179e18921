"""Bit-accurate, batched simulator of netx networks on Lava's timeline.

Calls :mod:`neurodeploy.fixedpoint` for every piece of arithmetic and reproduces
what lava-dl's netx builds from a ``.net`` file and Lava's fixed-point process
models run (``Loihi2SimCfg(select_tag='fixed_pt')``). Timeline (Lava steps
t = 1, 2, ...; index k = t - 1 here):

- the source sends ``x[k % T]`` at index k (a RingBuffer repeats cyclically);
- files with an input layer: x goes straight into the input neuron's ``a_in``;
  files without one: x goes into the first block's synapse (``net.inp``);
- every synapse (Dense, Conv) sends at k what it accumulated at k - 1 (1-step
  delay); an axonal delay d adds d more steps (netx DelayDense);
- a synapse whose input has 0 message bits (CUBA spikes, ``net.inp``) sees
  ``s != 0``; after a sigma-delta layer it sees the graded values;
- with ``reset_interval`` R, neuron layer i (0-based over neuron-holding blocks,
  input layer included) zeroes u and v before its dynamics when
  ``(k + 1) % R == (reset_offset + 1 + i) % R`` (netx's LIFReset offsets).

Feed-forward blocks are simulated one block at a time over a chunk of steps: a
block's whole synaptic input for the chunk is one product, then the neuron
recurrence runs over the chunk in a compiled loop (numba; torch steps without it).
Binary input into dense weights uses the int8 GEMM or, when few inputs are active,
the event-driven sum of weight rows (a fitted cost model picks); other products run
in float32 or float64 when exact for the weights and input bound, else int64, and a
float64 conv runs as one float32 conv of the input's digits. Recurrent blocks run a
step at a time. Sigma-delta registers and graded Dense sums wrap at 32 bits as
Lava's numpy int32 models do (DelayDense: int32 products, int64 sum and shift, int32
buffer). Graded conv sums are exact integers, as Lava's Conv computes them (float64,
scipy) up to its cast to int32; a warning says when a sum leaves int32, where Lava's
gives -2**31. Chunks bound the memory of long runs.

Layouts: arrays in and out use netx's port order (``(x, y, c)`` for images,
the reverse of the file's torch order ``(C, H, W)``), batch first, time last.
Inside, a layer's neurons are held in torch order, except 3-d (C, H, W) layers,
held as (H, W, C): a conv then reads and writes PyTorch's channels_last layout
without copies (2-5x faster than NCHW for the few channels of SNN conv layers),
and a dense block after them takes its weight columns in that order.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy._numba import parallel, prange as _prange
from neurodeploy.layout import netx_shape
from neurodeploy.sim.samples import reset_phase
from neurodeploy.network import (
    Conv, CubaNeuron, Dense, Flatten, Input, Network, SigmaDeltaNeuron, SrcNeuron,
)
from neurodeploy.errors import InputError

#: Elements per chunk of the largest (steps x batch x neurons) buffer.
CHUNK_ELEMENTS = 1 << 22
#: fewest bits per digit for which a float64 conv is done as a float32 conv of digits
SPLIT_MIN_BITS = 6
#: Lava's Conv model casts its (exact) sums to int32: |sum| beyond this leaves it
LAVA_CONV_SUM_LIMIT = 2 ** 31
#: the input is reordered this many steps ahead (into at most READ_AHEAD_BYTES)
READ_AHEAD_STEPS, READ_AHEAD_BYTES = 64, 1 << 24


class LavaConvOverflowWarning(UserWarning):
    """A graded conv's sums leave int32, where Lava's Conv model stops being exact."""


class SimulationInputError(InputError):
    """Inputs of the wrong shape, dtype or range for the network."""


@dataclass
class SimResult:
    """spikes: the output layer, (batch, *out_shape, steps) in netx order (int32;
    graded for sigma-delta layers); records: per-layer arrays ``u/<i>``,
    ``v/<i>``, ``s/<i>`` (``sigma/<i>`` for sigma-delta) of shape
    (batch, *layer_shape, steps) when recording; i is the block's index in the
    file's ``layer/`` group."""

    spikes: np.ndarray
    records: Dict[str, np.ndarray] = field(default_factory=dict)


def _netx_shape(torch_shape) -> Tuple[int, ...]:
    return netx_shape(torch_shape)


def _channels_last(shape) -> bool:
    """Whether a layer of this torch-order shape is held as (H, W, C)."""
    return len(shape) == 3


def _held_order(shape) -> np.ndarray:
    """The torch-order flat index of each neuron in the order the simulator holds them."""
    idx = np.arange(int(np.prod(shape))).reshape(tuple(shape))
    return (idx.transpose(1, 2, 0) if _channels_last(shape) else idx).reshape(-1)


def _torch_view(frames: torch.Tensor, shape) -> torch.Tensor:
    """Held frames (steps, B, N), contiguous -> a (steps, B, *shape) torch-order view."""
    t, b = frames.shape[:2]
    if _channels_last(shape):
        c, h, w = shape
        return frames.reshape(t, b, h, w, c).permute(0, 1, 4, 2, 3)
    return frames.reshape((t, b) + tuple(shape))


class _Synapse:
    """W @ s for dense or conv blocks, exact, with Lava's per-synapse exponent,
    delays (grouped by value) and Conv's 24-bit wrap."""

    def __init__(self, index: int, block, graded_input: bool, in_shape: Tuple[int, ...],
                 input_bound: float, rec_delay_quirk: bool = False):
        self.index = index
        self.graded_input = graded_input
        self.in_shape = in_shape  # torch order, without batch
        self.conv = isinstance(block, Conv)
        where = f"layer {index} ({'conv' if self.conv else 'dense'})"
        if self.conv:
            w = np.asarray(block.weight, dtype=np.int64)
            self.exp = 0
            self.stride, self.padding = block.stride, block.padding
            self.dilation, self.groups = block.dilation, block.groups
            if block.delay is not None and np.any(block.delay):
                raise NotImplementedError(f"{where}: conv delays are not built by netx")
            self.delays = None
        else:
            try:
                w, self.exp = fx.netx_dense_weights(block.weight, apply_exponent=not rec_delay_quirk)
            except fx.BitWidthError as e:
                raise fx.BitWidthError(f"{where}: weight: {e}") from None
            self.delays = None
            if block.delay is not None:
                d = np.asarray(block.delay, dtype=np.int64).reshape(-1)
                fx.check_range("delay", d, 0, fx.NETX_MAX_DELAY, where=f"{where}: ")
                if d.size == w.shape[0]:
                    dm = np.repeat(d[:, None], w.shape[1], 1)
                elif d.size == w.shape[1]:
                    dm = np.repeat(d[None, :], w.shape[0], 0)
                else:
                    raise ValueError(f"{where}: delay of shape {d.shape} fits neither "
                                     f"{w.shape[0]} outputs nor {w.shape[1]} inputs")
                self.delays = dm
        if self.exp < 0 and not np.any(w % (1 << -self.exp)) and not (graded_input and not self.conv):
            # netx scaled the stored integers up by 2**-exp: for integer inputs
            # (W @ s) >> -exp == (W >> -exp) @ s exactly, so drop the shift (not for
            # graded input into Dense: Lava wraps W @ s to int32 before the shift)
            w, self.exp = w >> -self.exp, 0
        self.max_delay = 0 if self.delays is None else int(self.delays.max())
        row_sum = float(np.abs(w).reshape(w.shape[0], -1).sum(1).max(initial=0))
        self.warned = False
        bound = row_sum * max(input_bound, 1.0)
        if bound < 2 ** 24:
            self.dtype = torch.float32
        elif bound < 2 ** 53:
            self.dtype = torch.float64
        else:
            self.dtype = torch.int64
        self.bound = bound
        # Conv's 24-bit wrap is the identity while |W @ s| < 2**23
        self.wraps = self.conv and bound >= 2 ** (fx.CONV_ACCUMULATOR_BITS - 1)
        # Binary input and 8-bit signed weights: exact int8 x int8 -> int32 matrix
        # product (VNNI/AMX kernels, ~3-4x a float32 GEMM); float fallback kept.
        self.int8 = (not self.conv and not graded_input and self.delays is None
                     and w.size > 0 and w.min() >= -128 and w.max() <= 127
                     and w.shape[1] * 128 < 2 ** 31 and hasattr(torch, "_int_mm"))
        if self.int8:
            self.w_int8 = torch.tensor(w.T, dtype=torch.int8).contiguous()
        if self.delays is None:
            self.weights = [(0, torch.tensor(w, dtype=self.dtype))]
            if self.conv:
                self.weights = [(0, self.weights[0][1].contiguous(memory_format=torch.channels_last))]
        else:
            self.weights = [(int(dv), torch.as_tensor(np.where(self.delays == dv, w, 0), dtype=self.dtype))
                            for dv in np.unique(self.delays)]
        # A conv that needs float64 (graded input) runs as one float32 conv of the
        # input's base-2**split_bits digits, each exact: |digit| <= 2**split_bits and
        # 2**split_bits * max row sum <= 2**24 (float64 convs are 5-10x slower)
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


@dataclass
class _Layer:
    index: int  # block index in the file
    neuron_index: int  # 0-based over neuron-holding blocks (netx's reset phase)
    neuron: object
    shape: Tuple[int, ...]  # torch order
    synapse: Optional[_Synapse]
    rec: Optional[_Synapse]
    bias: Optional[torch.Tensor]  # (N,) bias mantissa, torch order
    is_input: bool = False


def _bias_vector(block, shape, where) -> Optional[np.ndarray]:
    b = getattr(block, "bias", None)
    if b is None:
        return None
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    n = int(np.prod(shape))
    if b.size == n:
        return b[_held_order(shape)]
    if len(shape) == 3 and b.size == shape[0]:  # channel-wise (netx broadcast)
        return np.repeat(b, shape[1] * shape[2])[_held_order(shape)]
    if b.size == 1:
        return np.full(n, b[0])
    raise ValueError(f"{where}: bias of {b.size} values fits neither {n} neurons nor {shape[0]} channels")


def _plan(network: Network, input_bias: Optional[np.ndarray], input_bound: float):
    """-> (layers, feed_shape torch order, feeds_input_neuron)."""
    layers: List[_Layer] = []
    blocks = list(network.layers)
    first = blocks[0]
    has_input_neuron = isinstance(first, Input) and first.neuron is not None
    if input_bias is not None and not has_input_neuron:
        raise SimulationInputError("an input bias needs an input layer with neurons; this network has "
                                   "none (skipped, or the file has none)")
    shape = tuple(network.input_shape)
    feed_shape = None  # net.inp takes the first synapse's input shape
    graded = network.input_message_bits > 0  # net.inp's message bits (netx default 0)
    bound = float(input_bound)
    neuron_index = 0
    for i, block in enumerate(blocks):
        where = f"layer {i}"
        if isinstance(block, Flatten):
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(block, Input):
            if i != 0:
                raise ValueError(f"{where}: an input block must come first")
            shape = tuple(block.shape)
            if block.neuron is None:
                continue
            bias = None
            if input_bias is not None:
                b = np.asarray(input_bias)
                netx = _netx_shape(shape)
                if b.size == 1:
                    b = np.full(netx, b.reshape(-1)[0])
                if tuple(b.shape) != netx and b.size != int(np.prod(shape)):
                    raise SimulationInputError(
                        f"input bias must have the input layer's shape {netx} (netx order), got {b.shape}")
                b = np.asarray(b).reshape(netx)
                if not np.issubdtype(b.dtype, np.integer) and not np.array_equal(np.round(b), b):
                    raise SimulationInputError("input bias must hold integers (the bias mantissa)")
                b = b.astype(np.int64)
                if isinstance(block.neuron, CubaNeuron):
                    fx.check_range("input bias mantissa", b, *fx.BIAS_RANGE, where=f"{where}: ")
                bias = np.ascontiguousarray(b.transpose(*range(b.ndim)[::-1])).reshape(-1)
                bias = bias[_held_order(shape)]
            feed_shape = shape
            layers.append(_Layer(i, neuron_index, block.neuron, shape, None, None,
                                 None if bias is None else torch.as_tensor(bias), is_input=True))
            neuron_index += 1
            graded = _sends_graded(block.neuron)
            bound = _output_bound(block.neuron, bound)
            continue
        if isinstance(block, (Dense, Conv)):
            in_shape = shape
            if isinstance(block, Dense):
                in_shape = (int(np.prod(shape)),)
                if block.in_features != in_shape[0]:
                    raise ValueError(f"{where} (dense): {block.in_features} inputs, previous block "
                                     f"gives {in_shape[0]}")
                if layers and _channels_last(layers[-1].shape):  # input held as (H, W, C)
                    block = _held_columns(block, _held_order(layers[-1].shape))
            if feed_shape is None:
                feed_shape = in_shape
            rec_quirk = isinstance(block, Dense) and block.weight_rec is not None and block.delay is not None
            if rec_quirk:
                raise NotImplementedError(
                    f"{where} (dense_rec): recurrent blocks with delays are not supported "
                    "(netx builds them without the weight exponent)")
            if isinstance(block, Dense) and block.weight_rec is not None:
                both = np.hstack([block.weight, block.weight_rec])
                syn = _Synapse(i, _with_weight(block, both), graded, (both.shape[1],), bound)
                wf, wr = syn.weights[0][1][:, :block.in_features], syn.weights[0][1][:, block.in_features:]
                syn.weights = [(0, wf.contiguous())]
                rec = _Synapse.__new__(_Synapse)
                rec.__dict__.update(syn.__dict__)
                rec.weights = [(0, wr.contiguous())]
                rec.in_shape = (block.num_neurons,)
                rec.graded_input = isinstance(block.neuron, SigmaDeltaNeuron)
                if rec.graded_input:  # graded own messages: exact integer product
                    rec.dtype = torch.int64
                    rec.weights = [(0, wr.to(torch.int64).contiguous())]
                    rec.int8 = False
                # the int8 weights were built for the concatenation: one set per part
                if syn.int8:
                    syn.w_int8 = wf.T.to(torch.int8).contiguous()
                if rec.int8:
                    rec.w_int8 = wr.T.to(torch.int8).contiguous()
                syn.in_shape = in_shape
            else:
                syn = _Synapse(i, block, graded, in_shape, bound)
                rec = None
            out_shape = tuple(block.shape)
            if isinstance(block, Conv) and tuple(block.shape) != _conv_out_shape(block, in_shape):
                raise ValueError(f"{where} (conv): stored shape {block.shape} but the convolution of "
                                 f"{in_shape} gives {_conv_out_shape(block, in_shape)}")
            bias = _bias_vector(block, out_shape, where)
            layers.append(_Layer(i, neuron_index, block.neuron, out_shape, syn, rec,
                                 None if bias is None else torch.tensor(bias)))
            neuron_index += 1
            shape = out_shape
            graded = _sends_graded(block.neuron)
            bound = _output_bound(block.neuron, bound)
            continue
        raise NotImplementedError(f"{where}: {type(block).__name__} blocks are not simulated")
    if not layers:
        raise ValueError("the network has no neuron layer")
    return layers, feed_shape, has_input_neuron


def _held_columns(block: Dense, order: np.ndarray) -> Dense:
    """``block`` with its input columns (and per-input delays) in the held order."""
    delay = block.delay
    if delay is not None:
        d = np.asarray(delay).reshape(-1)
        if d.size == block.in_features and d.size != block.weight.shape[0]:
            delay = d[order]
    return replace(block, weight=np.asarray(block.weight)[:, order], delay=delay)


def _with_weight(block: Dense, weight: np.ndarray):
    class _W:  # a view of a dense block with a different weight matrix
        pass
    w = _W()
    w.weight, w.delay = weight, None
    return w


def _conv_out_shape(block: Conv, in_shape) -> Tuple[int, ...]:
    _, h, w = in_shape
    kh, kw = block.weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = block.stride, block.padding, block.dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (int(block.weight.shape[0]), oh, ow)


def _sends_graded(neuron) -> bool:
    """Whether a layer's messages are graded integers (else spikes, seen as s != 0)."""
    if isinstance(neuron, SrcNeuron):
        from neurodeploy.sim.src import sends_graded
        return sends_graded(neuron)
    return isinstance(neuron, SigmaDeltaNeuron)


def _output_bound(neuron, in_bound: float) -> float:
    """Largest |message| a layer can send (for choosing an exact matmul dtype)."""
    if isinstance(neuron, SrcNeuron):
        from neurodeploy.sim.src import output_bound
        return output_bound(neuron)
    if isinstance(neuron, SigmaDeltaNeuron):
        return float(1 << 25)  # 24-bit registers >> 6, generous
    return 1.0


def _check_inputs(network: Network, inputs, feed_shape) -> Tuple["_InputFrames", bool, int]:
    arr = np.asarray(inputs)
    netx = _netx_shape(feed_shape)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SimulationInputError(f"inputs must be integers (spikes or graded values), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(np.round(arr), arr):
            raise SimulationInputError("inputs must hold integers (Loihi fixed point); got non-integer values")
    if arr.ndim == len(netx) + 1 and tuple(arr.shape[:-1]) == netx:
        arr, single = arr[None], True
    elif arr.ndim == len(netx) + 2 and tuple(arr.shape[1:-1]) == netx:
        single = False
    else:
        raise SimulationInputError(
            f"inputs must have shape (batch, {', '.join(map(str, netx))}, T) or "
            f"({', '.join(map(str, netx))}, T) in netx order; got {arr.shape}")
    if arr.shape[-1] < 1:
        raise SimulationInputError("inputs need at least one time step")
    mn, mx = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    bound = max(abs(mn), abs(mx))
    if bound >= 2 ** 31:
        raise SimulationInputError("inputs exceed Lava's int32 message range")
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype in (np.uint16, np.uint32, np.uint64):
        arr = arr.astype(np.int64)
    binary = arr.size > 0 and mn >= 0 and bound <= 1
    src = arr.astype(np.int8) if binary and arr.dtype != np.int8 else arr
    return _InputFrames(np.ascontiguousarray(src), netx, tuple(feed_shape), binary), single, bound


class _InputFrames:
    """The input in netx order (B, *netx_shape, T), handed out a chunk of steps at a
    time in the simulator's order (steps, B, N held features) from a reused read-ahead
    buffer (READ_AHEAD_STEPS steps), so no transposed copy of the whole input is ever
    held. Steps beyond T repeat cyclically (a RingBuffer source)."""

    def __init__(self, src: np.ndarray, netx_shape, feed_shape, binary: bool):
        self.src = src.reshape(src.shape[0], -1, src.shape[-1])  # (B, F netx order, T)
        self.batch, self.steps = src.shape[0], src.shape[-1]
        self.netx_shape, self.feed_shape, self.binary = netx_shape, feed_shape, binary
        nd = len(netx_shape)
        # held feature f (see _held_order) is feature perm[f] in netx order
        self.perm = (np.arange(int(np.prod(netx_shape))).reshape(netx_shape)
                     .transpose(*range(nd - 1, -1, -1)).reshape(-1))[_held_order(feed_shape)]
        self.buffer = None
        self.cached_start, self.cached = 0, 0   # steps held in buffer
        # 8 x 8 byte-block transposes: 1-byte input, 8-byte aligned rows of steps (the
        # features in any order, so images too); features beyond the last whole 8
        # (e.g. 700 = 87 * 8 + 4, SHD's channels) by the per-element loop
        f_all = self.src.shape[1]
        self.src64 = None
        if (src.dtype.itemsize == 1 and f_all >= 8 and self.steps % 8 == 0
                and self.src.ctypes.data % 8 == 0 and self.src.flags.c_contiguous):
            self.src64 = self.src.view(np.uint64)   # (B, F, T / 8)

    def chunk(self, start: int, c: int) -> torch.Tensor:
        """Steps [start, start + c), (c, B, N) with the features in held order (see
        _held_order); bool for binary inputs. Valid until the next call."""
        if not (self.cached_start <= start and start + c <= self.cached_start + self.cached):
            # refill: at least READ_AHEAD_STEPS (bounded by READ_AHEAD_BYTES), so the
            # input's cache lines (64 steps each in netx order, 1-byte values) are read
            # once, not once per chunk
            width = self.batch * self.src.shape[1] * self.src.itemsize
            ahead = max(8, min(READ_AHEAD_STEPS, READ_AHEAD_BYTES // max(1, width)))
            n = max(c, ahead - ahead % 8)
            if self.buffer is None or self.buffer.shape[0] < n:
                self.buffer = torch.empty((n, self.batch, self.src.shape[1]),
                                          dtype=torch.as_tensor(self.src[:0, :0, :0]).dtype)
            self._fill(start, n)
            self.cached_start, self.cached = start, n
        out = self.buffer[start - self.cached_start:start - self.cached_start + c]
        return out.view(torch.bool) if self.binary else out

    def _fill(self, start: int, c: int) -> None:
        out = self.buffer[:c]
        tidx = np.arange(start, start + c) % self.steps
        kernel = _compiled_frames()
        if kernel is not None:
            ks = np.arange(c)
            blocks8 = _compiled_blocks8() if self.src64 is not None else None
            if blocks8 is not None and c >= 8:
                # runs of 8 steps starting at a multiple of 8 (no wrap inside)
                k0 = np.arange(0, c - 7, 8)
                k0 = k0[(tidx[k0] % 8 == 0) & (tidx[k0 + 7] == tidx[k0] + 7)]
                if k0.size:
                    dst = out.numpy().view(np.uint8)
                    dst64 = dst.view(np.uint64) if dst.shape[2] % 8 == 0 else np.zeros((1, 1, 1), np.uint64)
                    blocks8(self.src64, self.perm, tidx[k0] // 8, k0, dst, dst64)
                    done = np.zeros(c, bool)
                    done[(k0[:, None] + np.arange(8)).ravel()] = True
                    f8 = self.src.shape[1] // 8 * 8
                    if f8 < self.src.shape[1]:  # the features after the last whole 8
                        kernel(self.src, self.perm, tidx, np.flatnonzero(done), f8, dst)
                    ks = ks[~done]
            if ks.size:
                kernel(self.src, self.perm, tidx, ks, 0, out.numpy())
        else:
            out.copy_(torch.from_numpy(self.src[:, :, tidx][:, self.perm]).permute(2, 0, 1))


def _frames_loops(src, perm, tidx, ks, f_lo, dst):  # pragma: no cover - compiled
    # dst[k, b, f] = src[b, perm[f], tidx[k]] for k in ks and f >= f_lo; samples and
    # blocks of 64 features split across cores, contiguous writes
    b_all, f_all, _ = src.shape
    tile = 64
    nfb = (f_all - f_lo + tile - 1) // tile
    for job in _prange(b_all * nfb):
        b = job // nfb
        f0 = f_lo + (job % nfb) * tile
        f1 = min(f_all, f0 + tile)
        for k in ks:
            t = tidx[k]
            out = dst[k, b]
            for f in range(f0, f1):
                out[f] = src[b, perm[f], t]


_M32, _M16, _M8 = np.uint64(0xFFFFFFFF), np.uint64(0x0000FFFF0000FFFF), np.uint64(0x00FF00FF00FF00FF)
_N32, _N16, _N8 = ~_M32, ~_M16, ~_M8
_S32, _S16, _S8 = np.uint64(32), np.uint64(16), np.uint64(8)
_M8B = np.uint64(0xFF)


def _frames_blocks8(src64, perm, t8, k0, dst, dst64):  # pragma: no cover - compiled
    # 1-byte values: for each run j of 8 steps, the 8 x 8 byte block (held-order
    # features 8g.., steps 8 t8[j]..) of sample b, read as 8 words (one per feature),
    # is transposed in registers into 8 words (one per step):
    # dst[k0[j] + i, b, 8 g + q] = src64[b, perm[8 g + q], t8[j]] byte i; dst64 is dst's
    # uint64 view when its rows are whole words
    b_all = src64.shape[0]
    g_all = src64.shape[1] // 8
    aligned = dst.shape[2] % 8 == 0
    for b in _prange(b_all):   # a sample's (F x 64 steps) input lines stay in L2
        for j in range(t8.size):
            t = t8[j]
            for g in range(g_all):   # contiguous writes along each step's row
                f = 8 * g
                r0 = src64[b, perm[f], t]
                r1 = src64[b, perm[f + 1], t]
                r2 = src64[b, perm[f + 2], t]
                r3 = src64[b, perm[f + 3], t]
                r4 = src64[b, perm[f + 4], t]
                r5 = src64[b, perm[f + 5], t]
                r6 = src64[b, perm[f + 6], t]
                r7 = src64[b, perm[f + 7], t]
                # swap 4-byte halves between words i and i + 4
                r0, r4 = (r0 & _M32) | ((r4 & _M32) << _S32), ((r0 >> _S32) & _M32) | (r4 & _N32)
                r1, r5 = (r1 & _M32) | ((r5 & _M32) << _S32), ((r1 >> _S32) & _M32) | (r5 & _N32)
                r2, r6 = (r2 & _M32) | ((r6 & _M32) << _S32), ((r2 >> _S32) & _M32) | (r6 & _N32)
                r3, r7 = (r3 & _M32) | ((r7 & _M32) << _S32), ((r3 >> _S32) & _M32) | (r7 & _N32)
                # 2-byte pairs between words i and i + 2
                r0, r2 = (r0 & _M16) | ((r2 & _M16) << _S16), ((r0 >> _S16) & _M16) | (r2 & _N16)
                r1, r3 = (r1 & _M16) | ((r3 & _M16) << _S16), ((r1 >> _S16) & _M16) | (r3 & _N16)
                r4, r6 = (r4 & _M16) | ((r6 & _M16) << _S16), ((r4 >> _S16) & _M16) | (r6 & _N16)
                r5, r7 = (r5 & _M16) | ((r7 & _M16) << _S16), ((r5 >> _S16) & _M16) | (r7 & _N16)
                # bytes between words i and i + 1
                r0, r1 = (r0 & _M8) | ((r1 & _M8) << _S8), ((r0 >> _S8) & _M8) | (r1 & _N8)
                r2, r3 = (r2 & _M8) | ((r3 & _M8) << _S8), ((r2 >> _S8) & _M8) | (r3 & _N8)
                r4, r5 = (r4 & _M8) | ((r5 & _M8) << _S8), ((r4 >> _S8) & _M8) | (r5 & _N8)
                r6, r7 = (r6 & _M8) | ((r7 & _M8) << _S8), ((r6 >> _S8) & _M8) | (r7 & _N8)
                words = (r0, r1, r2, r3, r4, r5, r6, r7)
                for i in range(8):
                    k = k0[j] + i
                    if aligned:  # rows of whole words: one 8-byte store
                        dst64[k, b, g] = words[i]
                    else:  # little-endian bytes (LLVM does not merge these stores)
                        for q in range(8):
                            dst[k, b, f + q] = np.uint8((words[i] >> np.uint64(8 * q)) & _M8B)


def _compiled_frames():
    """The compiled input reordering, or None without numba."""
    return parallel(_frames_loops)


def _compiled_blocks8():
    """The compiled 8 x 8 byte-block reordering, or None without numba."""
    return parallel(_frames_blocks8)


def run_length(steps: Optional[int], input_steps: int, reset_interval: Optional[int]) -> int:
    """The number of steps to run (``steps``, or the input's ``input_steps`` when None);
    SimulationInputError for a run shorter than one step or a reset interval below 1."""
    steps = int(input_steps if steps is None else steps)
    if steps < 1:
        raise SimulationInputError(f"steps must be >= 1, got {steps}")
    if reset_interval is not None and reset_interval < 1:
        raise SimulationInputError(f"reset_interval must be >= 1, got {reset_interval}")
    return steps


def simulate(network: Network, inputs: np.ndarray, steps: Optional[int] = None,
             reset_interval: Optional[int] = None, reset_offset: int = 0,
             record: bool = False, input_bias: Optional[np.ndarray] = None,
             chunk_steps: Optional[int] = None, progress: bool = False,
             device: str = "cpu") -> SimResult:
    """Run ``network`` on ``inputs`` of shape (batch, *input_shape, T) or
    (*input_shape, T), netx order, integers (spikes or graded values).

    steps: number of steps (default T); the input repeats cyclically beyond T.
    reset_interval, reset_offset: netx's periodic state reset (see module doc).
    record: also return u, v and spikes of every layer (memory grows with steps).
    input_bias: bias mantissa of the input layer's neurons (netx order, one
    sample: shared by the batch), the way lava-dl's examples inject images.
    progress: a progress bar over the steps (tqdm, on a terminal only).
    device: ``cpu``, or ``cuda`` / ``cuda:N`` for the same simulation on a GPU
    (:mod:`neurodeploy.sim.cuda`; identical results).
    Returns the output layer's messages at every step exactly as a Lava
    RingBuffer sink on the network's output port records them.
    A network with shortcuts runs in :mod:`neurodeploy.sim.residual`.
    """
    if network.shortcuts:
        if input_bias is not None:
            raise SimulationInputError("an input bias needs an input layer with neurons; a residual "
                                       "network has none")
        if device != "cpu":
            raise SimulationInputError(f"device {device}: networks with shortcuts (residual) run on "
                                       "the CPU simulator only; use device cpu")
        from neurodeploy.sim.residual import simulate_residual
        return simulate_residual(network, inputs, steps, reset_interval, reset_offset, record,
                                 chunk_steps)
    if device != "cpu":
        from neurodeploy.sim.cuda import device_for, simulate_on
        return simulate_on(device_for(device), network, inputs, steps, reset_interval, reset_offset,
                           record, input_bias, chunk_steps, progress)
    layers, feed_shape, _ = _plan(network, input_bias, 1.0)
    x, single, in_bound = _check_inputs(network, inputs, feed_shape)
    if in_bound > 1:  # re-plan with the real input bound (graded inputs into a synapse)
        layers, feed_shape, _ = _plan(network, input_bias, in_bound)
    t_in, batch = x.steps, x.batch
    steps = run_length(steps, t_in, reset_interval)
    widest = max([int(np.prod(feed_shape))] + [int(np.prod(l.shape)) for l in layers])
    chunk = chunk_steps or max(1, min(steps, CHUNK_ELEMENTS // max(1, batch * widest)))
    if not chunk_steps and chunk > 8:
        chunk -= chunk % 8   # chunks of whole 8-step runs: the input reordering's fast path

    states = [_init_state(l, batch) for l in layers]
    tails = [None if l.synapse is None else
             torch.zeros((l.synapse.max_delay + 1, batch, int(np.prod(l.synapse.in_shape))),
                         dtype=torch.int64 if l.synapse.graded_input else torch.bool)
             for l in layers]
    out_layer = layers[-1]
    netx_out = _netx_shape(out_layer.shape)
    # the output, written chunk by chunk in netx order (no second copy of a long run)
    spikes_t = torch.empty((batch,) + netx_out + (steps,), dtype=torch.int32)
    rec: Dict[str, List[torch.Tensor]] = {}
    leads: List[Optional[torch.Tensor]] = [None] * len(layers)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, unit="step", desc=f"simulating {batch} sample(s)", leave=False,
                   disable=None)
    for start in range(0, steps, chunk):
        c = min(chunk, steps - start)
        s = x.chunk(start, c)  # (c, B, N) held order; cyclic beyond t_in
        for li, layer in enumerate(layers):
            syn = layer.synapse
            a, lead = synapse_input(syn, s, c, batch, leads, tails, li)
            s = _run_neurons(layer, a, states[li], start, reset_interval, reset_offset,
                             rec if record else None, lead)
            s = s.reshape(c, batch, -1)
        spikes_t[..., start:start + c].copy_(_netx_view(s, out_layer.shape))
        if bar is not None:
            bar.update(c)
    if bar is not None:
        bar.close()
    result = sim_result(spikes_t.numpy(), rec if record else None, layers, single)
    assert result.spikes.shape[-1] == steps and \
        tuple(result.spikes.shape[-1 - len(netx_out):-1]) == netx_out
    return result


def synapse_input(syn, s: torch.Tensor, c: int, batch: int, leads: list, tails: list, li: int):
    """Layer ``li``'s synaptic input for a chunk of ``c`` steps of its source's messages
    ``s`` -> (a, lead): ``a`` (c, batch, n) and the frame before it (no-delay synapses,
    else None). Input layer (``syn`` None): a_in gets the stream. A synapse without
    delays gives a[k] = W x[k - 1]: this chunk's products, one frame later, the first
    frame from the previous chunk (``leads``); with delays, the last ``max_delay + 1``
    frames carry over (``tails``)."""
    if syn is None:
        return s.reshape(c, batch, -1), None
    frames = s.reshape(c, batch, -1)
    if syn.graded_input:
        frames = frames.to(torch.int64)
    elif frames.dtype != torch.bool:
        frames = frames != 0  # 0 message bits: the synapse sees s != 0
    if syn.max_delay == 0:
        a = syn(frames, c)
        lead = leads[li] if leads[li] is not None else torch.zeros_like(a[0])
        leads[li] = a[-1]
        return a, lead
    full = torch.cat([tails[li], frames.to(tails[li].dtype)])
    tails[li] = full[-(syn.max_delay + 1):].clone()
    return syn(full, c), None


def sim_result(spikes: np.ndarray, rec: Optional[dict], layers, single: bool) -> SimResult:
    """The SimResult of a batched run: output ``spikes`` (batch, *out, T) and the
    recorded frames ``rec`` ('u/<i>' etc. -> list of (c, batch, n) chunks, or None) in
    netx order; the batch axis dropped for a single sample."""
    records = {}
    for key, frames in (rec or {}).items():
        li = int(key.split("/")[1])
        layer = next(l for l in layers if l.index == li)
        records[key] = _to_netx(torch.cat(frames), layer.shape)
    if single:
        spikes = spikes[0]
        records = {k: v[0] for k, v in records.items()}
    return SimResult(spikes=spikes, records=records)


def _netx_view(frames: torch.Tensor, shape) -> torch.Tensor:
    """Held frames (steps, B, N) -> a (B, *netx_shape, steps) view."""
    y = _torch_view(frames, shape)
    nd = len(shape)
    return y.permute(1, *range(nd + 1, 1, -1), 0)


def _to_netx(frames: torch.Tensor, shape) -> np.ndarray:
    """Held frames (steps, B, N) -> (B, *netx_shape, steps), contiguous."""
    return _netx_view(frames, shape).contiguous().numpy()


def _init_state(layer: _Layer, batch: int):
    n = int(np.prod(layer.shape))
    if isinstance(layer.neuron, SrcNeuron):
        from neurodeploy.sim.src import initial_state
        return initial_state(batch, n, layer.neuron)
    if isinstance(layer.neuron, CubaNeuron):
        z = torch.zeros((batch, n), dtype=torch.float64)
        return {"u": z, "v": z.clone(), "rec": torch.zeros((batch, n), dtype=torch.int64)}
    z = torch.zeros((batch, n), dtype=torch.int64)
    return {"sd": fx.SigmaDeltaState(z, z.clone(), z.clone()), "rec": z.clone()}


def _reset_mask(start: int, c: int, reset_interval: Optional[int], phase: Optional[int]) -> np.ndarray:
    """Steps start .. start + c - 1 (0-based) at which a layer whose netx reset phase
    is ``phase`` zeroes u and v before integrating: Lava's LIFReset, whose time
    step t = k + 1 starts at 1, resets where t % reset_interval == phase."""
    if phase is None:
        return np.zeros(c, np.bool_)
    return (np.arange(start, start + c) + 1) % reset_interval == phase


def _run_neurons(layer: _Layer, a: torch.Tensor, st: dict, start: int,
                 reset_interval, reset_offset, rec, lead: Optional[torch.Tensor] = None) -> torch.Tensor:
    """a: (c, B, N) synaptic input of the chunk -> messages (c, B, N). With
    ``lead``, the input at step k is ``lead`` for k = 0 and ``a[k - 1]`` after."""
    c = a.shape[0]
    neuron = layer.neuron
    phase = None
    if isinstance(neuron, SrcNeuron):  # the SRC recurrence lives in sim.src
        from neurodeploy.sim.src import run_src_neurons
        if layer.rec is not None:
            raise NotImplementedError(f"layer {layer.index}: recurrent SRC blocks are not simulated")
        if reset_interval:
            phase = reset_phase(layer.neuron_index, reset_interval, reset_offset)
        return run_src_neurons(layer, a, st, _reset_mask(start, c, reset_interval, phase), rec, lead)
    if reset_interval and isinstance(neuron, CubaNeuron):
        phase = reset_phase(layer.neuron_index, reset_interval, reset_offset)
    out = torch.empty(a.shape, dtype=torch.bool if isinstance(neuron, CubaNeuron) else torch.int64)
    if rec is not None:
        us, vs = [], []
    if isinstance(neuron, CubaNeuron) and fx.compiled_cuba_steps() is not None:
        # compiled loop over (neuron, step): fixedpoint.cuba_run, same arithmetic as cuba_step
        bsz, n = st["u"].shape
        reset = _reset_mask(start, c, reset_interval, phase)
        if a.dtype == torch.bool:
            a = a.view(torch.int8)  # the same 0/1 bytes, no copy
        if "bias_tiled" not in st:
            st["bias_tiled"] = (None if layer.bias is None
                                else np.tile(np.asarray(layer.bias, np.int64).reshape(-1), bsz))
        if "u_np" not in st:  # int64 state, updated in place by the compiled loop
            st["u_np"] = st["u"].to(torch.int64).reshape(-1).numpy().copy()
            st["v_np"] = st["v"].to(torch.int64).reshape(-1).numpy().copy()
        if "parameters" not in st:
            st["parameters"] = neuron.parameters()
        if layer.rec is None:  # the whole chunk in one call
            _, _, u_rec, v_rec = fx.cuba_run(
                a.reshape(c, -1).numpy(), st["parameters"], st["bias_tiled"], reset,
                state=(st["u_np"], st["v_np"]), record=rec is not None,
                a_first=None if lead is None else lead.reshape(-1).to(a.dtype).numpy(),
                spikes=out.view(torch.uint8).reshape(c, -1).numpy())
            if rec is not None:
                us = list(torch.from_numpy(u_rec).reshape(c, bsz, n))
                vs = list(torch.from_numpy(v_rec).reshape(c, bsz, n))
        else:  # recurrent: a step at a time, the previous step's spikes through W_rec added
            last = st["rec"]
            spikes = out.view(torch.uint8).reshape(c, -1).numpy()
            for k in range(c):
                ak = a[k] if lead is None else (lead if k == 0 else a[k - 1])
                ak = ak.to(torch.int64) + layer.rec(last[None], 1)[0].to(torch.int64)
                _, _, u_rec, v_rec = fx.cuba_run(
                    ak.reshape(1, -1).numpy(), st["parameters"], st["bias_tiled"], reset[k:k + 1],
                    state=(st["u_np"], st["v_np"]), record=rec is not None, spikes=spikes[k:k + 1])
                last = out[k]
                if rec is not None:
                    us.append(torch.from_numpy(u_rec).reshape(bsz, n))
                    vs.append(torch.from_numpy(v_rec).reshape(bsz, n))
            st["rec"] = last
    elif isinstance(neuron, CubaNeuron):  # the step itself: fixedpoint.cuba_step
        p = neuron.parameters()
        state = fx.CubaState(st["u"], st["v"])
        if a.dtype == torch.bool:
            a = a.to(torch.int32)
        last = st["rec"]
        reset = _reset_mask(start, c, reset_interval, phase)
        for k in range(c):
            if reset[k]:
                state = fx.cuba_initial_state(state.current.shape, state.current.dtype)
            ak = a[k] if lead is None else (lead if k == 0 else a[k - 1])
            if layer.rec is not None:
                ak = ak + layer.rec(last[None], 1)[0]
            spk, state = fx.cuba_step(ak, state, p, layer.bias)
            out[k] = spk
            if layer.rec is not None:
                last = out[k].to(torch.int64)
            if rec is not None:
                us.append(state.current.to(torch.int64))
                vs.append(state.voltage.to(torch.int64))
        st["u"], st["v"], st["rec"] = state.current, state.voltage, last
    elif layer.rec is None and fx.compiled_sigma_delta_steps() is not None:
        # compiled loop over (neuron, step): fixedpoint.sigma_delta_run, the same steps
        # as sigma_delta_step / delta_input_step; the state tensors updated in place
        sd = st["sd"]
        bsz, n = sd.sigma.shape
        kind = (fx.SD_INPUT if layer.is_input else
                fx.SD_SIGMA_OUTPUT if neuron.sigma_output else fx.SD_HIDDEN)
        if "bias_tiled" not in st:
            st["bias_tiled"] = (None if layer.bias is None or kind != fx.SD_HIDDEN
                                else np.tile(np.asarray(layer.bias, np.int64).reshape(-1), bsz))
        if a.dtype == torch.bool:
            a = a.view(torch.int8)
        sigma_rec = fx.sigma_delta_run(
            a.reshape(c, -1).numpy(), kind, neuron.threshold or 0, st["bias_tiled"],
            (sd.sigma.view(-1).numpy(), sd.act.view(-1).numpy(), sd.residue.view(-1).numpy()),
            out.view(c, -1).numpy(), record=rec is not None,
            a_first=None if lead is None else lead.reshape(-1).to(a.dtype).numpy())
        if rec is not None:
            us = list(torch.from_numpy(sigma_rec).reshape(c, bsz, n))
    else:
        sd = st["sd"]
        last = st["rec"]
        bias = layer.bias
        for k in range(c):
            ak = (a[k] if lead is None else (lead if k == 0 else a[k - 1])).to(torch.int64)
            if layer.rec is not None:
                ak = ak + layer.rec(last[None], 1)[0]
            if layer.is_input:
                s, sd = fx.delta_input_step(ak, sd, neuron.threshold)
            elif neuron.sigma_output:
                sigma = fx.wrap_int32(sd.sigma + ak)
                sd = fx.SigmaDeltaState(sigma, sd.act, sd.residue)
                s = sigma
            else:
                s, sd = fx.sigma_delta_step(ak, sd, neuron.threshold, bias)
            out[k] = s
            last = s
            if rec is not None:
                us.append(sd.sigma.clone())
        st["sd"], st["rec"] = sd, last
    if rec is not None:
        i = layer.index
        if isinstance(neuron, CubaNeuron):
            rec.setdefault(f"u/{i}", []).append(torch.stack(us))
            rec.setdefault(f"v/{i}", []).append(torch.stack(vs))
        else:
            rec.setdefault(f"sigma/{i}", []).append(torch.stack(us))
        rec.setdefault(f"s/{i}", []).append(out.to(torch.int32))
    return out
