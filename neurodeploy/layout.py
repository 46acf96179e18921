"""Axis orders of samples, and the one place that converts between them.

Two orders meet in this project:

- **torch order**: ``(C,)`` or ``(C, H, W)``, PyTorch's and the ``.net`` file's own
  (every ``layer/<i>/shape`` dataset, the IR's :attr:`Network.input_shape`);
- **netx order**: the reverse, ``(C,)`` or ``(x, y, c)`` = ``(W, H, C)``: the order of
  Lava's ports as lava-dl's netx builds them (it reverses every stored shape).

Sample arrays, in files and in every command and library function, are
``(samples, *shape, T)``: samples first, time last, features in **netx order**
(what the Lava input port takes and the simulator reads; ``test_data.npz``,
``simulate``, ``validate``, ``map --data``, ``deploy --data``, ``bundle --data``).
A dense network's two orders coincide; a conv network's do not. Training data is
encoded time second, ``(samples, T, *torch_shape)``: :func:`encoded_to_netx`
turns it into samples.

Every conversion between the orders goes through this module.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from neurodeploy.errors import InputError

#: names of the axes of a shape in torch order, by number of axes
TORCH_LAYOUTS = {1: "C", 2: "HW", 3: "CHW"}


def torch_layout(ndim: int) -> str:
    """'C', 'HW' or 'CHW': the axes of a torch-order shape of ``ndim`` axes."""
    if ndim not in TORCH_LAYOUTS:
        raise ValueError(f"a neuron shape has 1 to 3 axes, got {ndim}")
    return TORCH_LAYOUTS[ndim]


def netx_shape(torch_shape: Sequence[int]) -> Tuple[int, ...]:
    """Torch order -> netx order (the reverse); its own inverse."""
    return tuple(int(s) for s in tuple(torch_shape)[::-1])


def torch_shape(netx_shape_: Sequence[int]) -> Tuple[int, ...]:
    """Netx order -> torch order (the reverse)."""
    return netx_shape(netx_shape_)


def _reverse_features(x: np.ndarray, feature_dims: int) -> np.ndarray:
    """(..., *features, T) -> (..., *reversed features, T), a view."""
    x = np.asarray(x)
    lead = x.ndim - feature_dims - 1
    if lead < 0:
        raise ValueError(f"array of {x.ndim} axes cannot hold {feature_dims} feature axes and time")
    axes = list(range(lead)) + [lead + feature_dims - 1 - k for k in range(feature_dims)] + [x.ndim - 1]
    return np.transpose(x, axes)


def torch_to_netx(x: np.ndarray, feature_dims: int) -> np.ndarray:
    """(..., *torch_shape, T) -> (..., *netx_shape, T) (a view)."""
    return _reverse_features(x, feature_dims)


def netx_to_torch(x: np.ndarray, feature_dims: int) -> np.ndarray:
    """(..., *netx_shape, T) -> (..., *torch_shape, T) (a view)."""
    return _reverse_features(x, feature_dims)


def encoded_to_netx(encoded: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Encoded training samples (n, T, ...) holding ``shape`` (torch order) per step ->
    samples (n, *netx_shape, T), contiguous int64."""
    n, t = encoded.shape[:2]
    x = np.asarray(encoded).reshape(n, t, *shape)
    x = np.moveaxis(x, 1, -1)  # (n, *torch_shape, T)
    return np.ascontiguousarray(torch_to_netx(x, len(shape))).astype(np.int64)


def check_samples(x: np.ndarray, network, what: str = "inputs", allow_single: bool = True) -> np.ndarray:
    """``x`` as samples (n, *netx input shape, T) for ``network``; a single sample
    (*netx input shape, T) gets a leading axis when ``allow_single``. Anything else
    is an :class:`InputError` naming ``what``, the expected shape and, for a conv
    network handed torch order, that it is the torch order."""
    x = np.asarray(x)
    netx = tuple(network.input_shape_netx)
    shape_torch = tuple(network.input_shape)
    if allow_single and x.ndim == len(netx) + 1 and tuple(x.shape[:-1]) == netx:
        x = x[None]
    if x.ndim == len(netx) + 2 and tuple(x.shape[1:-1]) == netx:
        from neurodeploy.checks import check_values
        if x.shape[0] < 1:
            raise InputError(f"{what}: no samples (shape {x.shape}); expected at least one")
        if x.shape[-1] < 1:
            raise InputError(f"{what}: no time steps (shape {x.shape}); expected T >= 1")
        return check_values(x, what)  # integers only, nothing rounded
    expected = f"(samples, {', '.join(map(str, netx))}, T)"
    hint = ""
    if netx != shape_torch and x.ndim == len(netx) + 2 and tuple(x.shape[1:-1]) == shape_torch:
        hint = (f"; this is torch order {shape_torch}: samples are in netx (Lava port) order, "
                "convert with neurodeploy.layout.torch_to_netx")
    axes = f", {network.input_layout[::-1]} axes" if len(netx) > 1 else ""
    raise InputError(f"{what}: shape {x.shape} is not {expected} (netx order{axes}, time last){hint}")
