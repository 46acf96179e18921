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
  integer units (:func:`neurodeploy.train.neuron.cuba_float_charge`, the float
  step's own integration), with the surrogate evaluated at
  ``(v - vth*64) / (64 * 2**e)`` (the float model's units) and the reset detached.

Weights stay float and the quantisation is applied in every forward, so the
network exported after fine-tuning is exactly the one trained. Threshold and
decays are fixed by default; with ``learn=("threshold", "decays")`` they become
trainable too, quantised in the forward (vThMant = round(theta * 2**e), iDecay /
vDecay = round(decay * 4096)) with straight-through gradients, and
:func:`set_hardware_aware` (disabling) or :func:`sync_learned_neurons` writes the
learned values back into each layer's neuron parameters for the exporter.
"""
from __future__ import annotations

import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.export.quantize import layer_exponent
from neurodeploy.train.neuron import CubaFloatParameters, SpikeFunction, cuba_float_charge, reset_fired

LEARNABLE = ("threshold", "decays")


def _straight_through(exact: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """Value of ``exact`` (to the bit: ``smooth - smooth`` is 0), gradient of ``smooth``."""
    return exact + (smooth - smooth.detach())


def _neuron_tensors(layer):
    """(threshold, current_decay, voltage_decay) as float64 tensors: learned
    parameters when the layer has them, else constants from its neuron."""
    p = layer.neuron
    learned = getattr(layer, "learned", None) or {}
    def get(name, value):
        return learned[name].double() if name in learned else torch.tensor(float(value), dtype=torch.float64)
    theta = get("threshold", p.threshold).clamp(min=1e-6)
    alpha = get("current_decay", p.current_decay).clamp(0.0, 1.0)
    beta = get("voltage_decay", p.voltage_decay).clamp(0.0, 1.0)
    return theta, alpha, beta


def hardware_cuba_dense(layer, x: torch.Tensor) -> torch.Tensor:
    """Chip-exact forward of one CubaDense layer: spikes (batch, time, out) as
    float tensors with straight-through / surrogate gradients.

    A layer with batch norm runs the network the exporter writes: the norm folded
    into weights and a bias with its running statistics
    (:func:`~neurodeploy.train.layers.fold_batch_norm`, the exporter's fold),
    the bias quantised to its mantissa as the exporter does
    (:func:`neurodeploy.fixedpoint.quantize_bias`); the statistics stay fixed
    while gamma, beta and W learn through the fold. A recurrent layer's W and W_rec
    share one exponent and one sign mode (netx quantises their concatenation), and
    its synaptic input at step t adds ``W_rec s[t-1]``."""
    from neurodeploy.train.layers import fold_batch_norm

    theta, alpha, beta = _neuron_tensors(layer)
    w, b = fold_batch_norm(layer.weight, layer.norm, differentiable=True)
    w_rec = getattr(layer, "weight_rec", None)
    n_in = w.shape[1]
    if w_rec is not None:
        w = torch.cat([w, w_rec], dim=1)
    e = layer_exponent(w.detach().cpu().double().numpy(), float(theta),
                       None if b is None else b.detach().cpu().double().numpy())
    scale = 2.0 ** e
    w64 = w.double()
    w_q = _straight_through(fx.quantize_weight_tensor(w64.detach(), e), w64 * scale)
    w_q, w_rec_q = (w_q[:, :n_in], w_q[:, n_in:]) if w_rec is not None else (w_q, None)
    bias_q = None
    if b is not None:
        b64 = b.double()
        exact = torch.from_numpy(fx.quantize_bias(b64.detach().cpu().numpy(), e)).to(b64)
        bias_q = _straight_through(exact, b64 * scale)
    params = fx.CubaParameters(
        current_decay=fx.quantize_decay(float(alpha), offset_current=True),
        voltage_decay=fx.quantize_decay(float(beta), offset_current=False),
        threshold=fx.quantize_threshold(float(theta), e),
    )
    # integer values forward, gradients to the learned float parameters (if any)
    vth = _straight_through(torch.tensor(float(params.threshold), dtype=torch.float64), theta * scale)
    vth = vth * float(1 << fx.THRESHOLD_SHIFT)
    unit = float(1 << fx.ACTIVATION_SHIFT) * scale  # integer units per float unit
    keep_u = _straight_through(torch.tensor(1.0 - params.current_decay / fx.DECAY_UNITY, dtype=torch.float64),
                               1.0 - alpha)
    keep_v = _straight_through(torch.tensor(1.0 - params.voltage_decay / fx.DECAY_UNITY, dtype=torch.float64),
                               1.0 - beta)
    a = fx.synaptic_input(w_q, x.double())  # (batch, time, out): exact integers, float64
    batch, steps, n = a.shape
    state = fx.cuba_initial_state((batch, n), dtype=torch.float64, device=x.device)
    u, v = state
    s = a.new_zeros(batch, n)
    spikes = []
    bias_x64 = None if bias_q is None else fx.shift_left(bias_q, fx.BIAS_EXP)
    for t in range(steps):
        a_t = a[:, t]
        if w_rec_q is not None:  # the previous step's own spikes, exact integers
            a_t = a_t + fx.synaptic_input(w_rec_q, s)
        exact = fx.cuba_subthreshold(a_t.detach(), fx.CubaState(u.detach(), v.detach()), params,
                                     None if bias_q is None else bias_q.detach())
        smooth = cuba_float_charge(fx.shift_left(a_t, fx.ACTIVATION_SHIFT), u, v, keep_u, keep_v,
                                   bias_x64)
        u = _straight_through(exact.current, smooth[0])
        v = _straight_through(exact.voltage, smooth[1])
        s = SpikeFunction.apply((v - vth) / unit, layer.surrogate)
        v = reset_fired(v, s.detach())
        spikes.append(s)
    return torch.stack(spikes, dim=1).to(x.dtype)


def set_hardware_aware(model, enabled: bool = True, learn=(), layers=None) -> None:
    """Switch every neurodeploy layer of ``model`` (a SpikingNetwork or any module
    holding them; ``layers``: as for :func:`neurodeploy.train.layers.spiking_layers`)
    to (or back from) the chip-exact forward.
    ``learn``: any of 'threshold', 'decays' to train those neuron parameters too
    (register before building the optimiser). Disabling writes learned values back."""
    from neurodeploy.train.layers import spiking_layers

    unknown = set(learn) - set(LEARNABLE)
    if unknown:
        raise ValueError(f"cannot learn {sorted(unknown)}; learnable: {LEARNABLE}")
    for layer in spiking_layers(model, layers):
        if not hasattr(layer, "hardware_forward") or not hasattr(layer, "in_features"):
            raise NotImplementedError(f"hardware-aware training supports dense CUBA layers, not "
                                      f"{type(layer).__name__}")
        if enabled and learn and getattr(layer, "learned", None) is None:
            p = layer.neuron
            values = {}
            if "threshold" in learn:
                values["threshold"] = p.threshold
            if "decays" in learn:
                values.update(current_decay=p.current_decay, voltage_decay=p.voltage_decay)
            layer.learned = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(torch.tensor(float(v), device=layer.weight.device)) for k, v in values.items()})
        layer.hardware_forward = hardware_cuba_dense if enabled else None
    if not enabled:
        sync_learned_neurons(model, layers)


def sync_learned_neurons(model, layers=None) -> None:
    """Write learned threshold/decays (clamped to their ranges) into each layer's
    frozen neuron parameters, which the exporter quantises."""
    from neurodeploy.train.layers import spiking_layers

    for layer in spiking_layers(model, layers):
        if getattr(layer, "learned", None):
            theta, alpha, beta = (float(t.detach()) for t in _neuron_tensors(layer))
            layer.neuron = CubaFloatParameters(current_decay=alpha, voltage_decay=beta, threshold=theta)
