"""FloatNetwork -> Network: the float network an imported NIR graph describes,
quantised with the training quantiser (:mod:`neurodeploy.export.quantize`)."""
from __future__ import annotations

import numpy as np

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import FloatFlatten, FloatNetwork


def _fits(weight: np.ndarray, threshold: float, bias, e: int) -> bool:
    """Whether weights, threshold and bias at scale 2**e lie in Loihi's fields
    (the recorded exponent of a layer written by :func:`write_nir`)."""
    from neurodeploy import fixedpoint as fx

    w = np.round(weight * 2.0 ** e)
    lo, hi = (fx.WEIGHT_RANGE_MIXED if w.min() < 0 < w.max() else
              fx.WEIGHT_RANGE_EXCITATORY if w.min() >= 0 else fx.WEIGHT_RANGE_INHIBITORY)
    ok = w.min() >= lo and w.max() <= hi
    ok &= fx.THRESHOLD_RANGE[0] <= round(threshold * 2.0 ** e) <= fx.THRESHOLD_RANGE[1]
    if bias is not None:
        b = np.round(bias * 2.0 ** e)
        ok &= fx.BIAS_RANGE[0] <= b.min() and b.max() <= fx.BIAS_RANGE[1]
    return bool(ok)


def quantize_float(fnet: FloatNetwork, where: str = "NIR graph"):
    """Quantise a :class:`FloatNetwork` to a :class:`Network` with the training
    quantiser (:func:`neurodeploy.export.quantize.layer_exponent`, the 8-bit weight,
    12-bit decay and 17-bit threshold rules of :mod:`neurodeploy.fixedpoint`). A layer's
    recorded exponent (neurodeploy's writer) is used when the integers fit it."""
    from neurodeploy import fixedpoint as fx
    from neurodeploy.export.quantize import _neuron as quantize_neuron, layer_exponent
    from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network

    blocks, exponents = [], []
    for i, layer in enumerate(fnet.layers):
        w = f"{where}: layer {i}"
        if isinstance(layer, FloatFlatten):
            blocks.append(Flatten(shape=layer.shape))
            continue
        if layer.fields.get("no_neuron"):
            blocks.append(Input(shape=layer.shape, neuron=None, weight=float(layer.fields["input_weight"])))
            continue
        try:
            if layer.kind == "input":
                e = 0 if layer.exponent is None else int(layer.exponent)
                if e != 0:
                    raise InputError(f"{w}: an input layer's exponent must be 0, found {e}")
                base = quantize_neuron(layer, 0)
            else:
                both = layer.weight.reshape(layer.weight.shape[0], -1)
                if layer.weight_rec is not None:
                    both = np.hstack([both, layer.weight_rec])
                e = layer.exponent
                if e is None or not _fits(both, layer.threshold, layer.bias, int(e)):
                    e = layer_exponent(both, layer.threshold, layer.bias)
                base = quantize_neuron(layer, e)
                q = fx.quantize_weights(both, e)
            neuron = CubaNeuron(current_decay=base.current_decay, voltage_decay=base.voltage_decay,
                                threshold=base.threshold,
                                refractory_delay=int(layer.fields.get("refractory_delay", 1)),
                                graded_spike=bool(layer.fields.get("graded_spike", False)))
            bias = None
            if layer.bias is not None:
                bias = np.round(layer.bias * 2.0 ** e).astype(np.int64)
                fx.check_range("bias mantissa", bias, *fx.BIAS_RANGE)
        except fx.BitWidthError as err:
            raise InputError(f"{w}: {err}") from None
        except ValueError as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"{w}: {err}") from None
        if layer.kind == "input":
            blocks.append(Input(shape=layer.shape, neuron=neuron, bias=bias,
                                weight=float(layer.fields.get("input_weight") or 64.0)))
        elif layer.kind == "conv":
            blocks.append(Conv(weight=q.reshape(layer.weight.shape), neuron=neuron, shape=layer.shape,
                               stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                               groups=layer.groups, bias=bias))
        else:
            n_in = layer.weight.shape[1]
            blocks.append(Dense(weight=q[:, :n_in], neuron=neuron, bias=bias,
                                weight_rec=None if layer.weight_rec is None else q[:, n_in:]))
        exponents.append(e)
    try:
        return Network(layers=tuple(blocks), input_shape=fnet.input_shape, name=fnet.name,
                       metadata={"weight_exponents": exponents, "source": "nir"})
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None

