"""A trained :class:`~neurodeploy.train.residual.ResidualNetwork` -> the integer
network description with shortcuts (post-training quantisation).

Every layer is quantised as :mod:`neurodeploy.export.quantize` does (batch norm
folded into weights and bias, one weight exponent per layer). A block's second
layer and its shortcut feed the same neurons, so they share that layer's
exponent: it is chosen for both weight sets together (and the summed bias), and
both are rounded as one set of 8-bit weights, so their currents add in the same
units. The identity shortcut is a 1x1 kernel (or unit matrix) of ``2**e``: one
unit of current per input spike in the float model.

Each shortcut gets the delay that makes its target sum the same sample step on
both paths (:func:`neurodeploy.network.aligned_delay`: one step over a block).
"""
from __future__ import annotations

import math

import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy.export.quantize import _neuron, layer_exponent
from neurodeploy.network import Conv, Dense, Flatten, Network, Shortcut, aligned_delay


def _numpy(t):
    return None if t is None else t.detach().cpu().double().numpy()


def _finite(where: str, *arrays) -> None:
    for a in arrays:
        if a is not None and not np.all(np.isfinite(a)):
            raise ValueError(f"{where}: weights or bias are not finite; cannot quantise")


def _quantized_layer(layer, where: str, extra=None):
    """(block, exponent, extra quantised) for a CubaConv / CubaDense layer; ``extra``:
    (weight, bias) of a shortcut into the same neurons, quantised with the layer."""
    from neurodeploy.train.layers import CubaConv

    w, b = (_numpy(t) for t in layer.folded())
    ew, eb = (None, None) if extra is None else (_numpy(extra[0]), _numpy(extra[1]))
    _finite(where, w, b, ew, eb)
    bias = b if eb is None else (eb if b is None else b + eb)
    both = w.reshape(-1) if ew is None else np.concatenate([w.reshape(-1), ew.reshape(-1)])
    e = layer_exponent(both, layer.neuron.threshold, bias)
    q = fx.quantize_weights(both, e)  # one rounding (one sign mode) for both weight sets
    wq = q[:w.size].reshape(w.shape)
    eq = None if ew is None else q[w.size:].reshape(ew.shape)
    bq = None if bias is None else fx.quantize_bias(bias, e)
    if isinstance(layer, CubaConv):
        block = Conv(weight=wq, neuron=_neuron(layer.neuron, e), shape=layer.output_shape,
                     stride=layer.stride, padding=layer.padding, bias=bq)
    else:
        block = Dense(weight=wq, neuron=_neuron(layer.neuron, e), bias=bq)
    return block, e, eq


def quantize_residual_model(model, name: str = "network") -> Network:
    """Quantise a trained ResidualNetwork to a :class:`Network` with shortcuts:
    stem conv blocks, two blocks per residual block (the second with a shortcut
    from the block's input layer), a flatten block, dense blocks. No input layer
    (the input spikes feed the first block)."""
    blocks, exponents, shortcuts = [], [], []
    last = None  # index of the last neuron block

    def add(block, e):
        nonlocal last
        blocks.append(block)
        exponents.append(e)
        last = len(blocks) - 1

    for k, layer in enumerate(model.stem):
        block, e, _ = _quantized_layer(layer, f"stem layer {k}")
        add(block, e)
    for k, rb in enumerate(model.blocks):
        if last is None and rb.has_shortcut:
            raise ValueError("a residual block's shortcut starts at a layer of neurons: put a stem "
                             "layer (model.conv) before the first block")
        source = last
        block, e, _ = _quantized_layer(rb.first, f"block {k} layer 1")
        add(block, e)
        extra = rb.folded_shortcut() if rb.has_shortcut else None
        block, e, sw = _quantized_layer(rb.second, f"block {k} layer 2", extra)
        add(block, e)
        if rb.has_shortcut:
            stride = rb.stride if rb.conv else (1, 1)
            shortcuts.append(Shortcut(source=source, target=last, weight=sw, stride=stride,
                                      delay=aligned_delay(blocks, source, last)))
    for k, layer in enumerate(model.head):
        if k == 0 and blocks and isinstance(blocks[-1], Conv):
            blocks.append(Flatten(shape=blocks[-1].shape))
        block, e, _ = _quantized_layer(layer, f"dense layer {k}")
        add(block, e)
    input_shape = tuple(model.input_shape)
    if not isinstance(blocks[0], Conv):
        input_shape = (math.prod(input_shape),)
    return Network(layers=tuple(blocks), input_shape=input_shape, name=name,
                   metadata={"weight_exponents": exponents}, shortcuts=tuple(shortcuts))
