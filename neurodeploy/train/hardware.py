"""Hardware-aware training: the forward pass is the chip's fixed-point arithmetic.

For a :class:`~neurodeploy.train.layers.CubaDense` layer with float weights W,
each forward:

- picks the layer's weight exponent e from the current weights (as the exporter
  does) and quantises W * 2**e to Loihi's 8-bit grid with
  :func:`neurodeploy.fixedpoint.quantize_weight_tensor`;
- runs the integer CUBA-LIF of :mod:`neurodeploy.fixedpoint` step by step (values
  held exactly in float64): the spikes are the ones Lava and the chip produce for
  the exported network;
- passes gradients straight through: rounding and truncation are treated as the
  identity, so the gradient is that of the float dynamics
  ``u = (1 - du/4096) u + 64 a``, ``v = (1 - dv/4096) v + u + 64 bias`` in the
  integer units, with the surrogate evaluated at ``(v - vth*64) / (64 * 2**e)``
  (the float model's units) and the reset detached.

Weights stay float and the quantisation is applied in every forward, so the
network exported after fine-tuning is exactly the one trained. Threshold and
decays are held fixed at their quantised values during fine-tuning.
"""
from __future__ import annotations

import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.export.quantize import layer_exponent
from neurodeploy.train.neuron import SpikeFunction


def _straight_through(exact: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """Value of ``exact``, gradient of ``smooth``."""
    return smooth + (exact - smooth).detach()


def hardware_cuba_dense(layer, x: torch.Tensor) -> torch.Tensor:
    """Chip-exact forward of one CubaDense layer: spikes (batch, time, out) as
    float tensors with straight-through / surrogate gradients."""
    p = layer.neuron
    w = layer.weight
    e = layer_exponent(w.detach().cpu().double().numpy(), p.threshold)
    scale = 2.0 ** e
    w64 = w.double()
    w_q = _straight_through(fx.quantize_weight_tensor(w64.detach(), e), w64 * scale)
    params = fx.CubaParameters(
        current_decay=fx.quantize_decay(p.current_decay, offset_current=True),
        voltage_decay=fx.quantize_decay(p.voltage_decay, offset_current=False),
        threshold=fx.quantize_threshold(p.threshold, e),
    )
    vth = float(params.threshold << fx.THRESHOLD_SHIFT)
    unit = float(1 << fx.ACTIVATION_SHIFT) * scale  # integer units per float unit
    keep_u = 1.0 - params.current_decay / fx.DECAY_UNITY
    keep_v = 1.0 - params.voltage_decay / fx.DECAY_UNITY
    a = x.double() @ w_q.T  # synaptic input (batch, time, out): exact integers
    batch, steps, n = a.shape
    state = fx.cuba_initial_state((batch, n), dtype=torch.float64, device=x.device)
    u, v = state
    spikes = []
    for t in range(steps):
        exact = fx.cuba_subthreshold(a[:, t].detach(), fx.CubaState(u.detach(), v.detach()), params)
        u = _straight_through(exact.current, keep_u * u + fx.shift_left(a[:, t], fx.ACTIVATION_SHIFT))
        v = _straight_through(exact.voltage, keep_v * v + u)
        s = SpikeFunction.apply((v - vth) / unit, layer.surrogate)
        v = v * (1.0 - s.detach())
        spikes.append(s)
    return torch.stack(spikes, dim=1).to(x.dtype)


def set_hardware_aware(model, enabled: bool = True) -> None:
    """Switch every layer of a SpikingNetwork to (or back from) the chip-exact forward."""
    for layer in model.layers:
        layer.hardware_forward = hardware_cuba_dense if enabled else None
