"""Input frames and layouts of the fast simulator (:mod:`neurodeploy.sim.simulator`).

Arrays in and out use netx's port order (``(x, y, c)`` for images, the reverse of
the file's torch order ``(C, H, W)``), batch first, time last. Inside, a layer's
neurons are held in torch order, except 3-d (C, H, W) layers, held as (H, W, C): a
conv then reads and writes PyTorch's channels_last layout without copies, and a
dense block after them takes its weight columns in that order. The input is
reordered into (steps, batch, held features) a chunk of steps at a time by compiled
loops: 8 x 8 byte-block transposes in registers for 1-byte inputs, a per-element
loop for the rest.
"""
from __future__ import annotations

import numpy as np
import torch

from neurodeploy._numba import parallel
from neurodeploy._numba import prange as _prange

#: the input is reordered this many steps ahead (into at most READ_AHEAD_BYTES)
READ_AHEAD_STEPS, READ_AHEAD_BYTES = 64, 1 << 24


def channels_last(shape) -> bool:
    """Whether a layer of this torch-order shape is held as (H, W, C)."""
    return len(shape) == 3


def held_order(shape) -> np.ndarray:
    """The torch-order flat index of each neuron in the order the simulator holds them."""
    idx = np.arange(int(np.prod(shape))).reshape(tuple(shape))
    return (idx.transpose(1, 2, 0) if channels_last(shape) else idx).reshape(-1)


def torch_view(frames: torch.Tensor, shape) -> torch.Tensor:
    """Held frames (steps, B, N), contiguous -> a (steps, B, *shape) torch-order view."""
    t, b = frames.shape[:2]
    if channels_last(shape):
        c, h, w = shape
        return frames.reshape(t, b, h, w, c).permute(0, 1, 4, 2, 3)
    return frames.reshape((t, b) + tuple(shape))



def netx_view(frames: torch.Tensor, shape) -> torch.Tensor:
    """Held frames (steps, B, N) -> a (B, *netx_shape, steps) view."""
    y = torch_view(frames, shape)
    nd = len(shape)
    return y.permute(1, *range(nd + 1, 1, -1), 0)


def to_netx(frames: torch.Tensor, shape) -> np.ndarray:
    """Held frames (steps, B, N) -> (B, *netx_shape, steps), contiguous."""
    return netx_view(frames, shape).contiguous().numpy()



class InputFrames:
    """The input in netx order (B, *netx_shape, T), handed out a chunk of steps at a
    time in the simulator's order (steps, B, N held features) from a reused read-ahead
    buffer (READ_AHEAD_STEPS steps), so no transposed copy of the whole input is ever
    held. Steps beyond T repeat cyclically (a RingBuffer source)."""

    def __init__(self, src: np.ndarray, netx_shape, feed_shape, binary: bool):
        self.src = src.reshape(src.shape[0], -1, src.shape[-1])  # (B, F netx order, T)
        self.batch, self.steps = src.shape[0], src.shape[-1]
        self.netx_shape, self.feed_shape, self.binary = netx_shape, feed_shape, binary
        nd = len(netx_shape)
        # held feature f (see held_order) is feature perm[f] in netx order
        self.perm = (np.arange(int(np.prod(netx_shape))).reshape(netx_shape)
                     .transpose(*range(nd - 1, -1, -1)).reshape(-1))[held_order(feed_shape)]
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
        held_order); bool for binary inputs. Valid until the next call."""
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

