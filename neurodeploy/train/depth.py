"""Surrogate-gradient tuning for deep SNNs (after Ledinauskas et al. 2020).

Through depth, BPTT multiplies a layer's backward gain at every layer: too small
and gradients vanish, too large and they explode. With the reset detached and no
recurrent spike path, every gradient path from a layer's output spikes to its
input crosses exactly one surrogate derivative, so a layer's backward gain is
proportional to the surrogate's height. :func:`tune_surrogate_heights` measures
each layer's gain ||dL/d input|| / ||dL/d output|| for a random unit output
gradient on a calibration batch at height 1, and sets the height to its inverse:
every layer then passes gradients on with gain 1. In a recurrent layer
(``CubaDense(recurrent=True)``) a path can cross the surrogate several times
through ``W_rec``, so its gain grows faster than the height and the tuned gain
is 1 only approximately. In a residual network
(:class:`neurodeploy.train.residual.ResidualNetwork`) every path from a block's
output back to its input, through the two layers or the shortcut, crosses the
block's second surrogate once: the block's first layer is tuned on its own, its
second so that the whole block passes gradients on with gain 1.
"""
from __future__ import annotations

import dataclasses

import torch


def layer_backward_gain(layer, x: torch.Tensor, seed: int = 0) -> float:
    """||d<g, layer(x)>/dx|| / ||g|| for a random g (same shape as the output)."""
    x = x.detach().clone().requires_grad_(True)
    out = layer(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=g.to(out.device))
    return float(grad.norm() / g.norm())


class _TrainingForward:
    """The model in training mode (batch norm on the batch's statistics, as the
    gradients that training sees pass through it) with every batch norm's running
    statistics put back afterwards."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.saved = {k: v.clone() for k, v in self.model.state_dict().items()
                      if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
        self.model.train()
        return self.model

    def __exit__(self, *exc):
        state = self.model.state_dict()
        for k, v in self.saved.items():
            state[k].copy_(v)
        self.model.train(self.was_training)
        return False


def tune_surrogate_heights(model, x: torch.Tensor, min_height: float = 1e-3,
                           max_height: float = 1e3) -> list:
    """Set each layer's surrogate height so its backward gain is 1 on batch ``x``
    (batch, time, *input_shape), measured through the training forward (batch norm
    on the batch's statistics, whose backward scales gradients by gamma / std; its
    running statistics are left as they were). Returns the heights (clamped to
    [min, max]; a layer with no gradient at all keeps max_height)."""
    with _TrainingForward(model):
        return _tune(model, x, min_height, max_height)


def _tune(model, x, min_height, max_height) -> list:
    heights = []
    s = x
    if hasattr(model, "tuning_steps"):  # a residual network: gains through its shortcuts
        steps = model.tuning_steps()
    else:
        steps = [(layer, layer, layer) for layer in model.layers]
    for i, (layer, step, advance) in enumerate(steps):
        if not hasattr(model, "tuning_steps") and i == getattr(model, "num_conv", 0):
            s = s.reshape(s.shape[0], s.shape[1], -1)
        layer.surrogate = dataclasses.replace(layer.surrogate, height=1.0)
        gain = layer_backward_gain(step, s, seed=i)
        h = max_height if gain == 0 else min(max(1.0 / gain, min_height), max_height)
        layer.surrogate = dataclasses.replace(layer.surrogate, height=h)
        heights.append(h)
        with torch.no_grad():
            s = advance(s)
    return heights


def backward_gains(model, x: torch.Tensor) -> list:
    """Each tuning step's backward gain on batch ``x`` at the model's current
    surrogate heights (a layer's, or for a residual block's second layer the whole
    block's), through the training forward: what :func:`tune_surrogate_heights`
    sets to 1."""
    with _TrainingForward(model):
        return _gains(model, x)


def _gains(model, x) -> list:
    gains, s = [], x
    if hasattr(model, "tuning_steps"):
        for i, (_, step, advance) in enumerate(model.tuning_steps()):
            gains.append(layer_backward_gain(step, s, seed=i))
            with torch.no_grad():
                s = advance(s)
    else:
        for i, layer in enumerate(model.layers):
            if i == getattr(model, "num_conv", 0):
                s = s.reshape(s.shape[0], s.shape[1], -1)
            gains.append(layer_backward_gain(layer, s, seed=i))
            with torch.no_grad():
                s = layer(s)
    return gains
