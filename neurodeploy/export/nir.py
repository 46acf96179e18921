"""NIR (Neuromorphic Intermediate Representation, PyPI ``nir``) in and out.

NIR describes a spiking network in continuous time: each neuron node carries
time constants and gains, and a back end discretises the equations with its own
time step. This module maps NIR's nodes to the integer network description
(:class:`neurodeploy.network.Network`) and back, with an explicit ``dt``:

- out: :func:`network_to_nir` (``Network -> nir.NIRGraph``), :func:`write_nir`;
- in: :func:`nir_to_float` (``nir.NIRGraph -> FloatNetwork``, the graph's
  equations discretised with forward Euler at ``dt``, in the float CUBA-LIF form
  neurodeploy trains), then :func:`quantize_float` with the training quantiser
  (:mod:`neurodeploy.export.quantize`): :func:`nir_to_network`, :func:`read_nir`.

Discretisation at ``dt`` (forward Euler, as snnTorch's exporter and importer and
Norse's importer read NIR), for a ``CubaLIF`` node::

    I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in x[t]
    v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) (v_leak + r I[t])
    z[t] = v[t] > v_threshold;   v[t] = v_reset where z[t]  (v_reset must be 0)

which is Loihi's CUBA-LIF (:mod:`neurodeploy.fixedpoint`) with
``iDecay = 4096 dt/tau_syn``, ``vDecay = 4096 dt/tau_mem`` and the input gains
``(dt/tau_syn) w_in (dt/tau_mem) r`` folded into the weights. ``LIF`` is the same
without a current (``iDecay = 4096``). The full mapping, and what NIR cannot
express (Loihi's rounding toward zero, the 24-bit wrap of u, saturation of v),
is in ``docs/nir.md``.

The writer records each layer's weight exponent in the neuron node's
``metadata`` (``loihi_weight_exponent``) with the fields NIR has no place for
(``loihi_refractory_delay``, ``loihi_graded_spike``, the input block's
``loihi_input_weight``), so that ``.net -> .nir -> .net`` reproduces every
integer field. Graphs from other libraries have no such metadata: their
exponents are chosen by the training quantiser's rule.

Needs numpy, h5py and ``nir`` only; no torch import here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from neurodeploy.errors import InputError, MissingDependencyError

#: NIR node types the importer reads
SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "CubaLIF", "LIF")
#: metadata keys the writer puts on neuron nodes
META_EXPONENT = "loihi_weight_exponent"
META_REFRACTORY = "loihi_refractory_delay"
META_GRADED = "loihi_graded_spike"
META_INPUT_WEIGHT = "loihi_input_weight"
META_INPUT_BLOCK = "loihi_input_block"
META_BIAS = "loihi_bias"  # 1: the block has a bias (an all-zero one included)
#: how a CubaLIF's input enters its current: "euler" (I += (dt/tau_syn) w_in x, the
#: forward-Euler reading; snnTorch's and Norse's importers) or "jump" (I += w_in x, as
#: Norse's LIFCell computes and its exporter writes the node)
CURRENT_INPUTS = ("euler", "jump")
#: relative tolerance within which per-neuron parameters count as one value
UNIFORM_RTOL = 1e-9


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a main dependency
        raise MissingDependencyError("the 'nir' package is not installed (pip install nir)") from None
    return nir


# --- the float network an imported graph describes --------------------------
@dataclass(frozen=True)
class FloatLayer:
    """One layer of CUBA-LIF neurons in neurodeploy's float form
    (:mod:`neurodeploy.train.neuron`)::

        u[t] = (1 - current_decay) u[t-1] + W x[t] + W_rec s[t-1]
        v[t] = (1 - voltage_decay) v[t-1] + u[t] + bias
        s[t] = v[t] > threshold;   v[t] = 0 where s[t]

    kind: 'input' (x feeds u directly, W = identity), 'dense' or 'conv'.
    weight: dense (out, in) or conv (out, in/groups, kH, kW), weight units; None for input.
    current_decay, voltage_decay: fraction lost per step (0..1; 12 bit on chip).
    threshold: in weight units (> 0).
    bias: voltage bias, weight units, per neuron (flattened in torch order) or, for a
        conv layer, per channel (as netx stores it); None without one.
    weight_rec: (out, out) recurrent weights or None.
    shape: the layer's output shape, torch order.
    stride, padding, dilation, groups: conv geometry (H, W).
    exponent: the weight exponent recorded by neurodeploy's writer, or None.
    fields: netx fields NIR cannot hold (refractory delay, graded spike, input weight).
    """

    kind: str
    weight: Optional[np.ndarray]
    current_decay: float
    voltage_decay: float
    threshold: float
    shape: Tuple[int, ...]
    bias: Optional[np.ndarray] = None
    weight_rec: Optional[np.ndarray] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    exponent: Optional[int] = None
    fields: dict = field(default_factory=dict, compare=False)

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class FloatFlatten:
    """Flatten of a (C, H, W) output to a vector, torch order."""

    shape: Tuple[int, ...]


@dataclass(frozen=True)
class FloatNetwork:
    """Layers (and flattens) in order; ``input_shape`` in torch order."""

    layers: Tuple[Union[FloatLayer, FloatFlatten], ...]
    input_shape: Tuple[int, ...]
    name: str = "network"


# --- out: Network -> NIR ------------------------------------------------------
def _exponent_for(threshold) -> int:
    """The power of two the writer divides a layer's integers by: thresholds land in
    [1, 2) (weights and bias follow), a float image in the units most libraries train in."""
    t = float(np.max(threshold))
    return int(np.floor(np.log2(t))) if t > 0 else 0


def _field(value, shape) -> np.ndarray:
    """A neuron field (one value, or one per neuron) as a float64 array of ``shape``."""
    a = np.asarray(value, dtype=np.float64)
    return np.full(shape, a.item()) if a.size == 1 else a.reshape(shape).copy()


def _time_constant(decay: np.ndarray, dt: float) -> np.ndarray:
    """tau = 4096 dt / decay (inf for decay 0: no leak)."""
    with np.errstate(divide="ignore"):
        return np.where(decay == 0, np.inf, 4096.0 * dt / np.where(decay == 0, 1.0, decay))


def _neuron_node(nir, neuron, shape, e: int, dt: float, bias, where: str, has_synapse: bool, extra=None):
    """The NIR neuron node for a CUBA neuron at scale 2**-e; returns (node, synapse bias or None).
    A bias goes to the synapse node when the current does not persist (iDecay = 4096: a
    current bias is then a voltage bias), else to v_leak (needs vDecay > 0).

    r = tau_mem/dt and w_in = tau_syn/dt (snnTorch's convention) make both Euler gains 1."""
    from neurodeploy.network import CubaNeuron

    if not isinstance(neuron, CubaNeuron):
        raise InputError(f"{where}: {type(neuron).__name__} neurons have no NIR form "
                         "(NIR describes CubaLIF/LIF; sigma-delta is not among its primitives)")
    i_decay = _field(neuron.current_decay, shape)
    v_decay = _field(neuron.voltage_decay, shape)
    tau_mem = _time_constant(v_decay, dt)
    r = tau_mem / dt
    threshold = _field(neuron.threshold, shape) * 2.0 ** -e
    no_current = bool(np.all(i_decay == 4096))
    metadata = {META_EXPONENT: int(e), META_REFRACTORY: int(neuron.refractory_delay),
                META_GRADED: int(bool(neuron.graded_spike)), META_BIAS: int(bias is not None),
                **(extra or {})}
    b = None
    if bias is not None:
        b = np.asarray(bias, np.float64).reshape(-1) * 2.0 ** -e
        if len(shape) == 3 and b.size == shape[0]:  # a conv bias per channel (netx broadcasts it)
            b = np.repeat(b, shape[1] * shape[2])
        b = b.reshape(shape)
    synapse_bias, v_leak = None, np.zeros(shape)
    if b is not None and np.any(b):
        if no_current and has_synapse:
            synapse_bias = b  # u = a each step: a bias on the current is the same as on v
        elif np.all(v_decay > 0):
            v_leak = b * (tau_mem / dt)  # (dt/tau_mem) v_leak = bias
        else:
            raise InputError(f"{where}: a bias with vDecay = 0 and iDecay < 4096 has no NIR form "
                             "(v_leak would be infinite and a current bias decays)")
    if no_current:
        node = nir.LIF(tau=tau_mem, r=r, v_leak=v_leak, v_threshold=threshold,
                       v_reset=np.zeros(shape), metadata=metadata)
    else:
        tau_syn = _time_constant(i_decay, dt)
        node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak,
                           v_threshold=threshold, v_reset=np.zeros(shape), w_in=tau_syn / dt,
                           metadata=metadata)
    return node, synapse_bias


def _shortcut_node(nir, net, sc, e: int, where: str):
    """A residual shortcut as a NIR Conv2d / Linear node in its target's float units.
    NIR's graph has no synaptic delays: a shortcut whose delay aligns the sample
    steps of its two paths (the trained model's semantics) is exported, others not."""
    from neurodeploy.network import aligned_delay

    if sc.delay != aligned_delay(net.layers, sc.source, sc.target):
        raise InputError(f"{where}: delay {sc.delay} is not the aligned one; NIR has no synaptic delays")
    w = sc.weight.astype(np.float64) * 2.0 ** -e
    if not sc.conv:
        return nir.Linear(weight=w)
    src = net.layers[sc.source]
    return nir.Conv2d(input_shape=tuple(src.shape[1:]), weight=w, stride=sc.stride, padding=sc.padding,
                      dilation=(1, 1), groups=1, bias=np.zeros(w.shape[0]))


def network_to_nir(net, dt: float = 1.0):
    """A :class:`neurodeploy.network.Network` as a ``nir.NIRGraph`` whose Euler
    discretisation at ``dt`` is the network's float image (weights, thresholds and
    biases divided by a power of two per layer). Node names: ``input``, ``output``,
    ``<i>.weight`` (Linear/Affine/Conv2d), ``<i>.neuron`` (LIF when iDecay = 4096,
    else CubaLIF), ``<i>.rec`` (recurrent Linear), ``<i>.flatten``, ``<i>.shortcut<k>``
    (a residual shortcut into block i: Conv2d or Linear from its source's neurons)."""
    from neurodeploy.network import Conv, Dense, Flatten, Input

    nir = _nir()
    dt = _check_dt(dt)
    where0 = f"network '{net.name}'"
    nodes: Dict[str, object] = {}
    edges: List[Tuple[str, str]] = []
    shape = tuple(net.input_shape)
    input_meta = {}
    prev = "input"
    for i, block in enumerate(net.layers):
        where = f"{where0}: layer {i} ({type(block).__name__.lower()})"
        if isinstance(block, Flatten):
            nodes[f"{i}.flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            edges.append((prev, f"{i}.flatten"))
            prev, shape = f"{i}.flatten", (int(np.prod(shape)),)
            continue
        if getattr(block, "delay", None) is not None and np.any(block.delay):
            raise InputError(f"{where}: axonal delays are not exported to NIR")
        if isinstance(block, Input):
            shape = tuple(block.shape)
            if block.neuron is None:
                input_meta = {META_INPUT_BLOCK: 1, META_INPUT_WEIGHT: float(block.weight)}
                continue
            # the input feeds u directly (weight 1 in integer units): exponent 0
            node, _ = _neuron_node(nir, block.neuron, shape, 0, dt, block.bias, where, has_synapse=False,
                                          extra={META_INPUT_BLOCK: 1, META_INPUT_WEIGHT: float(block.weight)})
            nodes[f"{i}.neuron"] = node
            edges.append((prev, f"{i}.neuron"))
            prev = f"{i}.neuron"
            continue
        if not isinstance(block, (Dense, Conv)):
            raise InputError(f"{where}: block type has no NIR form")
        if block.weight_exp != 0:
            raise InputError(f"{where}: weight_exp {block.weight_exp} != 0; fold it into the weights first")
        neuron = block.neuron
        e = _exponent_for(getattr(neuron, "threshold", 0))
        out_shape = tuple(block.shape)
        node, syn_bias = _neuron_node(nir, neuron, out_shape, e, dt, block.bias, where, has_synapse=True)
        w = block.weight.astype(np.float64) * 2.0 ** -e
        if isinstance(block, Dense):
            if syn_bias is None:
                syn = nir.Linear(weight=w)
            else:
                syn = nir.Affine(weight=w, bias=syn_bias.reshape(-1))
        else:
            cb = np.zeros(out_shape[0])
            if syn_bias is not None:
                per_channel = syn_bias.reshape(out_shape[0], -1)
                if not np.all(per_channel == per_channel[:, :1]):
                    raise InputError(f"{where}: a conv bias that varies within a channel has no Conv2d form")
                cb = per_channel[:, 0]
            syn = nir.Conv2d(input_shape=tuple(shape[1:]), weight=w, stride=block.stride,
                             padding=block.padding, dilation=block.dilation, groups=block.groups, bias=cb)
        nodes[f"{i}.weight"] = syn
        nodes[f"{i}.neuron"] = node
        edges += [(prev, f"{i}.weight"), (f"{i}.weight", f"{i}.neuron")]
        if isinstance(block, Dense) and block.weight_rec is not None:
            nodes[f"{i}.rec"] = nir.Linear(weight=block.weight_rec.astype(np.float64) * 2.0 ** -e)
            edges += [(f"{i}.neuron", f"{i}.rec"), (f"{i}.rec", f"{i}.neuron")]
        prev, shape = f"{i}.neuron", out_shape
        for k, sc in enumerate(net.shortcuts_into(i)):  # residual: more synapses into these neurons
            nodes[f"{i}.shortcut{k}"] = _shortcut_node(nir, net, sc, e, f"{where}: shortcut {k}")
            edges += [(f"{sc.source}.neuron", f"{i}.shortcut{k}"), (f"{i}.shortcut{k}", f"{i}.neuron")]
    nodes["input"] = nir.Input(input_type={"input": np.array(net.input_shape)}, metadata=input_meta)
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    # nir 1.0's Conv2d types its input as weight.shape[1] channels, which is C/groups
    # for a grouped conv: its type check would refuse a correct graph
    grouped = any(isinstance(b, Conv) and b.groups > 1 for b in net.layers)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"loihi_dt": float(dt)}, type_check=not grouped)


def write_nir(network, path: Union[str, os.PathLike], dt: float = 1.0) -> Path:
    """Write ``network`` as a NIR HDF5 file (``nir.write``), atomically."""
    nir = _nir()
    path = Path(path)
    graph = network_to_nir(network, dt)
    tmp = path.with_name(path.name + ".tmp")
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --- in: NIR -> float network -> Network -----------------------------------------
def _check_dt(dt) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise InputError(f"dt must be a positive number of seconds (NIR's time unit), got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f"dt must be a positive, finite time step, got {dt}")
    return dt


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


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor left in a graph built in memory
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


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


def _meta(node, key, default=None):
    md = getattr(node, "metadata", None) or {}
    if key not in md:
        return default
    v = md[key]
    v = v.item() if hasattr(v, "item") else v
    return v


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
    input_node = nodes[inputs[0]]
    shape = tuple(int(s) for s in np.asarray(input_node.input_type["input"]).reshape(-1))
    input_meta = getattr(input_node, "metadata", None) or {}
    layers: List[Union[FloatLayer, FloatFlatten]] = []
    pending = None  # (node name, synapse node) awaiting its neuron
    cur = inputs[0]
    first_synapse = True
    seen = set()
    while True:
        nxt = [s for s in succ[cur] if s != recurrent.get(cur)]
        if len(nxt) != 1:
            raise InputError(f"{where}: node '{cur}' feeds {len(nxt)} nodes; only chains of layers "
                             "(with recurrent loops) are supported")
        cur = nxt[0]
        if cur in seen:
            raise InputError(f"{where}: node '{cur}' is reached twice (a loop that is not a recurrent layer)")
        seen.add(cur)
        node = nodes[cur]
        w = f"{where}: node '{cur}' ({type(node).__name__})"
        fwd_preds = [p for p in pred[cur] if p != recurrent.get(cur)]
        if len(fwd_preds) != 1:
            raise InputError(f"{w}: has {len(fwd_preds)} inputs; only chains of layers are supported")
        if isinstance(node, nir.Output):
            if pending is not None:
                raise InputError(f"{w}: synapse '{pending[1]}' is not followed by a neuron node")
            break
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            if pending is not None:
                raise InputError(f"{w}: follows synapse '{pending[1]}' without a neuron between them")
            if first_synapse and isinstance(node, (nir.Affine, nir.Linear)) and not layers:
                # exporters that keep the batch dimension write Input shapes like (1, N)
                n_in = int(_array(node.weight).shape[-1])
                while len(shape) > 1 and shape[0] == 1 and int(np.prod(shape)) == n_in:
                    shape = shape[1:]
            first_synapse = False
            pending = (cur, node)
            continue
        if isinstance(node, nir.Flatten):
            if pending is not None:
                raise InputError(f"{w}: follows synapse '{pending[1]}' without a neuron between them")
            if len(shape) > 1:
                layers.append(FloatFlatten(shape=shape))
                shape = (int(np.prod(shape)),)
            continue
        # a neuron node
        if pending is None:
            if layers:
                raise InputError(f"{w}: a neuron node must follow a synapse (Affine, Linear, Conv2d)")
            kind, weight, syn_bias, geometry, out_shape = "input", None, None, None, shape
        else:
            sname, syn = pending
            weight = _array(syn.weight)
            syn_bias = _array(syn.bias).reshape(-1) if getattr(syn, "bias", None) is not None else None
            if isinstance(syn, nir.Conv2d):
                kind = "conv"
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
            else:
                kind, geometry = "dense", None
                if weight.ndim != 2:
                    raise InputError(f"{where}: {type(syn).__name__} '{sname}' weight must be 2-D, got {weight.shape}")
                if weight.shape[1] != int(np.prod(shape)):
                    raise InputError(f"{where}: {type(syn).__name__} '{sname}' takes {weight.shape[1]} inputs, "
                                     f"the previous node gives {int(np.prod(shape))} (shape {shape})")
                out_shape = (int(weight.shape[0]),)
                if syn_bias is not None and syn_bias.size != out_shape[0]:
                    raise InputError(f"{where}: Affine '{sname}' bias has {syn_bias.size} values for {out_shape[0]}")
        n = int(np.prod(out_shape))
        cd, vd, thr, gain, v_bias = _neuron_fields(node, n, dt, w, nir, current_input)
        weight_rec = None
        channel_bias = False
        if kind == "conv" and syn_bias is not None and not np.any(v_bias):
            channel_bias = True  # Conv2d's bias is per channel: keep netx's per-channel form
        if cur in recurrent:
            rec = nodes[recurrent[cur]]
            weight_rec = _array(rec.weight)
            if weight_rec.shape != (n, n):
                raise InputError(f"{where}: recurrent '{recurrent[cur]}' weight {weight_rec.shape} != ({n}, {n})")
            if getattr(rec, "bias", None) is not None and np.any(_array(rec.bias)):
                # a constant on the recurrent path enters the current like the synapse's bias
                syn_bias = (np.zeros(n) if syn_bias is None else syn_bias) + _array(rec.bias).reshape(-1)
            if kind != "dense":
                raise InputError(f"{w}: recurrent loops are supported on dense layers only")
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
        # fold the Euler gains into the weights; one threshold per layer (divide
        # each neuron's row by its threshold when they differ)
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
        if kind == "conv":
            stride, padding, dilation, groups = geometry
        else:
            stride, padding, dilation, groups = (1, 1), (0, 0), (1, 1), 1
        if kind == "input" and input_meta.get(META_INPUT_BLOCK) is not None:
            fields.setdefault("input_weight", _meta(input_node, META_INPUT_WEIGHT))
        if channel_bias and np.any(bias):
            per = bias.reshape(out_shape[0], -1)
            if np.all(per == per[:, :1]):
                bias = per[:, 0].copy()
        layers.append(FloatLayer(kind=kind, weight=weight, current_decay=cd, voltage_decay=vd,
                                 threshold=threshold, shape=tuple(out_shape),
                                 bias=bias if np.any(bias) or _meta(node, META_BIAS) else None,
                                 weight_rec=weight_rec,
                                 stride=stride, padding=padding, dilation=dilation, groups=groups,
                                 exponent=None if exponent is None else int(exponent), fields=fields))
        shape = tuple(out_shape)
        pending = None
    stray = sorted(set(nodes) - seen - set(recurrent.values()) - {inputs[0]})
    if stray:
        raise InputError(f"{where}: node '{stray[0]}' is not on the chain from Input to Output")
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
    meta = dict(input_meta)
    if meta.get(META_INPUT_BLOCK) is not None and first.kind != "input":
        layers.insert(0, FloatLayer(kind="input", weight=None, current_decay=0.0, voltage_decay=0.0,
                                    threshold=0.0, shape=in_shape,
                                    fields={"input_weight": _meta(input_node, META_INPUT_WEIGHT), "no_neuron": True}))
    return FloatNetwork(layers=tuple(layers), input_shape=in_shape, name=name)


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


def nir_to_network(graph, dt: float = 1.0, name: str = "network", where: str = "NIR graph",
                   current_input: str = "euler"):
    """A NIR graph as a quantised :class:`neurodeploy.network.Network`:
    :func:`nir_to_float` at ``dt``, then :func:`quantize_float`."""
    return quantize_float(nir_to_float(graph, dt, name=name, where=where, current_input=current_input),
                          where=where)


def read_nir_graph(path: Union[str, os.PathLike]):
    """``nir.read`` with one-line errors naming the file."""
    nir = _nir()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: NIR file not found")
    try:
        return nir.read(path, type_check=False)  # shapes are checked node by node on import
    except Exception as err:  # h5py/nir raise many kinds on a foreign or corrupt file
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a readable NIR file ({msg})") from None


def read_nir(path: Union[str, os.PathLike], dt: float = 1.0, current_input: str = "euler"):
    """Read a NIR file into a quantised :class:`neurodeploy.network.Network` (see
    :func:`nir_to_network`); ``dt`` is the time step NIR's time constants are
    discretised with (seconds, NIR's unit; files written by :func:`write_nir`
    record theirs and need the same value); ``current_input`` as in :func:`nir_to_float`."""
    path = Path(path)
    graph = read_nir_graph(path)
    return nir_to_network(graph, dt, name=path.stem, where=str(path), current_input=current_input)
