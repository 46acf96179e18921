"""The netx extension block for Spiking Recurrent Cell neurons (h5py only).

A dense block (``layer/<i>/type`` 'dense') whose ``neuron/`` group has ``type`` 'SRC'
holds these integer datasets (bit widths: :mod:`neurodeploy.fixedpoint_src`; the
block's ``bias`` is b_h's 13-bit mantissa)::

    neuron/type            'SRC'
    neuron/inputDecay      12-bit decay of i (1..4096)
    neuron/inputShift      synaptic input enters i as a << inputShift (0..6)
    neuron/xShift          index shift of the rho-saturation table
    neuron/xTable          256 x uint16, Q12
    neuron/hShift          index shift of the tanh table
    neuron/hTable          256 x uint16, Q12
    neuron/gainFast        r,   signed 8 bit, 4 fractional bits
    neuron/gainSlow        r_s, signed 8 bit, 4 fractional bits
    neuron/updateDecay     12-bit decay for z
    neuron/gateThreshold   theta_s, Q12
    neuron/slowDecayRest   12-bit decay of h_s while h <= theta_s
    neuron/slowDecayActive 12-bit decay of h_s while h > theta_s
    neuron/output          'graded' | 'binary' | 'current'
    neuron/messageShift    graded messages are max(h, 0) >> messageShift
    neuron/messageBits     bits of the messages sent (0: binary spikes)
    neuron/resetState      h and h_s at start and reset (Q12; i starts at 0)

lava-dl's netx does not know the type and refuses the file; ``neurodeploy``'s reader,
simulator and Lava adapter (``neurodeploy.lava_src``) run it.
"""
from __future__ import annotations

import h5py
import numpy as np

from neurodeploy import fixedpoint as fx

#: (dataset name, SrcParameters field) for the integer scalars
SCALARS = (
    ("inputDecay", "input_decay"), ("inputShift", "input_shift"), ("xShift", "x_shift"),
    ("hShift", "h_shift"), ("gainFast", "gain_fast"), ("gainSlow", "gain_slow"),
    ("updateDecay", "update_decay"), ("gateThreshold", "gate_threshold"),
    ("slowDecayRest", "slow_decay_rest"), ("slowDecayActive", "slow_decay_active"),
    ("messageShift", "message_shift"), ("resetState", "reset_state"),
)
TABLES = (("xTable", "x_table"), ("hTable", "h_table"))


def write_src_neuron(g: h5py.Group, neuron) -> None:
    """Write an SRC neuron's fields into ``g/neuron``."""
    g.create_dataset("neuron/type", data="SRC")
    for key, name in SCALARS:
        g.create_dataset(f"neuron/{key}", data=int(getattr(neuron, name)))
    for key, name in TABLES:
        g.create_dataset(f"neuron/{key}", data=np.asarray(getattr(neuron, name), dtype=np.uint16))
    g.create_dataset("neuron/output", data=neuron.output)
    g.create_dataset("neuron/messageBits", data=int(neuron.message_bits))


def read_src_neuron(n: h5py.Group, where: str, error=ValueError):
    """The :class:`neurodeploy.network.SrcNeuron` stored in group ``n``; errors name
    ``where`` and the dataset."""
    from neurodeploy.network import SrcNeuron

    values = {}
    for key, name in SCALARS + TABLES + (("output", "output"),):
        if key not in n:
            raise error(f"{where}: missing dataset '{key}'")
        v = n[key][()]
        if key == "output":
            values[name] = v.decode("ascii") if isinstance(v, bytes) else str(v)
            continue
        a = np.asarray(v)
        if not np.issubdtype(a.dtype, np.number) or not np.array_equal(np.round(a), a):
            raise error(f"{where}: '{key}' must hold integers (Loihi fixed point)")
        values[name] = tuple(int(x) for x in a.reshape(-1)) if name.endswith("table") else int(a.reshape(-1)[0])
    try:
        return SrcNeuron(**values)
    except (fx.BitWidthError, ValueError) as e:
        raise error(f"{where}: {e}") from None
