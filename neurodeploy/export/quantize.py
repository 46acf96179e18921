"""Trained float model -> the integer network description (post-training quantisation).

Per layer l, with float weights W, threshold theta and decays:

- weight exponent e_l = the largest e with max|W| * 2**e <= 254 (and theta * 2**e
  within vThMant's 17 bits): the layer is scaled so its largest weight uses the
  full 8-bit range;
- weights: round(W * 2**e) to Loihi's 8-bit grid (even values in [-256, 254] for
  mixed-sign layers; Lava's Dense drops their lowest bit);
- vThMant = round(theta * 2**e); iDecay = round(current_decay * 4096) in 1..4096
  (Loihi's +1 offset), vDecay = round(voltage_decay * 4096) in 0..4095.

Batch norm on input currents is folded into weights and a bias first (exact since
such layers use current_decay = 1); the bias mantissa is round(bias * 2**e), 13 bit.

Scaling weights, bias and threshold by the same 2**e leaves the float dynamics unchanged;
the remaining differences are rounding, which the hardware-exact evaluation measures.
"""
from __future__ import annotations

import math

import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Network


def layer_exponent(weight: np.ndarray, threshold: float, bias=None) -> int:
    """Largest exponent that keeps weights in 8 bit, vThMant in 17 bit and the bias
    mantissa in 13 bit."""
    e = fx.choose_weight_exponent(float(np.abs(weight).max()))
    if threshold > 0:
        e = min(e, int(math.floor(math.log2(fx.THRESHOLD_RANGE[1] / threshold))))
    if bias is not None and np.abs(bias).max() > 0:
        e = min(e, int(math.floor(math.log2(fx.BIAS_RANGE[1] / np.abs(bias).max()))))
    return e


def _neuron(p, e: int) -> CubaNeuron:
    return CubaNeuron(
        current_decay=fx.quantize_decay(p.current_decay, offset_current=True),
        voltage_decay=fx.quantize_decay(p.voltage_decay, offset_current=False),
        threshold=fx.quantize_threshold(p.threshold, e),
    )


def quantize_model(model, name: str = "network") -> Network:
    """Quantise a :class:`neurodeploy.train.layers.SpikingNetwork` to a :class:`Network`:
    conv blocks (batch norm folded into weights and bias), a flatten block, dense
    blocks; no input layer (the input spikes feed the first block)."""
    from neurodeploy.train.layers import CubaConv

    layers, exponents = [], []
    for i, layer in enumerate(model.layers):
        if i == model.num_conv and i > 0:
            layers.append(Flatten(shape=model.layers[i - 1].output_shape))
        w, b = layer.folded() if hasattr(layer, "folded") else (layer.weight.detach(), None)
        w = w.cpu().double().numpy()
        b = None if b is None else b.cpu().double().numpy()
        if not np.all(np.isfinite(w)) or (b is not None and not np.all(np.isfinite(b))):
            raise ValueError(f"layer {i}: weights or bias are not finite; cannot quantise")
        e = layer_exponent(w, layer.neuron.threshold, b)
        wq = fx.quantize_weights(w, e)
        bq = None if b is None else np.round(b * 2.0 ** e).astype(np.int64)
        if isinstance(layer, CubaConv):
            layers.append(Conv(weight=wq, neuron=_neuron(layer.neuron, e), shape=layer.output_shape,
                               stride=layer.stride, padding=layer.padding, bias=bq))
        else:
            layers.append(Dense(weight=wq, neuron=_neuron(layer.neuron, e), bias=bq))
        exponents.append(e)
    input_shape = model.input_shape if model.num_conv else (math.prod(model.input_shape),)
    return Network(layers=tuple(layers), input_shape=input_shape, name=name,
                   metadata={"weight_exponents": exponents})
