"""Trained float model -> the integer network description (post-training quantisation).

Per layer l, with float weights W, threshold theta and decays:

- weight exponent e_l = the largest e with max|W| * 2**e <= 254 (and theta * 2**e
  within vThMant's 17 bits): the layer is scaled so its largest weight uses the
  full 8-bit range;
- weights: round(W * 2**e) to Loihi's 8-bit grid (even values in [-256, 254] for
  mixed-sign layers; Lava's Dense drops their lowest bit);
- vThMant = round(theta * 2**e); iDecay = round(current_decay * 4096) in 1..4096
  (Loihi's +1 offset), vDecay = round(voltage_decay * 4096) in 0..4095.

Scaling weights and threshold by the same 2**e leaves the float dynamics unchanged;
the remaining differences are rounding, which the hardware-exact evaluation measures.
"""
from __future__ import annotations

import math

import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy.network import CubaNeuron, Dense, Network


def layer_exponent(weight: np.ndarray, threshold: float) -> int:
    e = fx.choose_weight_exponent(float(np.abs(weight).max()))
    e_max_threshold = int(math.floor(math.log2(fx.THRESHOLD_RANGE[1] / threshold)))
    return min(e, e_max_threshold)


def quantize_model(model, name: str = "network") -> Network:
    """Quantise a :class:`neurodeploy.train.layers.SpikingNetwork` to a :class:`Network`
    (dense blocks, no input layer: the input spikes feed the first dense block)."""
    layers, exponents = [], []
    for i, layer in enumerate(model.layers):
        w = layer.weight.detach().cpu().double().numpy()
        if not np.all(np.isfinite(w)):
            raise ValueError(f"layer {i}: weights are not finite; cannot quantise")
        p = layer.neuron
        e = layer_exponent(w, p.threshold)
        neuron = CubaNeuron(
            current_decay=fx.quantize_decay(p.current_decay, offset_current=True),
            voltage_decay=fx.quantize_decay(p.voltage_decay, offset_current=False),
            threshold=fx.quantize_threshold(p.threshold, e),
        )
        layers.append(Dense(weight=fx.quantize_weights(w, e), neuron=neuron))
        exponents.append(e)
    return Network(layers=tuple(layers), input_shape=(math.prod(model.input_shape),), name=name,
                   metadata={"weight_exponents": exponents})
