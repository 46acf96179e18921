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


def quantize_model(model, name: str = "network", layers=None) -> Network:
    """Quantise a trained model to a :class:`Network`: conv blocks (batch norm folded
    into weights and bias), a flatten block, dense or dense_rec blocks; no input
    layer (the input spikes feed the first block).

    ``model``: a :class:`neurodeploy.train.layers.SpikingNetwork`, or any
    ``nn.Module`` holding neurodeploy layers (:class:`~neurodeploy.train.layers.CubaConv`,
    :class:`~neurodeploy.train.layers.CubaDense`); ``layers``: their order, when it is
    not the order of registration (see :func:`neurodeploy.train.layers.spiking_layers`).
    A recurrent layer's W and W_rec share one exponent (netx derives one for the
    concatenation) and are rounded together."""
    from neurodeploy.train.layers import CubaConv, network_input_shape, spiking_layers

    chain = spiking_layers(model, layers)
    blocks, exponents = [], []
    for i, layer in enumerate(chain):
        if i > 0 and isinstance(chain[i - 1], CubaConv) and not isinstance(layer, CubaConv):
            blocks.append(Flatten(shape=chain[i - 1].output_shape))
        w, b = layer.folded() if hasattr(layer, "folded") else (layer.weight.detach(), None)
        w = w.cpu().double().numpy()
        w_rec = getattr(layer, "weight_rec", None)
        n_in = w.shape[1]
        if w_rec is not None:
            w = np.hstack([w, w_rec.detach().cpu().double().numpy()])
        b = None if b is None else b.cpu().double().numpy()
        if not np.all(np.isfinite(w)) or (b is not None and not np.all(np.isfinite(b))):
            raise ValueError(f"layer {i}: weights or bias are not finite; cannot quantise")
        e = layer_exponent(w, layer.neuron.threshold, b)
        wq = fx.quantize_weights(w, e)
        bq = None if b is None else fx.quantize_bias(b, e)
        if isinstance(layer, CubaConv):
            blocks.append(Conv(weight=wq, neuron=_neuron(layer.neuron, e), shape=layer.output_shape,
                               stride=layer.stride, padding=layer.padding, bias=bq))
        else:
            blocks.append(Dense(weight=wq[:, :n_in], neuron=_neuron(layer.neuron, e), bias=bq,
                                weight_rec=None if w_rec is None else wq[:, n_in:]))
        exponents.append(e)
    input_shape = network_input_shape(chain)
    if not isinstance(chain[0], CubaConv):
        input_shape = (math.prod(input_shape),)
    return Network(layers=tuple(blocks), input_shape=input_shape, name=name,
                   metadata={"weight_exponents": exponents})
