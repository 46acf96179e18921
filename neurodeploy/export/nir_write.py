"""Network -> NIR: :func:`network_to_nir`, the integer network description as a
``nir.NIRGraph`` whose forward-Euler discretisation at ``dt`` is the network's
float image (mapping: :mod:`neurodeploy.export.nir`, ``docs/nir.md``)."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from neurodeploy.errors import InputError
from neurodeploy.export.nir_fields import (
    META_BIAS,
    META_BIAS_PER_CHANNEL,
    META_EXPONENT,
    META_GRADED,
    META_INPUT_BLOCK,
    META_INPUT_WEIGHT,
    META_REFRACTORY,
    META_SHORTCUT,
    _check_dt,
    _nir,
)


def _exponent_for(threshold) -> int:
    """The power of two the writer divides a layer's integers by: thresholds land in
    [1, 2) (weights and bias follow), a float image in the units most libraries train in."""
    t = float(np.max(threshold))
    return int(np.floor(np.log2(t))) if t > 0 else 0


def _field(value, shape, where: str) -> np.ndarray:
    """A neuron field as a float64 array of ``shape``: one value for the layer, or one
    per entry of the first torch axis (netx's per-neuron fields: per neuron of a dense
    block, per channel of a conv block, broadcast over the channel's positions)."""
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.size == 1:
        return np.full(shape, a[0])
    if a.size != shape[0]:
        raise InputError(f"{where}: {a.size} per-neuron values for a layer of shape {tuple(shape)} (need "
                         f"{shape[0]}: one per {'channel' if len(shape) == 3 else 'neuron'})")
    return np.broadcast_to(a.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


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
    i_decay = _field(neuron.current_decay, shape, where)
    v_decay = _field(neuron.voltage_decay, shape, where)
    tau_mem = _time_constant(v_decay, dt)
    r = tau_mem / dt
    threshold = _field(neuron.threshold, shape, where) * 2.0 ** -e
    no_current = bool(np.all(i_decay == 4096))
    metadata = {META_EXPONENT: int(e), META_REFRACTORY: int(neuron.refractory_delay),
                META_GRADED: int(bool(neuron.graded_spike)), META_BIAS: int(bias is not None),
                **(extra or {})}
    b = None
    if bias is not None:
        b = np.asarray(bias, np.float64).reshape(-1) * 2.0 ** -e
        if len(shape) == 3 and b.size == shape[0]:  # a conv bias per channel (netx broadcasts it)
            b = np.repeat(b, shape[1] * shape[2])
            metadata[META_BIAS_PER_CHANNEL] = 1
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
    marker = {META_SHORTCUT: 1}  # tells it from the chain's synapse when both leave one node
    if not sc.conv:
        return nir.Linear(weight=w, metadata=marker)
    src = net.layers[sc.source]
    return nir.Conv2d(input_shape=tuple(src.shape[1:]), weight=w, stride=sc.stride, padding=sc.padding,
                      dilation=(1, 1), groups=1, bias=np.zeros(w.shape[0]), metadata=marker)


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

