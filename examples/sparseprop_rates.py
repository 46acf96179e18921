"""Train a sparse inhibitory LIF network to fire at given rates, exactly in continuous time.

Each of N neurons gets its own target rate (uniform in 20..40 Hz); the loss compares the
rates over a fixed simulated time (spike counts made continuous by the phase, see
``neurodeploy.sparseprop.train.rate_loss``) with the targets, and its gradient w.r.t.
every synaptic weight and every neuron's drive comes from backpropagation through the
recorded event sequence. No time step anywhere: every spike time is exact.

    uv run python examples/sparseprop_rates.py [--steps 200] [--neurons 100]
"""
from __future__ import annotations

import argparse
import logging
import math

import numpy as np

from neurodeploy.sparseprop.models import ModelParams
from neurodeploy.sparseprop.network import Network
from neurodeploy.sparseprop.simulate import initial_voltages
from neurodeploy.sparseprop.train import History, Trainable, rate_loss, train


def build(n: int = 100, k: int = 10, seed: int = 0):
    """The task: a network (LIF, tau 10 ms, drive 1.2, J0 0.5) and target rates (Hz)."""
    params = ModelParams("lif", tau=0.01, drive=1.2)
    net = Network(params, n, k, J0=0.5, seed=seed)
    target = np.random.default_rng(seed).uniform(20.0, 40.0, n)
    trainable = Trainable(params, net.to_csr(), params.drive,
                          initial_voltages(params, n, seed + 1))
    return trainable, target


def main(steps: int = 200, n: int = 100, k: int = 10, duration: float = 2.0,
         lr: float = 0.02, lr_halflife: float = 20.0, seed: int = 0):
    """Train; returns (network, target rates, loss history)."""
    net, target = build(n, k, seed)
    hist: History = train(net, rate_loss(target), steps, n_spikes=10**8, t_stop=duration,
                          lr=lr, lr_halflife=lr_halflife)
    return net, target, hist


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--neurons", type=int, default=100)
    ap.add_argument("--synapses", type=int, default=10)
    args = ap.parse_args()
    # each training step's loss (DEBUG lines of the neurodeploy.sparseprop.train logger)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("neurodeploy.sparseprop.train").setLevel(logging.DEBUG)
    net, target, hist = main(args.steps, args.neurons, args.synapses)
    print(f"loss {hist.loss[0]:.4g} -> {hist.loss[-1]:.4g} (rms relative rate error "
          f"{math.sqrt(hist.loss[0]):.3f} -> {math.sqrt(hist.loss[-1]):.3f})")
