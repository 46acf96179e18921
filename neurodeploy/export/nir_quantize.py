"""FloatNetwork -> Network: the float network an imported NIR graph describes,
quantised with the training quantiser (:mod:`neurodeploy.export.quantize`)."""
from __future__ import annotations

import numpy as np

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import FloatFlatten, FloatNetwork


def _fits_weights(weight: np.ndarray, e: int) -> bool:
    from neurodeploy import fixedpoint as fx

    w = np.round(weight * 2.0 ** e)
    lo, hi = {"mixed": fx.WEIGHT_RANGE_MIXED, "excitatory": fx.WEIGHT_RANGE_EXCITATORY,
              "inhibitory": fx.WEIGHT_RANGE_INHIBITORY}[fx.sign_mode(w)]
    return bool(w.min() >= lo and w.max() <= hi)


def _fits(weight_sets, threshold, bias, e: int) -> bool:
    """Whether every weight set, the threshold(s) and the bias at scale 2**e lie in
    Loihi's fields (the recorded exponent of a layer written by :func:`write_nir`)."""
    from neurodeploy import fixedpoint as fx

    ok = all(_fits_weights(ws, e) for ws in weight_sets)
    t = np.round(np.asarray(threshold, np.float64) * 2.0 ** e)
    ok &= fx.THRESHOLD_RANGE[0] <= t.min() and t.max() <= fx.THRESHOLD_RANGE[1]
    if bias is not None:
        b = np.round(bias * 2.0 ** e)
        ok &= fx.BIAS_RANGE[0] <= b.min() and b.max() <= fx.BIAS_RANGE[1]
    return bool(ok)


def _field(fn, value):
    """``fn`` on one value, or on each per-unit value (-> a tuple, netx's per-neuron form)."""
    a = np.asarray(value, np.float64)
    return fn(float(a)) if a.ndim == 0 else tuple(fn(float(v)) for v in a)


def _neuron(layer, e: int):
    """The layer's CUBA fields at scale 2**e (12-bit decays, 17-bit threshold)."""
    from neurodeploy import fixedpoint as fx
    from neurodeploy.network import CubaNeuron

    return CubaNeuron(current_decay=_field(lambda d: fx.quantize_decay(d, offset_current=True),
                                           layer.current_decay),
                      voltage_decay=_field(lambda d: fx.quantize_decay(d, offset_current=False),
                                           layer.voltage_decay),
                      threshold=_field(lambda t: fx.quantize_threshold(t, e), layer.threshold),
                      refractory_delay=int(layer.fields.get("refractory_delay", 1)),
                      graded_spike=bool(layer.fields.get("graded_spike", False)))


def _block(layer, shortcuts, where: str):
    """(block, exponent, quantised shortcut weights) of a FloatLayer with neurons. A layer's
    own synapse and recurrent synapse are rounded as one weight set (netx's dense_rec),
    each shortcut as its own (its own Lava synapse), all at one exponent: chosen for all
    of them together, or the recorded one when everything fits it."""
    from neurodeploy import fixedpoint as fx
    from neurodeploy.export.quantize import layer_exponent
    from neurodeploy.network import Conv, Dense, Input

    if layer.kind == "input":
        e = 0 if layer.exponent is None else int(layer.exponent)
        if e != 0:
            raise InputError(f"{where}: an input layer's exponent must be 0, found {e}")
        sets = []
    else:
        both = layer.weight.reshape(layer.weight.shape[0], -1)
        if layer.weight_rec is not None:
            both = np.hstack([both, layer.weight_rec])
        sets = [both] + [sc.weight for sc in shortcuts]
        e = layer.exponent
        if e is None or not _fits(sets, layer.threshold, layer.bias, int(e)):
            flat = np.concatenate([ws.reshape(-1) for ws in sets])
            e = layer_exponent(flat, float(np.max(layer.threshold)), layer.bias)
    neuron = _neuron(layer, e)
    bias = None
    if layer.bias is not None:
        bias = np.round(layer.bias * 2.0 ** e).astype(np.int64)
        fx.check_range("bias mantissa", bias, *fx.BIAS_RANGE)
    q = [fx.quantize_weights(ws, e) for ws in sets]
    if layer.kind == "input":
        block = Input(shape=layer.shape, neuron=neuron, bias=bias,
                      weight=float(layer.fields.get("input_weight") or 64.0))
    elif layer.kind == "conv":
        block = Conv(weight=q[0].reshape(layer.weight.shape), neuron=neuron, shape=layer.shape,
                     stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                     groups=layer.groups, bias=bias)
    else:
        n_in = layer.weight.shape[1]
        block = Dense(weight=q[0][:, :n_in], neuron=neuron, bias=bias,
                      weight_rec=None if layer.weight_rec is None else q[0][:, n_in:])
    return block, e, q[1:]


def quantize_float(fnet: FloatNetwork, where: str = "NIR graph"):
    """Quantise a :class:`FloatNetwork` to a :class:`Network` with the training
    quantiser (:func:`neurodeploy.export.quantize.layer_exponent`, the 8-bit weight,
    12-bit decay and 17-bit threshold rules of :mod:`neurodeploy.fixedpoint`). A layer's
    recorded exponent (neurodeploy's writer) is used when the integers fit it. Each
    shortcut waits the delay that aligns its two paths' sample steps
    (:func:`neurodeploy.network.aligned_delay`), the semantics of a graph without delays."""
    from neurodeploy import fixedpoint as fx
    from neurodeploy.network import Flatten, Input, Network, Shortcut, aligned_delay

    blocks, exponents, shortcuts = [], [], []
    for i, layer in enumerate(fnet.layers):
        w = f"{where}: layer {i}"
        if isinstance(layer, FloatFlatten):
            blocks.append(Flatten(shape=layer.shape))
            continue
        if layer.fields.get("no_neuron"):
            blocks.append(Input(shape=layer.shape, neuron=None, weight=float(layer.fields["input_weight"])))
            continue
        into = [sc for sc in fnet.shortcuts if sc.target == i]
        try:
            block, e, qs = _block(layer, into, w)
        except fx.BitWidthError as err:
            raise InputError(f"{w}: {err}") from None
        except ValueError as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"{w}: {err}") from None
        blocks.append(block)
        exponents.append(e)
        for sc, q in zip(into, qs):
            shortcuts.append(Shortcut(source=sc.source, target=i, weight=q, stride=sc.stride, padding=sc.padding,
                                      delay=aligned_delay(blocks, sc.source, i)))
    try:
        return Network(layers=tuple(blocks), input_shape=fnet.input_shape, name=fnet.name,
                       metadata={"weight_exponents": exponents, "source": "nir"}, shortcuts=tuple(shortcuts))
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None
