"""Bit-accurate, batched simulation of residual networks (a :class:`Network` with
shortcuts: blocks whose neurons sum several synapses).

The chain of blocks runs as :mod:`neurodeploy.sim.simulator` runs it (its synapse
products and neuron loops, on Lava's timeline); a block that takes shortcuts adds,
at every step, each shortcut's synaptic input to its own synapse's, as Lava's
neuron sums every connection into its ``a_in``. A synapse with delay ``d`` (its
own one step plus ``d``) delivers at step k what its source sent at step
``k - 1 - d``:

    a_target[k] = W x_prev[k - 1] + sum_shortcuts W_s x_source[k - 1 - d_s]

Blocks run one at a time over a chunk of steps (each block's whole input for the
chunk is one product per synapse, the neurons then run in the simulator's
compiled loop); each synapse keeps the last ``1 + d`` frames of its input across
chunks.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch

from neurodeploy.network import Conv, Dense, Network
from neurodeploy.sim.frames import channels_last, held_order, to_netx
from neurodeploy.sim.neurons import init_state, run_neurons
from neurodeploy.sim.products import Synapse


def _shortcut_synapse(sim, sc, network: Network):
    """A simulator synapse for shortcut ``sc`` with its delay."""
    src, tgt = network.layers[sc.source], network.layers[sc.target]
    where = sc.target
    if sc.conv:
        block = Conv(weight=sc.weight, neuron=tgt.neuron, shape=tgt.shape, stride=sc.stride,
                     padding=sc.padding)
        syn = Synapse(where, block, False, tuple(src.shape), 1.0)
    else:
        block = Dense(weight=sc.weight, neuron=tgt.neuron)
        if channels_last(src.shape):  # the source is held as (H, W, C)
            block = sim._held_columns(block, held_order(src.shape))
        syn = Synapse(where, block, False, (src.num_neurons,), 1.0)
        syn.int8 = False  # one path for every product here: the synapse dtype
    syn.weights = [(sc.delay, w) for _, w in syn.weights]
    syn.max_delay = sc.delay
    return syn


def simulate_residual(network: Network, inputs: np.ndarray, steps: Optional[int] = None,
                      reset_interval: Optional[int] = None, reset_offset: int = 0,
                      record: bool = False, chunk_steps: Optional[int] = None):
    """:func:`neurodeploy.sim.simulator.simulate` for a network with shortcuts
    (same arguments and result; no input bias: a residual network has no input
    layer with neurons)."""
    from neurodeploy.sim import simulator as sim

    chain = network.chain()
    layers, feed_shape, _ = sim._plan(chain, None, 1.0)
    x, single, in_bound = sim._check_inputs(chain, inputs, feed_shape)
    if in_bound > 1:
        layers, feed_shape, _ = sim._plan(chain, None, in_bound)
    by_index = {l.index: k for k, l in enumerate(layers)}
    for sc in network.shortcuts:
        if sc.source not in by_index or sc.target not in by_index:
            raise ValueError(f"shortcut {sc.source} -> {sc.target}: not between simulated neuron blocks")
    shortcut_syns = {k: [] for k in range(len(layers))}
    for sc in network.shortcuts:
        shortcut_syns[by_index[sc.target]].append(
            (by_index[sc.source], _shortcut_synapse(sim, sc, network)))
    t_in, batch = x.steps, x.batch
    steps = sim.run_length(steps, t_in, reset_interval)
    widest = max([int(np.prod(feed_shape))] + [int(np.prod(l.shape)) for l in layers])
    chunk = chunk_steps or max(1, min(steps, sim.CHUNK_ELEMENTS // max(1, batch * widest * 2)))

    states = [init_state(l, batch) for l in layers]

    def zeros(syn, n):
        dtype = torch.int64 if syn.graded_input else torch.bool
        return torch.zeros((syn.max_delay + 1, batch, n), dtype=dtype)

    tails = [zeros(l.synapse, int(np.prod(l.synapse.in_shape))) for l in layers]
    sc_tails = {(k, j): zeros(syn, int(np.prod(layers[j].shape)))
                for k, pairs in shortcut_syns.items() for j, syn in pairs}
    outs: List[torch.Tensor] = []
    rec: Dict[str, List[torch.Tensor]] = {}
    for start in range(0, steps, chunk):
        c = min(chunk, steps - start)
        s = x.chunk(start, c)
        frames_of = {}
        for k, layer in enumerate(layers):
            syn = layer.synapse
            frames = s.reshape(c, batch, -1)
            if syn.graded_input:
                frames = frames.to(torch.int64)
            elif frames.dtype != torch.bool:
                frames = frames != 0
            full = torch.cat([tails[k], frames.to(tails[k].dtype)])
            tails[k] = full[-(syn.max_delay + 1):].clone()
            a = syn(full, c)
            if shortcut_syns[k]:
                a = a.to(torch.int64)
                for j, ssyn in shortcut_syns[k]:
                    full = torch.cat([sc_tails[(k, j)], frames_of[j]])
                    sc_tails[(k, j)] = full[-(ssyn.max_delay + 1):].clone()
                    a = a + ssyn(full, c).to(torch.int64)
            s = run_neurons(layer, a, states[k], start, reset_interval, reset_offset,
                                 rec if record else None, None)
            s = s.reshape(c, batch, -1)
            frames_of[k] = s if s.dtype == torch.bool else s != 0
        outs.append(s.clone())
    out_layer = layers[-1]
    spikes = to_netx(torch.cat(outs), out_layer.shape).astype(np.int32)
    return sim.sim_result(spikes, rec if record else None, layers, single)
