"""Hardware-aware training of SRC networks: the forward pass is the fixed-point cell
of :mod:`neurodeploy.fixedpoint_src`, the gradient that of the float cell.

Per layer and forward: the weight exponent e and the integer fields come from the
current float parameters exactly as the exporter derives them
(:mod:`neurodeploy.export.quantize_src`); weights and b_h are rounded to their
integer grids; then every step runs :func:`fixedpoint_src.src_step` on the integer
state. Each value (i, h, h_s, the messages) is the exact integer one (scaled back to
float units), its gradient that of the float equations of :mod:`neurodeploy.train.src`
evaluated on the exact state (straight-through rounding). Hidden layers hand the next
layer their integer messages, the readout its current ``i / 2**(e + 6)``, so the
class scores are the exported network's, bit for bit, up to that scale.
"""
from __future__ import annotations

import numpy as np
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy import fixedpoint_src as fxs
from neurodeploy.export.quantize_src import input_shifts, src_layer_exponent, src_layer_neuron
from neurodeploy.train.src import SRCReadout, StraightThroughReLU, src_cell_step


def _st(exact: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """Value of ``exact``, gradient of ``smooth``."""
    return smooth + (exact - smooth).detach()


def hardware_src_layer(layer, x: torch.Tensor, input_shift: int, output: str) -> torch.Tensor:
    """Chip-exact forward of one SRCLayer / SRCReadout over integer messages x
    (batch, time, in) -> messages (hidden) or currents in float units (readout)."""
    p = layer.neuron
    readout = isinstance(layer, SRCReadout)
    w = layer.weight.double()
    e = src_layer_exponent(w.detach().cpu().numpy(), p.alpha, p.rho)
    q = src_layer_neuron(p, e, input_shift, "current" if readout else output)
    scale = 2.0 ** e
    unit = fxs.units(e)  # integer units of i per float unit
    w_q = _st(fx.quantize_weight_tensor(w.detach(), e), w * scale)
    a = x.double() @ w_q.T  # the synaptic input a: exact integers in float64
    gain = float(1 << input_shift) / unit  # a -> float units of i
    batch, steps, n = a.shape
    if readout:
        bias_f, bias_m = torch.zeros(n, dtype=torch.float64), None
    else:
        bias_f = layer.clamped_bias().double()
        bias_m = fxs.quantize_bias(bias_f.detach().cpu().numpy())
        bias_f = _st(torch.as_tensor(bias_m * 64.0 / fxs.UNIT), bias_f)
    tables = q.tables()
    state = fxs.initial_state((batch, n), q.reset_state)
    i_f = torch.zeros((batch, n), dtype=torch.float64)
    h_f = hs_f = torch.from_numpy(state.fast / fxs.UNIT)
    out = []
    for t in range(steps):
        a_int = a[:, t].detach().cpu().numpy().astype(np.int64)
        msg, state = fxs.src_step(a_int, state, q, bias_m, tables)
        i_new = p.alpha * i_f + a[:, t] * gain
        i_f = _st(torch.from_numpy(state.current / unit), i_new)
        if readout:
            out.append(i_f)
            continue
        fast, slow = (h_f.detach(), hs_f.detach()) if p.detach_recurrence else (h_f, hs_f)
        h_new, hs_new = src_cell_step(i_f, fast, slow, bias_f, p)
        h_f = _st(torch.from_numpy(state.fast / fxs.UNIT), h_new)
        hs_f = _st(torch.from_numpy(state.slow / fxs.UNIT), hs_new)
        smooth = StraightThroughReLU.apply(h_f) * float(fxs.UNIT >> q.message_shift)
        if output == "binary":
            smooth = StraightThroughReLU.apply(h_f)
        out.append(_st(torch.from_numpy(msg.astype(np.float64)), smooth))
    return torch.stack(out, dim=1)


def set_src_hardware_aware(model, enabled: bool = True) -> None:
    """Switch every layer of an SRCNetwork to (or back from) the fixed-point forward."""
    for layer, shift in zip(model.layers, input_shifts(model)):
        if enabled:
            layer.hardware_forward = (lambda lyr, x, s=shift: hardware_src_layer(lyr, x, s, model.output))
        else:
            layer.hardware_forward = None
