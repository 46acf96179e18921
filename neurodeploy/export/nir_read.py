"""NIR -> float network: :func:`nir_to_float`, a ``nir.NIRGraph`` read as the
float CUBA-LIF network its forward-Euler discretisation at ``dt`` describes
(mapping: :mod:`neurodeploy.export.nir`, ``docs/nir.md``)."""
from __future__ import annotations

from typing import Dict, List, Union

import numpy as np

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import (
    CURRENT_INPUTS, META_BIAS, META_EXPONENT, META_GRADED, META_INPUT_BLOCK, META_INPUT_WEIGHT,
    META_REFRACTORY, SUPPORTED_NODES, UNIFORM_RTOL, FloatFlatten, FloatLayer, FloatNetwork,
    _array, _check_dt, _meta, _nir,
)


def _inline_subgraphs(nir, graph, prefix: str = ""):
    """Nested NIRGraph nodes (snnTorch's RLeaky/RSynaptic before nirtorch flattens
    them) inlined -> (nodes, edges) with dotted names."""
    nodes, edges, ports = {}, [], {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline_subgraphs(nir, node, full + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise InputError(f"NIR subgraph '{full}': needs exactly one Input and one Output node")
            first = [b for a, b in sub_edges if a == f"{full}.{ins[0]}"]
            last = [a for a, b in sub_edges if b == f"{full}.{outs[0]}"]
            for k in (ins[0], outs[0]):
                sub_nodes.pop(f"{full}.{k}")
            sub_edges = [(a, b) for a, b in sub_edges
                         if a != f"{full}.{ins[0]}" and b != f"{full}.{outs[0]}"]
            nodes.update(sub_nodes)
            edges += sub_edges
            ports[full] = (first, last)
        else:
            nodes[full] = node
    for a, b in graph.edges:
        srcs = ports[prefix + a][1] if prefix + a in ports else [prefix + a]
        dsts = ports[prefix + b][0] if prefix + b in ports else [prefix + b]
        edges += [(s, d) for s in srcs for d in dsts]
    return nodes, edges




def _per_neuron(node, name: str, n: int, where: str) -> np.ndarray:
    a = _array(getattr(node, name)).reshape(-1)
    if a.size == 1:
        return np.full(n, a[0])
    if a.size != n:
        raise InputError(f"{where}: '{name}' has {a.size} values for {n} neurons")
    return a


def _uniform(a: np.ndarray, name: str, where: str) -> float:
    """One value for a layer (Loihi's decays and thresholds are per layer)."""
    v = float(a[0])
    if not np.allclose(a, v, rtol=UNIFORM_RTOL, atol=0) and not np.all(a == v):
        raise InputError(f"{where}: '{name}' differs between neurons ({a.min():g}..{a.max():g}); "
                         "Loihi's CUBA neuron fields are one value per layer")
    return v


def _gain(dt: float, tau: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """scale * dt / tau, with inf/inf read as 1 (r = tau/dt for an infinite tau:
    no leak, unit gain, as snnTorch writes beta = 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        g = scale * (dt / tau)
    both_inf = np.isinf(scale) & np.isinf(tau)
    return np.where(both_inf, 1.0, g)


def _decay(dt: float, tau: np.ndarray, name: str, where: str) -> float:
    if np.any(tau <= 0) or np.any(np.isnan(tau)):
        raise InputError(f"{where}: '{name}' must be > 0, found {tau.min():g}")
    d = _uniform(dt / tau, name, where)
    if d > 1.0 + 1e-12:
        raise InputError(f"{where}: {name} = {float(tau[0]):g} is shorter than dt = {dt:g}: forward Euler "
                         f"would decay by {d:g} per step (> 1); pass the dt the graph was made with (--dt)")
    return min(d, 1.0)


def _neuron_fields(node, n: int, dt: float, where: str, nir, current_input: str = "euler"):
    """-> (current_decay, voltage_decay, threshold per neuron, gain per neuron,
    voltage bias per neuron, synapse-bias gain per neuron)."""
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
        current_decay, g_in = 1.0, np.ones(n)
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


def _graph_index(nir, graph, where: str):
    """-> (nodes, succ, pred, input name, recurrent: neuron -> its recurrent synapse)."""
    nodes, edges = _inline_subgraphs(nir, graph)
    for k, node in nodes.items():
        t = type(node).__name__
        if t not in SUPPORTED_NODES:
            raise InputError(f"{where}: node '{k}' of type {t} is not supported "
                             f"(supported: {', '.join(SUPPORTED_NODES)})")
    succ: Dict[str, List[str]] = {k: [] for k in nodes}
    pred: Dict[str, List[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise InputError(f"{where}: edge ({a!r}, {b!r}) names a node the graph does not have")
        succ[a].append(b)
        pred[b].append(a)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise InputError(f"{where}: needs exactly one Input node, found {len(inputs)}")
    # recurrent synapses: X in {Linear, Affine} with edges neuron -> X -> neuron
    recurrent: Dict[str, str] = {}
    for k, node in nodes.items():
        if isinstance(node, (nir.Linear, nir.Affine)) and len(pred[k]) == 1 and succ[k] == pred[k] \
                and isinstance(nodes[pred[k][0]], (nir.CubaLIF, nir.LIF)):
            recurrent[pred[k][0]] = k
    return nodes, succ, pred, inputs[0], recurrent


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


def _fold(kind, weight, weight_rec, thr, gain, bias, out_shape, w: str):
    """Fold the Euler gains into the weights; one threshold per layer (each neuron's
    row divided by its threshold when they differ) -> (weight, weight_rec, threshold, bias)."""
    n = int(np.prod(out_shape))
    if kind == "input":
        g = _uniform(gain, "input gain (w_in dt/tau_syn r dt/tau_mem)", w)
        th = thr / g
        scale = np.ones(n)
        bias = bias / g
    else:
        th = thr
        scale = gain
    if np.allclose(th, th[0], rtol=UNIFORM_RTOL, atol=0):
        threshold = float(th[0])
    else:
        if np.any(th == 0):
            raise InputError(f"{w}: v_threshold is 0 for some neurons and not others; Loihi's "
                             "threshold is one value per layer")
        scale, bias, threshold = scale / th, bias / th, 1.0
        if kind == "input":
            raise InputError(f"{w}: an input layer needs one threshold for all neurons")
    if weight is not None:
        rows = scale.reshape(out_shape[0], -1)
        if kind == "conv":
            if not np.allclose(rows, rows[:, :1], rtol=UNIFORM_RTOL, atol=0):
                raise InputError(f"{w}: gains or thresholds differ within a channel; a conv layer "
                                 "shares its kernel across positions")
            weight = weight * rows[:, :1, None, None]
        else:
            weight = weight * scale[:, None]
        if weight_rec is not None:
            weight_rec = weight_rec * scale[:, None]
    return weight, weight_rec, threshold, bias


def _neuron_layer(nir, ctx, cur: str, pending, shape, w: str) -> FloatLayer:
    """The FloatLayer of neuron node ``cur`` fed by ``pending`` (synapse name and node,
    or None for an input layer) from a node of ``shape``."""
    nodes, where = ctx["nodes"], ctx["where"]
    node = nodes[cur]
    if pending is None:
        kind, weight, syn_bias, geometry, out_shape = "input", None, None, None, shape
    else:
        kind, weight, syn_bias, geometry, out_shape = _synapse(nir, pending[0], pending[1], shape, where)
    n = int(np.prod(out_shape))
    cd, vd, thr, gain, v_bias = _neuron_fields(node, n, ctx["dt"], w, nir, ctx["current_input"])
    weight_rec = None
    channel_bias = kind == "conv" and syn_bias is not None and not np.any(v_bias)
    # (Conv2d's bias is per channel: keep netx's per-channel form)
    if cur in ctx["recurrent"]:
        weight_rec, syn_bias = _recurrent_weight(nodes, ctx["recurrent"][cur], kind, n, syn_bias, where, w)
    bias = v_bias
    if syn_bias is not None and np.any(syn_bias):
        if cd < 1.0:
            raise InputError(f"{w}: the synapse's bias enters a decaying current (tau_syn > dt); "
                             "Loihi's bias enters the voltage, so it has no exact Loihi form")
        bias = bias + gain * syn_bias
    exponent = _meta(node, META_EXPONENT)
    fields = {k: _meta(node, m) for k, m in (("refractory_delay", META_REFRACTORY),
                                             ("graded_spike", META_GRADED),
                                             ("input_weight", META_INPUT_WEIGHT)) if _meta(node, m) is not None}
    weight, weight_rec, threshold, bias = _fold(kind, weight, weight_rec, thr, gain, bias, out_shape, w)
    if kind == "conv":
        stride, padding, dilation, groups = geometry
    else:
        stride, padding, dilation, groups = (1, 1), (0, 0), (1, 1), 1
    if kind == "input" and ctx["input_meta"].get(META_INPUT_BLOCK) is not None:
        fields.setdefault("input_weight", _meta(ctx["input_node"], META_INPUT_WEIGHT))
    if channel_bias and np.any(bias):
        per = bias.reshape(out_shape[0], -1)
        if np.all(per == per[:, :1]):
            bias = per[:, 0].copy()
    return FloatLayer(kind=kind, weight=weight, current_decay=cd, voltage_decay=vd,
                      threshold=threshold, shape=tuple(out_shape),
                      bias=bias if np.any(bias) or _meta(node, META_BIAS) else None,
                      weight_rec=weight_rec,
                      stride=stride, padding=padding, dilation=dilation, groups=groups,
                      exponent=None if exponent is None else int(exponent), fields=fields)


def _chain_step(nir, ctx, layers, state, cur: str) -> bool:
    """Read chain node ``cur`` into ``layers``; ``state``: the shape so far, the
    synapse awaiting its neuron and whether a synapse was seen. False at Output."""
    node = ctx["nodes"][cur]
    w = f"{ctx['where']}: node '{cur}' ({type(node).__name__})"
    pending = state["pending"]
    fwd_preds = [p for p in ctx["pred"][cur] if p != ctx["recurrent"].get(cur)]
    if len(fwd_preds) != 1:
        raise InputError(f"{w}: has {len(fwd_preds)} inputs; only chains of layers are supported")
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
        return True
    if pending is None and layers:
        raise InputError(f"{w}: a neuron node must follow a synapse (Affine, Linear, Conv2d)")
    layer = _neuron_layer(nir, ctx, cur, pending, state["shape"], w)
    layers.append(layer)
    state["shape"], state["pending"] = layer.shape, None
    return True


def _input_shape(ctx, layers):
    """The network's input shape (torch order) from the Input node and the first layer;
    an input block without neurons (the writer's metadata) goes first in ``layers``."""
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
    return in_shape


def nir_to_float(graph, dt: float = 1.0, name: str = "network", where: str = "NIR graph",
                 current_input: str = "euler") -> FloatNetwork:
    """The float CUBA-LIF network a NIR graph describes at time step ``dt`` (forward
    Euler; module docstring). A chain Input -> [synapse -> neuron | Flatten]* -> Output,
    where a synapse is Affine, Linear or Conv2d and a neuron CubaLIF or LIF; a neuron
    right after Input is an input layer; a neuron whose output returns to its own
    input through a Linear/Affine is recurrent (netx dense_rec). ``current_input``:
    see :data:`CURRENT_INPUTS` ("jump" for graphs from Norse's LIFCell)."""
    nir = _nir()
    dt = _check_dt(dt)
    if current_input not in CURRENT_INPUTS:
        raise InputError(f"current_input must be one of {', '.join(CURRENT_INPUTS)}, got {current_input!r}")
    if not isinstance(graph, nir.NIRGraph):
        raise InputError(f"{where}: expected a NIRGraph, got {type(graph).__name__}")
    nodes, succ, pred, input_name, recurrent = _graph_index(nir, graph, where)
    input_node = nodes[input_name]
    ctx = dict(nodes=nodes, pred=pred, recurrent=recurrent, where=where, dt=dt, current_input=current_input,
               input_node=input_node, input_meta=getattr(input_node, "metadata", None) or {})
    shape = tuple(int(s) for s in np.asarray(input_node.input_type["input"]).reshape(-1))
    state = dict(shape=shape, pending=None, first_synapse=True)
    layers: List[Union[FloatLayer, FloatFlatten]] = []
    cur, seen = input_name, set()
    while True:
        nxt = [s for s in succ[cur] if s != recurrent.get(cur)]
        if len(nxt) != 1:
            raise InputError(f"{where}: node '{cur}' feeds {len(nxt)} nodes; only chains of layers "
                             "(with recurrent loops) are supported")
        cur = nxt[0]
        if cur in seen:
            raise InputError(f"{where}: node '{cur}' is reached twice (a loop that is not a recurrent layer)")
        seen.add(cur)
        if not _chain_step(nir, ctx, layers, state, cur):
            break
    stray = sorted(set(nodes) - seen - set(recurrent.values()) - {input_name})
    if stray:
        raise InputError(f"{where}: node '{stray[0]}' is not on the chain from Input to Output")
    in_shape = _input_shape(ctx, layers)
    return FloatNetwork(layers=tuple(layers), input_shape=in_shape, name=name)
