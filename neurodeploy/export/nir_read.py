"""NIR -> float network: :func:`nir_to_float`, a ``nir.NIRGraph`` read as the
float CUBA-LIF network its forward-Euler discretisation at ``dt`` describes
(mapping: :mod:`neurodeploy.export.nir`, ``docs/nir.md``)."""
from __future__ import annotations

from dataclasses import replace
from typing import List, Optional, Union

import numpy as np

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import (
    CURRENT_INPUTS,
    META_BIAS,
    META_BIAS_PER_CHANNEL,
    META_EXPONENT,
    META_GRADED,
    META_INPUT_BLOCK,
    META_INPUT_WEIGHT,
    META_REFRACTORY,
    UNIFORM_RTOL,
    FloatFlatten,
    FloatLayer,
    FloatNetwork,
    FloatShortcut,
    _array,
    _check_dt,
    _meta,
    _nir,
)
from neurodeploy.export.nir_graph import chain_and_shortcuts, graph_index


def _per_neuron(node, name: str, n: int, where: str) -> np.ndarray:
    a = _array(getattr(node, name)).reshape(-1)
    if a.size == 1:
        return np.full(n, a[0])
    if a.size != n:
        raise InputError(f"{where}: '{name}' has {a.size} values for {n} neurons")
    return a


def _uniform(a: np.ndarray, name: str, where: str) -> float:
    """One value for all neurons (an input layer's gain: it has no weights to fold into)."""
    v = float(a[0])
    if not np.allclose(a, v, rtol=UNIFORM_RTOL, atol=0) and not np.all(a == v):
        raise InputError(f"{where}: '{name}' differs between neurons ({a.min():g}..{a.max():g}); "
                         "it must be one value for the layer")
    return v


def per_unit(a: np.ndarray, shape, name: str, where: str):
    """A per-neuron field as Loihi holds it: one float when all neurons share it, else
    one value per entry of the first torch axis (per neuron of a dense layer, per channel
    of a conv layer, as netx's per-neuron fields); values that differ within a channel
    have no Loihi form."""
    v = float(a[0])
    if np.allclose(a, v, rtol=UNIFORM_RTOL, atol=0) or np.all(a == v):
        return v
    rows = a.reshape(int(shape[0]), -1)
    if not np.allclose(rows, rows[:, :1], rtol=UNIFORM_RTOL, atol=0):
        raise InputError(f"{where}: '{name}' differs between neurons of one channel "
                         f"({a.min():g}..{a.max():g}); Loihi's CUBA fields of a conv layer are one "
                         "value per channel")
    return rows[:, 0].copy()


def _gain(dt: float, tau: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """scale * dt / tau, with inf/inf read as 1 (r = tau/dt for an infinite tau:
    no leak, unit gain, as snnTorch writes beta = 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        g = scale * (dt / tau)
    both_inf = np.isinf(scale) & np.isinf(tau)
    return np.where(both_inf, 1.0, g)


def _decay(dt: float, tau: np.ndarray, name: str, where: str) -> np.ndarray:
    """dt / tau per neuron (the fraction lost per step, at most 1)."""
    if np.any(tau <= 0) or np.any(np.isnan(tau)):
        raise InputError(f"{where}: '{name}' must be > 0, found {tau.min():g}")
    d = dt / tau
    if np.max(d) > 1.0 + 1e-12:
        raise InputError(f"{where}: {name} = {float(tau.min()):g} is shorter than dt = {dt:g}: forward Euler "
                         f"would decay by {np.max(d):g} per step (> 1); pass the dt the graph was made with (--dt)")
    return np.minimum(d, 1.0)


def _neuron_fields(node, n: int, dt: float, where: str, nir, current_input: str = "euler"):
    """-> (current decay, voltage decay, threshold, gain, voltage bias), each per neuron."""
    v_reset = _per_neuron(node, "v_reset", n, where) if getattr(node, "v_reset", None) is not None else np.zeros(n)
    if np.any(v_reset != 0):
        raise InputError(f"{where}: v_reset must be 0 (Loihi resets v to 0), found {v_reset[v_reset != 0][0]:g}")
    thr = _per_neuron(node, "v_threshold", n, where)
    if np.any(~(thr >= 0)) or not np.all(np.isfinite(thr)):
        raise InputError(f"{where}: v_threshold must be >= 0 and finite (Loihi's vThMant is unsigned), "
                         f"found {thr.min():g}")
    r = _per_neuron(node, "r", n, where)
    v_leak = _per_neuron(node, "v_leak", n, where)
    if isinstance(node, nir.LIF):
        tau_mem = _per_neuron(node, "tau", n, where)
        current_decay, g_in = np.ones(n), np.ones(n)
        name_mem = "tau"
    else:
        tau_syn = _per_neuron(node, "tau_syn", n, where)
        tau_mem = _per_neuron(node, "tau_mem", n, where)
        current_decay = _decay(dt, tau_syn, "tau_syn", where)
        w_in = _per_neuron(node, "w_in", n, where)
        g_in = _gain(dt, tau_syn, w_in) if current_input == "euler" else w_in
        name_mem = "tau_mem"
    voltage_decay = _decay(dt, tau_mem, name_mem, where)
    g_v = _gain(dt, tau_mem, r)
    v_bias = np.where(v_leak == 0, 0.0, _gain(dt, tau_mem, v_leak))
    gain = g_in * g_v
    if not np.all(np.isfinite(gain)) or not np.all(np.isfinite(v_bias)):
        raise InputError(f"{where}: r, w_in or v_leak give a non-finite gain at dt = {dt:g}")
    return current_decay, voltage_decay, thr, gain, v_bias


def _conv_geometry(node, where: str):
    def pair(v, name):
        if isinstance(v, str):
            raise InputError(f"{where}: {name} '{v}' must be given as integers")
        a = np.asarray(v).reshape(-1).astype(np.int64)
        return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))

    pad = node.padding
    kh, kw = np.asarray(node.weight.shape[-2:])
    if isinstance(pad, (str, bytes)):
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad == "valid":
            pad = (0, 0)
        elif pad == "same" and kh % 2 and kw % 2 and pair(node.stride, "stride") == (1, 1):
            pad = (int(kh // 2), int(kw // 2))
        else:
            raise InputError(f"{where}: padding '{pad}' needs odd kernels and stride 1")
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    return pair(node.stride, "stride"), pair(pad, "padding"), pair(node.dilation, "dilation"), groups


def _conv_out(shape, weight, stride, padding, dilation):
    _, h, w = shape
    kh, kw = weight.shape[-2:]
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return (int(weight.shape[0]), int(oh), int(ow))


def _synapse(nir, sname: str, syn, shape, where: str):
    """A synapse node fed by ``shape`` -> (kind, weight, bias per neuron or None,
    conv geometry or None, output shape)."""
    weight = _array(syn.weight)
    syn_bias = _array(syn.bias).reshape(-1) if getattr(syn, "bias", None) is not None else None
    if isinstance(syn, nir.Conv2d):
        if len(shape) != 3:
            raise InputError(f"{where}: Conv2d '{sname}' needs a (C, H, W) input, got shape {shape}")
        if weight.ndim != 4 or weight.shape[1] * int(np.asarray(syn.groups).reshape(-1)[0]) != shape[0]:
            raise InputError(f"{where}: Conv2d '{sname}' weight {weight.shape} does not fit input {shape}")
        geometry = _conv_geometry(syn, f"{where}: Conv2d '{sname}'")
        out_shape = _conv_out(shape, weight, *geometry[:3])
        if syn_bias is not None:
            if syn_bias.size != out_shape[0]:
                raise InputError(f"{where}: Conv2d '{sname}' bias has {syn_bias.size} values "
                                 f"for {out_shape[0]} channels")
            syn_bias = np.repeat(syn_bias, out_shape[1] * out_shape[2])
        return "conv", weight, syn_bias, geometry, out_shape
    if weight.ndim != 2:
        raise InputError(f"{where}: {type(syn).__name__} '{sname}' weight must be 2-D, got {weight.shape}")
    if weight.shape[1] != int(np.prod(shape)):
        raise InputError(f"{where}: {type(syn).__name__} '{sname}' takes {weight.shape[1]} inputs, "
                         f"the previous node gives {int(np.prod(shape))} (shape {shape})")
    out_shape = (int(weight.shape[0]),)
    if syn_bias is not None and syn_bias.size != out_shape[0]:
        raise InputError(f"{where}: Affine '{sname}' bias has {syn_bias.size} values for {out_shape[0]}")
    return "dense", weight, syn_bias, None, out_shape


def _recurrent_weight(nodes, rec_name: str, kind: str, n: int, syn_bias, where: str, w: str):
    """A recurrent synapse's weight (n, n) and the synapse bias with its bias added."""
    rec = nodes[rec_name]
    weight_rec = _array(rec.weight)
    if weight_rec.shape != (n, n):
        raise InputError(f"{where}: recurrent '{rec_name}' weight {weight_rec.shape} != ({n}, {n})")
    if getattr(rec, "bias", None) is not None and np.any(_array(rec.bias)):
        # a constant on the recurrent path enters the current like the synapse's bias
        syn_bias = (np.zeros(n) if syn_bias is None else syn_bias) + _array(rec.bias).reshape(-1)
    if kind != "dense":
        raise InputError(f"{w}: recurrent loops are supported on dense layers only")
    return weight_rec, syn_bias


def _scale_rows(weight, scale, conv: bool, w: str):
    """Each output neuron's weights times its gain (a conv kernel: one gain per channel)."""
    rows = scale.reshape(weight.shape[0], -1)
    if conv:
        if not np.allclose(rows, rows[:, :1], rtol=UNIFORM_RTOL, atol=0):
            raise InputError(f"{w}: gains (w_in dt/tau_syn r dt/tau_mem) differ within a channel; a conv "
                             "layer shares its kernel across positions")
        return weight * rows[:, :1, None, None]
    return weight * scale[:, None]


def _shortcut(nir, ctx, src: str, syn: Optional[str], tgt_shape, w: str):
    """A shortcut edge into the neuron node being read -> (source layer index, float
    weight before the target's gains, stride, padding, bias per target neuron or None)."""
    nodes = ctx["nodes"]
    if src not in ctx["layer_of"]:
        what = "the network's Input" if src == ctx["input_name"] else f"{type(nodes[src]).__name__} '{src}'"
        raise InputError(f"{w}: shortcut '{syn or src}' starts at {what}; a shortcut joins a layer of "
                         "neurons to a later one (put a neuron layer before it)")
    source, src_shape = ctx["layer_of"][src]
    n_src, n_tgt = int(np.prod(src_shape)), int(np.prod(tgt_shape))
    where = f"{w}: shortcut '{syn or src}'"
    if syn is None:  # a direct edge: one unit of current per spike
        if n_src != n_tgt:
            raise InputError(f"{where}: a direct edge from {src_shape} into {tuple(tgt_shape)} needs equal sizes")
        if len(src_shape) == 3 and tuple(src_shape) == tuple(tgt_shape):
            return source, np.eye(src_shape[0]).reshape(src_shape[0], src_shape[0], 1, 1), (1, 1), (0, 0), None
        return source, np.eye(n_tgt), (1, 1), (0, 0), None
    node = nodes[syn]
    if isinstance(node, nir.Conv2d):
        kind, weight, bias, geometry, out_shape = _synapse(nir, syn, node, tuple(src_shape), where)
        if geometry[2] != (1, 1) or geometry[3] != 1:
            raise InputError(f"{where}: a conv shortcut has dilation 1 and one group, found "
                             f"dilation {geometry[2]}, groups {geometry[3]}")
        stride, padding = geometry[:2]
    else:
        kind, weight, bias, _, out_shape = _synapse(nir, syn, node, (n_src,), where)
        stride, padding = (1, 1), (0, 0)
    if tuple(out_shape) != tuple(tgt_shape) and not (kind == "dense" and out_shape[0] == n_tgt):
        raise InputError(f"{where}: gives shape {tuple(out_shape)}, the neurons it feeds have {tuple(tgt_shape)}")
    return source, weight, stride, padding, bias


def _neuron_layer(nir, ctx, cur: str, pending, shape, w: str):
    """The FloatLayer of neuron node ``cur`` fed by ``pending`` (synapse name and node,
    or None for an input layer) from a node of ``shape``, and its shortcuts as
    (source layer index, weight, stride, padding)."""
    nodes, where = ctx["nodes"], ctx["where"]
    node = nodes[cur]
    if pending is None:
        kind, weight, syn_bias, geometry, out_shape = "input", None, None, None, shape
    else:
        kind, weight, syn_bias, geometry, out_shape = _synapse(nir, pending[0], pending[1], shape, where)
    n = int(np.prod(out_shape))
    cd, vd, thr, gain, v_bias = _neuron_fields(node, n, ctx["dt"], w, nir, ctx["current_input"])
    lif = isinstance(node, nir.LIF)
    unit = dict(current_decay=per_unit(cd, out_shape, "tau_syn", w),
               voltage_decay=per_unit(vd, out_shape, "tau" if lif else "tau_mem", w),
               threshold=per_unit(thr, out_shape, "v_threshold", w))
    weight_rec = None
    # Conv2d's bias is per channel (and the writer records netx's per-channel form): keep it
    channel_bias = kind == "conv" and ((syn_bias is not None and not np.any(v_bias))
                                       or bool(_meta(node, META_BIAS_PER_CHANNEL)))
    if cur in ctx["recurrent"]:
        weight_rec, syn_bias = _recurrent_weight(nodes, ctx["recurrent"][cur], kind, n, syn_bias, where, w)
    shortcuts = [_shortcut(nir, ctx, src, syn, out_shape, w) for src, syn in ctx["shortcuts"].get(cur, ())]
    for sc in shortcuts:
        if sc[4] is not None:  # a shortcut's bias enters the current like the synapse's
            syn_bias = sc[4] if syn_bias is None else syn_bias + sc[4]
    bias = v_bias
    if syn_bias is not None and np.any(syn_bias):
        if np.any(cd[syn_bias != 0] < 1.0):
            raise InputError(f"{w}: the synapse's bias enters a decaying current (tau_syn > dt); "
                             "Loihi's bias enters the voltage, so it has no exact Loihi form")
        bias = bias + gain * syn_bias
    if kind == "input":
        g = _uniform(gain, "input gain (w_in dt/tau_syn r dt/tau_mem)", w)
        unit["threshold"], bias = unit["threshold"] / g, bias / g
    else:
        weight = _scale_rows(weight, gain, kind == "conv", w)
        if weight_rec is not None:
            weight_rec = weight_rec * gain[:, None]
    shortcuts = [(s, _scale_rows(sw, gain, sw.ndim == 4, w), st, pd) for s, sw, st, pd, _ in shortcuts]
    if channel_bias and np.any(bias):
        per = bias.reshape(out_shape[0], -1)
        if np.all(per == per[:, :1]):
            bias = per[:, 0].copy()
    fields = {k: _meta(node, m) for k, m in (("refractory_delay", META_REFRACTORY),
                                             ("graded_spike", META_GRADED),
                                             ("input_weight", META_INPUT_WEIGHT)) if _meta(node, m) is not None}
    if kind == "input" and ctx["input_meta"].get(META_INPUT_BLOCK) is not None:
        fields.setdefault("input_weight", _meta(ctx["input_node"], META_INPUT_WEIGHT))
    stride, padding, dilation, groups = geometry if kind == "conv" else ((1, 1), (0, 0), (1, 1), 1)
    exponent = _meta(node, META_EXPONENT)
    layer = FloatLayer(kind=kind, weight=weight, shape=tuple(out_shape),
                       **unit,
                       bias=bias if np.any(bias) or _meta(node, META_BIAS) else None,
                       weight_rec=weight_rec, stride=stride, padding=padding, dilation=dilation, groups=groups,
                       exponent=None if exponent is None else int(exponent), fields=fields)
    return layer, shortcuts


def _chain_step(nir, ctx, layers, state, cur: str) -> bool:
    """Read chain node ``cur`` into ``layers`` (and its shortcuts into
    ``state["shortcuts"]``); ``state``: the shape so far, the synapse awaiting its
    neuron and whether a synapse was seen. False at Output."""
    node = ctx["nodes"][cur]
    w = f"{ctx['where']}: node '{cur}' ({type(node).__name__})"
    pending = state["pending"]
    if isinstance(node, nir.Output):
        if pending is not None:
            raise InputError(f"{w}: synapse '{pending[0]}' is not followed by a neuron node")
        return False
    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten)) and pending is not None:
        raise InputError(f"{w}: follows synapse '{pending[0]}' without a neuron between them")
    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
        if state["first_synapse"] and isinstance(node, (nir.Affine, nir.Linear)) and not layers:
            # exporters that keep the batch dimension write Input shapes like (1, N)
            n_in = int(_array(node.weight).shape[-1])
            while len(state["shape"]) > 1 and state["shape"][0] == 1 and int(np.prod(state["shape"])) == n_in:
                state["shape"] = state["shape"][1:]
        state["first_synapse"] = False
        state["pending"] = (cur, node)
        return True
    if isinstance(node, nir.Flatten):
        if len(state["shape"]) > 1:
            layers.append(FloatFlatten(shape=state["shape"]))
            state["shape"] = (int(np.prod(state["shape"])),)
        if state["last"] is not None:  # a shortcut from a flatten leaves the neurons before it
            ctx["layer_of"][cur] = ctx["layer_of"][state["last"]]
        return True
    if pending is None and layers:
        raise InputError(f"{w}: a neuron node must follow a synapse (Affine, Linear, Conv2d)")
    layer, shortcuts = _neuron_layer(nir, ctx, cur, pending, state["shape"], w)
    layers.append(layer)
    ctx["layer_of"][cur] = (len(layers) - 1, layer.shape)
    state["shortcuts"] += [FloatShortcut(s, len(layers) - 1, *rest) for s, *rest in shortcuts]
    state["shape"], state["pending"], state["last"] = layer.shape, None, cur
    return True


def _input_shape(ctx, layers):
    """The network's input shape (torch order) from the Input node and the first layer;
    an input block without neurons (the writer's metadata) goes first in ``layers``
    (-> shape, whether it was added)."""
    where, input_node = ctx["where"], ctx["input_node"]
    if not any(isinstance(l, FloatLayer) for l in layers):
        raise InputError(f"{where}: no neuron layer between Input and Output")
    in_shape = tuple(int(s) for s in np.asarray(input_node.input_type["input"]).reshape(-1))
    first = next(l for l in layers if isinstance(l, FloatLayer))
    if first.kind == "dense" and int(np.prod(in_shape)) == first.weight.shape[1]:
        in_shape = (int(first.weight.shape[1]),) if len(in_shape) > 1 and in_shape[0] == 1 else in_shape
    elif first.kind == "input":
        in_shape = first.shape
    if int(np.prod(in_shape)) == 0:
        raise InputError(f"{where}: the Input node has no shape")
    if ctx["input_meta"].get(META_INPUT_BLOCK) is not None and first.kind != "input":
        layers.insert(0, FloatLayer(kind="input", weight=None, current_decay=0.0, voltage_decay=0.0,
                                    threshold=0.0, shape=in_shape,
                                    fields={"input_weight": _meta(input_node, META_INPUT_WEIGHT),
                                            "no_neuron": True}))
        return in_shape, True
    return in_shape, False


def nir_to_float(graph, dt: float = 1.0, name: str = "network", where: str = "NIR graph",
                 current_input: str = "euler") -> FloatNetwork:
    """The float CUBA-LIF network a NIR graph describes at time step ``dt`` (forward
    Euler; :mod:`neurodeploy.export.nir`). A chain Input -> [synapse -> neuron |
    Flatten]* -> Output, where a synapse is Affine, Linear or Conv2d and a neuron
    CubaLIF or LIF; a neuron right after Input is an input layer; a neuron whose output
    returns to its own input through a Linear/Affine is recurrent (netx dense_rec);
    further synapses (or direct edges) from a neuron node into a later one are
    residual shortcuts (:mod:`neurodeploy.export.nir_graph`). ``current_input``: see
    :data:`CURRENT_INPUTS` ("jump" for graphs from Norse's LIFCell)."""
    nir = _nir()
    dt = _check_dt(dt)
    if current_input not in CURRENT_INPUTS:
        raise InputError(f"current_input must be one of {', '.join(CURRENT_INPUTS)}, got {current_input!r}")
    if not isinstance(graph, nir.NIRGraph):
        raise InputError(f"{where}: expected a NIRGraph, got {type(graph).__name__}")
    gi = graph_index(nir, graph, where)
    chain, shortcut_edges = chain_and_shortcuts(nir, gi, where)
    input_node = gi.nodes[gi.input]
    ctx = dict(nodes=gi.nodes, recurrent=gi.recurrent, shortcuts=shortcut_edges, layer_of={},
               input_name=gi.input, where=where, dt=dt, current_input=current_input,
               input_node=input_node, input_meta=getattr(input_node, "metadata", None) or {})
    shape = tuple(int(s) for s in np.asarray(input_node.input_type["input"]).reshape(-1))
    state = dict(shape=shape, pending=None, first_synapse=True, last=None, shortcuts=[])
    layers: List[Union[FloatLayer, FloatFlatten]] = []
    for cur in chain:
        if not _chain_step(nir, ctx, layers, state, cur):
            break
    in_shape, shifted = _input_shape(ctx, layers)
    shortcuts = tuple(replace(sc, source=sc.source + shifted, target=sc.target + shifted)
                      for sc in state["shortcuts"])
    return FloatNetwork(layers=tuple(layers), input_shape=in_shape, name=name, shortcuts=shortcuts)
