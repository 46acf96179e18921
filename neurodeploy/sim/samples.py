"""Independent samples on Lava's continuous timeline.

A network trained on one sample at a time (fresh state, layer l consuming layer
l-1's spikes of the same step, see train.neuron) runs on Lava as one long input
stream with netx's state reset every P steps, where P is the sample length:
netx resets neuron layer i at steps t = 1 + i (mod P) (time starts at 1), which is
exactly one step per layer, like the Dense blocks' 1-step delay. With the stream

    stream = [0] * (P - 1) + x_0 + x_1 + ... + x_{N-1}          (time axis)

layer i integrates sample k's step tau at Lava step (k + 1) P + 1 + i + tau from a
freshly reset state, so every layer sees sample k in a window of its own, and the
output layer (i = L - 1) emits sample k's step tau at sink index (k + 1) P + L - 1 + tau.
This equals running each sample alone from a fresh state with no synaptic delays,
which is what training does.

Recurrent networks (a ``dense_rec`` block) are the exception on Lava: netx's reset
zeroes the neurons only, and the recurrent synapse delivers a layer's spikes from
the last step of sample k - 1 into the first step of sample k. For them
:func:`lava_outputs` runs fresh-state blocks instead (:func:`block_stream`,
``lava_adapter.run_netx_blocks``): sample k at block steps 0..P-1, the output
window at steps ``lat .. lat + P - 1`` with ``lat`` the synapse hops from the input
to the output layer, the whole network state zeroed between blocks.

This module holds the layout (:func:`sample_stream`, :func:`stream_steps`,
:func:`output_windows`), netx's reset schedule (:func:`reset_phase`) and the decoding
of outputs into classes (:func:`classify`) for every command and runner; it imports
numpy only at module level (the simulator and Lava inside the functions that run
them), so a runner outside neurodeploy can take a copy of this file.
"""
from __future__ import annotations

import numpy as np


def reset_phase(neuron_layer: int, reset_interval: int, reset_offset: int = 0) -> int:
    """netx's reset schedule: neuron layer ``neuron_layer`` (0-based, counting the
    layers that hold neurons) zeroes its state at the Lava steps t (time starts at 1)
    with ``t % reset_interval == reset_phase(...)``, i.e. ``reset_offset + 1 + i``
    modulo the interval (lava-dl netx's ``reset_offset`` per layer)."""
    return (reset_offset + 1 + neuron_layer) % reset_interval


def classify(outputs: np.ndarray) -> np.ndarray:
    """(samples, *out_shape, T) output messages -> predicted class per sample (int64):
    the output neuron with the most spikes (the largest sum of its messages over
    time), ties to the lowest index; training's decoding of spike counts."""
    x = np.asarray(outputs)
    counts = x.reshape(x.shape[0], -1, x.shape[-1]).sum(-1, dtype=np.int64 if x.dtype.kind in "biu" else None)
    return counts.argmax(-1)


def sample_stream(samples: np.ndarray) -> np.ndarray:
    """samples (N, *input_shape, P) -> stream (*input_shape, (N + 1) P)."""
    n, p = samples.shape[0], samples.shape[-1]
    body = np.moveaxis(samples, 0, -2).reshape(*samples.shape[1:-1], n * p)
    pad = np.zeros((*samples.shape[1:-1], p - 1), dtype=samples.dtype)
    tail = np.zeros((*samples.shape[1:-1], 1), dtype=samples.dtype)
    return np.concatenate([pad, body, tail], axis=-1)


def stream_steps(num_samples: int, sample_steps: int, num_neuron_layers: int) -> int:
    """Lava steps needed to see every sample's output window."""
    return (num_samples + 1) * sample_steps + num_neuron_layers - 1


def output_windows(output: np.ndarray, num_samples: int, sample_steps: int,
                   num_neuron_layers: int) -> np.ndarray:
    """Cut a recorded output (*out_shape, steps) into (N, *out_shape, P) windows."""
    p, lat = sample_steps, num_neuron_layers - 1
    starts = (np.arange(num_samples) + 1) * p + lat
    idx = starts[:, None] + np.arange(p)[None, :]
    return np.moveaxis(output[..., idx], -2, 0)


def simulated_outputs(network, samples: np.ndarray, batch_size: int = 512,
                      device: str = "cpu") -> np.ndarray:
    """Bit-accurate output spikes (N, *out_shape, P) of independent samples
    (N, *input_shape, P): each sample its own stream on Lava's timeline (as on Lava
    and the chip), a batch of streams per simulator call (on ``device``: cpu or cuda)."""
    from neurodeploy.sim.simulator import simulate

    n, p = samples.shape[0], samples.shape[-1]
    layers = len(network.neuron_layers)
    outs = []
    for start in range(0, n, batch_size):
        chunk = np.asarray(samples[start:start + batch_size])
        streams = np.stack([sample_stream(x[None]) for x in chunk])
        res = simulate(network, streams, steps=stream_steps(1, p, layers), reset_interval=p, device=device)
        outs.append(np.stack([output_windows(o, 1, p, layers)[0] for o in res.spikes]))
    return np.concatenate(outs) if outs else np.zeros((0, *network.output_shape, p))


def check_aligned_shortcuts(network) -> None:
    """Samples in one stream stay independent through a shortcut only when its delay
    aligns its target's window with its source's (:func:`neurodeploy.network.aligned_delay`);
    a longer delay carries one sample's last spikes into the next sample's window."""
    from neurodeploy.network import aligned_delay
    for sc in network.shortcuts:
        want = aligned_delay(network.layers, sc.source, sc.target)
        if sc.delay != want:
            raise ValueError(f"shortcut {sc.source} -> {sc.target}: delay {sc.delay} does not align the "
                             f"sample windows of its blocks (needs {want}); samples fed in one stream "
                             "would not stay independent")


def is_recurrent(network) -> bool:
    """True when a block of ``network`` has recurrent synapses (netx ``dense_rec``)."""
    return any(getattr(b, "weight_rec", None) is not None for b in network.layers)


def output_latency(network) -> int:
    """Steps from an input frame entering the network to the output layer's spikes
    for it: one per synapse (Dense / Conv, 1-step delay) on the way; an input layer
    takes the frame on its own step."""
    return len(network.neuron_layers) - int(network.has_input_layer)


def block_stream(samples: np.ndarray, latency: int) -> np.ndarray:
    """samples (N, *input_shape, P) -> stream (*input_shape, N (P + latency)): each
    sample followed by ``latency`` zero steps, one fresh-state block per sample."""
    n, p = samples.shape[0], samples.shape[-1]
    pad = np.zeros((*samples.shape[:-1], latency), dtype=samples.dtype)
    blocks = np.concatenate([samples, pad], axis=-1)
    return np.moveaxis(blocks, 0, -2).reshape(*samples.shape[1:-1], n * (p + latency))


def lava_outputs(net_path, network, samples: np.ndarray) -> np.ndarray:
    """The same on Lava (``Loihi2SimCfg(fixed_pt)``): all samples in one stream, one
    network build, state reset between samples (recurrent networks: the whole state
    zeroed between samples, see the module docstring)."""
    from neurodeploy.export.quantize_src import is_src_network
    from neurodeploy.lava_adapter import run_netx, run_netx_blocks, run_residual_netx, run_src_netx

    n, p = samples.shape[0], samples.shape[-1]
    layers = len(network.neuron_layers)
    check_aligned_shortcuts(network)
    if is_recurrent(network):
        if n == 0:
            return np.zeros((0, *network.output_shape, p))
        lat = output_latency(network)
        run = run_netx_blocks(net_path, block_stream(np.asarray(samples), lat), block_steps=p + lat)
        out = run.spikes.reshape(*run.spikes.shape[:-1], n, p + lat)[..., lat:]
        return np.moveaxis(out, -2, 0)
    run = (run_src_netx if is_src_network(network) else
           run_residual_netx if network.shortcuts else run_netx)(
        net_path, sample_stream(np.asarray(samples)), steps=stream_steps(n, p, layers),
        reset_interval=p)
    return output_windows(run.spikes, n, p, layers)
