"""Activity -> synaptic ops -> energy: the per-inference estimate of a mapped network
from per-neuron spike counts (given, or counted by the bit-accurate simulator), and the
``hardware`` entry of a run's metrics.json. Pure arithmetic over the mapper's per-layer
geometry (:mod:`neurodeploy.hardware.mapper`'s model and its stated assumptions)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from neurodeploy.hardware.config import HardwareConfig
from neurodeploy.hardware.mapper import ActivityEstimate, layer_geometry, map_network, shortcut_synapses
from neurodeploy.network import Dense, Network

SpikeCounts = Union[float, np.ndarray]


def synaptic_ops(spike_counts: Sequence[SpikeCounts], fan_outs: Sequence[SpikeCounts]) -> float:
    """Synaptic events = sum over presynaptic populations k of
    ``sum_j spikes_k[j] * fan_out_k[j]`` (one event per spike per outgoing synapse).

    spike_counts[k]: spikes of population k (per neuron array, or a total when
    fan_outs[k] is a scalar mean fan-out); fan_outs[k]: outgoing stored synapses
    per neuron of population k.
    """
    if len(spike_counts) != len(fan_outs):
        raise ValueError(f"{len(spike_counts)} spike-count populations but {len(fan_outs)} fan-outs")
    total = 0.0
    for k, (s, f) in enumerate(zip(spike_counts, fan_outs)):
        s, f = np.asarray(s, dtype=np.float64), np.asarray(f, dtype=np.float64)
        if f.ndim == 0:
            total += float(s.sum() * f)
        else:
            if s.shape != f.shape:
                raise ValueError(f"population {k}: spike counts shape {s.shape} != fan-out shape {f.shape}")
            total += float(s @ f)
    return total


def neuron_updates(neurons: Sequence[int], steps: int) -> int:
    """Every neuron is updated every time step (the chip's time-stepped dynamics)."""
    return int(sum(int(n) for n in neurons) * int(steps))


def estimate_energy(n_synaptic_ops: float, n_neuron_updates: int,
                    hw: HardwareConfig) -> Tuple[Optional[float], Optional[float], Optional[float]]:
    """(synaptic pJ, neuron pJ, total pJ): ops x the config's pJ per op; None where
    the config has no published figure (total needs both)."""
    syn = None if hw.energy_per_synaptic_op_pj is None else n_synaptic_ops * hw.energy_per_synaptic_op_pj
    neu = None if hw.energy_per_neuron_update_pj is None else n_neuron_updates * hw.energy_per_neuron_update_pj
    total = None if syn is None or neu is None else syn + neu
    return syn, neu, total


def network_fan_outs(network: Network, count_zero_weights: bool = True) -> List[Tuple[str, np.ndarray]]:
    """(population, fan-out per neuron) for every presynaptic population: 'input'
    (the input stream) and each neuron block's index. A dense_rec block's neurons
    also project onto themselves. The input stream into an input block and the
    last block's output carry no synapses (fan-out 0)."""
    geo = layer_geometry(network, count_zero_weights)
    names = ["input"] + [str(g.index) for g in geo]
    fan = [g.fan_out_in.astype(np.float64) for g in geo]  # population k feeds block k
    fan.append(np.zeros(geo[-1].neurons))  # the last block's spikes go to the host
    for k, g in enumerate(geo):
        layer = network.layers[g.index]
        if isinstance(layer, Dense) and layer.weight_rec is not None:
            fan[k + 1] = fan[k + 1] + (
                np.full(layer.num_neurons, layer.num_neurons, dtype=np.float64) if count_zero_weights
                else np.count_nonzero(layer.weight_rec, axis=0).astype(np.float64))
    pos = {g.index: k for k, g in enumerate(geo)}
    for sc in network.shortcuts:  # a shortcut's source neurons also feed its synapses
        fan[pos[sc.source] + 1] = fan[pos[sc.source] + 1] + shortcut_synapses(network, sc, count_zero_weights)[2]
    return list(zip(names, fan))


def estimate_activity(network: Network, hw: HardwareConfig, spikes: Dict[str, np.ndarray],
                      steps: int, samples: int = 1, count_zero_weights: bool = True) -> ActivityEstimate:
    """Per-sample synaptic ops, neuron updates and the energy/time estimate from
    per-neuron spike counts per sample: ``spikes['input']`` (input stream events)
    and ``spikes[str(i)]`` for each neuron block i (arrays of shape (neurons,))."""
    pops = network_fan_outs(network, count_zero_weights)
    missing = [name for name, _ in pops if name not in spikes]
    if missing:
        raise ValueError(f"spike counts missing for population(s) {missing}")
    counts = [np.asarray(spikes[name], dtype=np.float64).reshape(-1) for name, _ in pops]
    ops = synaptic_ops(counts, [f for _, f in pops])
    neurons = [p.num_neurons for _, p in network.neuron_layers]
    updates = neuron_updates(neurons, steps)
    syn, neu, total = estimate_energy(ops, updates, hw)
    time_us = None if hw.time_per_step_us is None else steps * hw.time_per_step_us
    notes = ["input-stream events into an input block are injected by the host / embedded cores "
             "and not counted as synaptic ops"] if network.has_input_layer else []
    notes.append("neuron updates assume every neuron is updated every step")
    return ActivityEstimate(steps=int(steps), samples=int(samples),
                            spikes={name: float(c.sum()) for (name, _), c in zip(pops, counts)},
                            synaptic_ops=ops, neuron_updates=updates, synaptic_energy_pj=syn,
                            neuron_energy_pj=neu, energy_pj=total, time_us=time_us, notes=tuple(notes))


def spikes_from_simulation(network: Network, inputs: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-neuron spike counts per sample (mean over samples) from the bit-accurate
    simulator, each sample run independently on Lava's timeline as the pipeline and
    the chip run it (:mod:`neurodeploy.sim.samples`: zero padding, state reset
    every P steps). Neuron layer l's spikes for a sample are counted in its own
    P-step window, which starts l steps after the sample (one step per layer).
    Uses only ``simulate(network, inputs, steps, reset_interval, record=True)`` and
    its ``s/<i>`` records (batch, neurons, steps). Nonzero graded values count once.

    inputs: (samples, *input_shape, P) or (*input_shape, P).
    """
    from neurodeploy.sim.samples import sample_stream, stream_steps
    from neurodeploy.sim.simulator import simulate

    x = np.asarray(inputs)
    if x.ndim == len(network.input_shape) + 1:
        x = x[None]
    p = x.shape[-1]
    layers = network.neuron_layers
    streams = np.stack([sample_stream(sample[None]) for sample in x])
    res = simulate(network, streams, steps=stream_steps(1, p, len(layers)), reset_interval=p, record=True)
    counts = {"input": np.count_nonzero(x.reshape(x.shape[0], -1, p), axis=-1).mean(axis=0)}
    for l, (i, _) in enumerate(layers):
        key = f"s/{i}"
        if key not in res.records:
            raise KeyError(f"the simulator recorded no spikes for layer {i} ('{key}')")
        s = np.asarray(res.records[key])
        s = s.reshape(s.shape[0], -1, s.shape[-1])[..., p + l: 2 * p + l]
        counts[str(i)] = np.count_nonzero(s, axis=-1).mean(axis=0)
    return counts


def activity_of_samples(network: Network, hw: HardwareConfig, inputs: np.ndarray,
                        count_zero_weights: bool = True) -> ActivityEstimate:
    """:func:`estimate_activity` from the spikes the bit-accurate simulator counts on
    ``inputs`` (samples, *input_shape, P) or (*input_shape, P): P time steps per sample
    (= per inference). NotImplementedError for a block the simulator does not run."""
    x = np.asarray(inputs)
    samples = x.shape[0] if x.ndim == len(network.input_shape) + 2 else 1
    return estimate_activity(network, hw, spikes_from_simulation(network, x), int(x.shape[-1]),
                             samples, count_zero_weights)


def hardware_metrics(network: Network, hw: HardwareConfig, inputs: Optional[np.ndarray] = None) -> dict:
    """The ``hardware`` entry of a run's metrics.json: the mapping, and the activity
    estimate when ``inputs`` (samples, *input_shape, P) are given (P time steps
    per sample = per inference), and ``fits: True``. Raises
    :class:`MappingError` when the network does not fit."""
    report = map_network(network, hw)
    activity_error = None
    if inputs is not None:
        try:
            report = report.with_activity(activity_of_samples(network, hw, inputs))
        except NotImplementedError as e:  # a block the simulator does not run yet
            activity_error = f"no activity estimate: the simulator cannot run this network ({e})"
    d = report.to_dict()
    d["fits"] = True
    from neurodeploy.hardware.src_resources import src_resources
    src_rows = src_resources(network, {p.index: p.cores for p in report.layers})
    if src_rows:  # SRC layers: state, tables and ops per step (an estimate)
        d["src_resources"] = src_rows
    if activity_error:
        d["notes"].append(activity_error)
    d["config"] = hw.to_dict()
    return d
