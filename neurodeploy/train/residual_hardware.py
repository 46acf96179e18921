"""Hardware-aware forward of a :class:`~neurodeploy.train.residual.ResidualNetwork`:
the chip's fixed-point arithmetic, with straight-through gradients.

Every layer runs the network the exporter writes
(:mod:`neurodeploy.export.quantize_residual`): batch norm folded with its running
statistics, one weight exponent for a block's second layer and its shortcut (chosen
from both weight sets and the summed bias, rounded as one set), the bias mantissa,
then the integer CUBA-LIF of :mod:`neurodeploy.fixedpoint` step by step (values
held exactly in float64) on the synaptic input ``W * s`` (+ ``W_s * s_in``). The
spikes are the ones the simulator and Lava produce for the exported network, each
sample in its own window (the exporter's aligned shortcut delays). Gradients pass
as in :mod:`neurodeploy.train.hardware`: rounding is the identity, the surrogate is
evaluated in the float model's units, the reset is detached.

:func:`set_residual_hardware_aware` switches a network to this forward; with
``learn`` it also trains each layer's threshold and/or decays, quantised in the
forward like the weights (train.hardware_aware_learn). A layer with batch norm
keeps its current decay at 1.0 (the condition under which its norm folds into
weights and bias) and learns its voltage decay only.
"""
from __future__ import annotations

import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.export.quantize import layer_exponent
from neurodeploy.train.hardware import LEARNABLE, _neuron_tensors, _straight_through, sync_learned_neurons
from neurodeploy.train.layers import CubaConv, fold_batch_norm, spiking_layers
from neurodeploy.train.neuron import SpikeFunction


def _synaptic_input(layer, x: torch.Tensor, w: torch.Tensor, stride=None, padding=None) -> torch.Tensor:
    """Exact integer synaptic input (batch, time, neurons) in float64 of integer
    weights w on spikes x (batch, time, *in)."""
    b, t = x.shape[:2]
    if isinstance(layer, CubaConv):
        a = torch.nn.functional.conv2d(x.reshape(b * t, *x.shape[2:]).double(), w,
                                       stride=layer.stride if stride is None else stride,
                                       padding=layer.padding if padding is None else padding)
        return a.reshape(b, t, -1)
    return x.reshape(b, t, -1).double() @ w.T


def hardware_layer(layer, x: torch.Tensor, shortcut=None) -> torch.Tensor:
    """Chip-exact spikes (batch, time, *out) of one CubaConv / CubaDense layer on
    input spikes x; ``shortcut``: (block, block input spikes) for a residual block's
    second layer."""
    theta, alpha, beta = _neuron_tensors(layer)
    w, b = fold_batch_norm(layer.weight, layer.norm, differentiable=True)
    parts = [w.double()]
    bias = None if b is None else b.double()
    if shortcut is not None:
        block, x_in = shortcut
        ws, bs = fold_batch_norm(block.shortcut_weight(), block.projection_norm, differentiable=True)
        parts.append(ws.double())
        if bs is not None:
            bias = bs.double() if bias is None else bias + bs.double()
    flat = torch.cat([p.reshape(-1) for p in parts])
    e = layer_exponent(flat.detach().cpu().numpy(), float(theta.detach()),
                       None if bias is None else bias.detach().cpu().numpy())
    scale = 2.0 ** e
    q = _straight_through(fx.quantize_weight_tensor(flat.detach(), e), flat * scale)
    w_q = q[:parts[0].numel()].reshape(parts[0].shape)
    a = _synaptic_input(layer, x, w_q)
    if shortcut is not None:
        ws_q = q[parts[0].numel():].reshape(parts[1].shape)
        a = a + (_synaptic_input(layer, x_in, ws_q, block.stride, (0, 0)) if block.conv
                 else x_in.reshape(*x_in.shape[:2], -1).double() @ ws_q.T)
    bias_q = None
    if bias is not None:
        exact = torch.from_numpy(fx.quantize_bias(bias.detach().cpu().numpy(), e)).to(bias)
        bias_q = _straight_through(exact, bias * scale)
        if bias_q.numel() != a.shape[-1]:  # a conv layer's bias, one per channel
            bias_q = bias_q.repeat_interleave(a.shape[-1] // bias_q.numel())
    params = fx.CubaParameters(
        current_decay=fx.quantize_decay(float(alpha.detach()), offset_current=True),
        voltage_decay=fx.quantize_decay(float(beta.detach()), offset_current=False),
        threshold=fx.quantize_threshold(float(theta.detach()), e))
    vth = _straight_through(torch.tensor(float(params.threshold), dtype=torch.float64), theta * scale)
    vth = vth * float(1 << fx.THRESHOLD_SHIFT)
    unit = float(1 << fx.ACTIVATION_SHIFT) * scale
    keep_u = _straight_through(torch.tensor(1.0 - params.current_decay / fx.DECAY_UNITY, dtype=torch.float64),
                               1.0 - alpha)
    keep_v = _straight_through(torch.tensor(1.0 - params.voltage_decay / fx.DECAY_UNITY, dtype=torch.float64),
                               1.0 - beta)
    batch, steps, n = a.shape
    u, v = fx.cuba_initial_state((batch, n), dtype=torch.float64, device=x.device)
    bias_x64 = None if bias_q is None else fx.shift_left(bias_q, fx.BIAS_EXP)
    spikes = []
    for k in range(steps):
        a_k = a[:, k]
        exact = fx.cuba_subthreshold(a_k.detach(), fx.CubaState(u.detach(), v.detach()), params,
                                     None if bias_q is None else bias_q.detach())
        u = _straight_through(exact.current, keep_u * u + fx.shift_left(a_k, fx.ACTIVATION_SHIFT))
        v = _straight_through(exact.voltage, keep_v * v + u + (0.0 if bias_x64 is None else bias_x64))
        s = SpikeFunction.apply((v - vth) / unit, layer.surrogate)
        v = v * (1.0 - s.detach())
        spikes.append(s)
    out_shape = layer.output_shape if isinstance(layer, CubaConv) else (layer.out_features,)
    return torch.stack(spikes, dim=1).to(x.dtype).reshape(batch, steps, *out_shape)


def hardware_residual_forward(model, x: torch.Tensor):
    """Every spiking layer's chip-exact spikes, as ``ResidualNetwork.forward``."""
    s = x.reshape(x.shape[0], x.shape[1], *model.input_shape)
    out = []
    for layer in model.stem:
        s = hardware_layer(layer, s)
        out.append(s)
    for block in model.blocks:
        s1 = hardware_layer(block.first, s)
        s2 = hardware_layer(block.second, s1, (block, s) if block.has_shortcut else None)
        out += [s1, s2]
        s = s2
    s = s.reshape(s.shape[0], s.shape[1], -1)
    for layer in model.head:
        s = hardware_layer(layer, s)
        out.append(s)
    return out


def learned_neuron_values(layer, learn) -> dict:
    """The neuron parameters of ``layer`` that ``learn`` trains, at their values now:
    'threshold'; 'decays': the voltage decay, and the current decay unless the layer
    has batch norm (which folds exactly only with current_decay 1.0)."""
    p = layer.neuron
    values = {"threshold": p.threshold} if "threshold" in learn else {}
    if "decays" in learn:
        values["voltage_decay"] = p.voltage_decay
        if getattr(layer, "norm", None) is None:
            values["current_decay"] = p.current_decay
    return values


def set_residual_hardware_aware(model, enabled: bool = True, learn=()) -> None:
    """Switch a ResidualNetwork to (or back from) the chip-exact forward. ``learn``:
    any of 'threshold', 'decays' (register before building the optimiser); switching
    back writes the learned values into each layer's neuron parameters."""
    unknown = set(learn) - set(LEARNABLE)
    if unknown:
        raise ValueError(f"cannot learn {sorted(unknown)}; learnable: {LEARNABLE}")
    if enabled and learn:
        for layer in spiking_layers(model):
            if getattr(layer, "learned", None) is None:
                layer.learned = torch.nn.ParameterDict(
                    {k: torch.nn.Parameter(torch.tensor(float(v), device=layer.weight.device))
                     for k, v in learned_neuron_values(layer, learn).items()})
    model.hardware_aware = bool(enabled)
    if not enabled:
        sync_learned_neurons(model)
