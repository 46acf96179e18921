"""Trained float SRC network -> the integer network description.

Per layer, with float weights W (and b_h for hidden layers):

- weight exponent e: the largest with max|W| 2**e <= 254 (8-bit weights) that also
  keeps the input current within its 24-bit register (``|i_float| 2**(e + 6) < 2**23``
  for the largest current the inputs can drive, ``max_row sum |W| / (1 - alpha)`` with
  every input at its largest message, s = 1, every step);
- weights round(W 2**e) on Loihi's 8-bit grid (:func:`fixedpoint.quantize_weights`);
- i holds ``i_float 2**(e + 6)``: binary input spikes enter as ``a << 6``, graded
  messages (``max(h, 0) >> 6``, i.e. 64 s) as ``a``;
- the cell's constants and tables: :func:`fixedpoint_src.quantize_parameters`;
  b_h (clamped as in training) -> its 13-bit mantissa round(64 b_h).
"""
from __future__ import annotations

import math

import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy import fixedpoint_src as fxs
from neurodeploy.network import Dense, Network, SrcNeuron


def src_layer_exponent(weight: np.ndarray, alpha: float, rho: float) -> int:
    """Largest exponent keeping weights in 8 bit and the input current in 24 bit."""
    w = np.abs(np.asarray(weight, np.float64))
    e = fx.choose_weight_exponent(float(w.max()))
    drive = float(w.sum(1).max()) / max(1.0 - float(alpha), 1e-6)  # largest |i_float| (s <= 1)
    if drive > 0:  # i = i_float 2**(e + 6) stays within 24 bit
        e = min(e, int(math.floor(math.log2(fx.VOLTAGE_LIMIT / drive))) - 6)
    return max(e, -int(math.ceil(math.log2(4.0 * rho / fxs.TABLE_SIZE))) - 6)


def src_layer_neuron(p, e: int, input_shift: int, output: str) -> SrcNeuron:
    q = fxs.quantize_parameters(alpha=p.alpha, rho=p.rho, r=p.r, r_s=p.r_s, z=p.z, z_hyp=p.z_hyp,
                                z_dep=p.z_dep, gate_threshold=p.gate_threshold, weight_exponent=e,
                                input_shift=input_shift, output=output,
                                initial_state=p.initial_state)
    return SrcNeuron(**q.__dict__)


def input_shifts(model):
    """a << shift per layer: 6 for binary input (the data's spikes, binary SRC output),
    0 for graded messages."""
    return [fx.ACTIVATION_SHIFT if i == 0 or model.output == "binary" else 0
            for i in range(len(model.layers))]


def quantize_src_model(model, name: str = "network") -> Network:
    """Quantise a :class:`neurodeploy.train.src.SRCNetwork` to a :class:`Network` of
    dense blocks with SRC neurons (the last one the 'current' readout)."""
    from neurodeploy.train.src import SRCReadout

    layers, exponents = [], []
    p = model.neuron
    for i, (layer, shift) in enumerate(zip(model.layers, input_shifts(model))):
        w = layer.weight.detach().cpu().double().numpy()
        if not np.all(np.isfinite(w)):
            raise ValueError(f"layer {i}: weights are not finite; cannot quantise")
        e = src_layer_exponent(w, p.alpha, p.rho)
        readout = isinstance(layer, SRCReadout)
        bias = None if readout else fxs.quantize_bias(layer.clamped_bias().detach().cpu().double().numpy())
        layers.append(Dense(weight=fx.quantize_weights(w, e), bias=bias,
                            neuron=src_layer_neuron(p, e, shift, "current" if readout else model.output)))
        exponents.append(e)
    return Network(layers=tuple(layers), input_shape=(math.prod(model.input_shape),), name=name,
                   metadata={"weight_exponents": exponents, "cell": "src"})


def is_src_network(network) -> bool:
    return any(isinstance(getattr(b, "neuron", None), SrcNeuron) for b in network.layers)
