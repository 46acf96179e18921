"""SRC blocks in the bit-accurate simulator: the neuron recurrence of one layer over a
chunk of steps, batched, with :func:`neurodeploy.fixedpoint_src.src_step` (the same
timeline, synapses and resets as every other block; see :mod:`neurodeploy.sim.simulator`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from neurodeploy import fixedpoint_src as fxs

#: the state variables recorded per layer (``<name>/<block index>``), as the Lava
#: process names them
RECORDED = (("i", "current"), ("h", "fast"), ("hs", "slow"))


def initial_state(batch: int, n: int, neuron) -> dict:
    return {"src": fxs.initial_state((batch, n), neuron.reset_state)}


def run_src_neurons(layer, a: torch.Tensor, st: dict, reset: np.ndarray, rec: Optional[dict],
                    lead: Optional[torch.Tensor] = None) -> torch.Tensor:
    """a: (c, B, N) synaptic input of the chunk (with ``lead``, step k gets ``lead`` for
    k = 0 and ``a[k - 1]`` after) -> messages (c, B, N) int64. ``reset[k]``: zero i, h,
    h_s before step k (Lava's reset phase): i to 0, h and h_s to ``reset_state``. Records i, h, h_s
    and s when ``rec``."""
    p = layer.neuron.parameters()
    tables = p.tables()
    bias = None if layer.bias is None else np.asarray(layer.bias, np.int64)
    c = a.shape[0]
    a_np = a.to(torch.int64).numpy() if a.dtype != torch.int64 else a.numpy()
    first = None if lead is None else lead.to(torch.int64).numpy()
    state = st["src"]
    out = np.empty(a.shape, np.int64)
    records = {k: [] for k, _ in RECORDED} if rec is not None else None
    for k in range(c):
        if reset[k]:
            state = fxs.initial_state(state.current.shape, p.reset_state)
        ak = a_np[k] if first is None else (first if k == 0 else a_np[k - 1])
        out[k], state = fxs.src_step(ak, state, p, bias, tables)
        if records is not None:
            for key, field in RECORDED:
                records[key].append(getattr(state, field).copy())
    st["src"] = state
    messages = torch.from_numpy(out)
    if rec is not None:
        i = layer.index
        for key, _ in RECORDED:
            rec.setdefault(f"{key}/{i}", []).append(torch.from_numpy(np.stack(records[key])))
        rec.setdefault(f"s/{i}", []).append(messages.to(torch.int32))
    return messages


def sends_graded(neuron) -> bool:
    """Whether an SRC layer's messages are graded (anything but binary spikes)."""
    return neuron.output != "binary"


def output_bound(neuron) -> float:
    """Largest |message| an SRC layer sends."""
    if neuron.output == "graded":
        return float(fxs.UNIT >> neuron.message_shift)
    if neuron.output == "binary":
        return 1.0
    return float(1 << 23)
