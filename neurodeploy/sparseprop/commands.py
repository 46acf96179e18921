"""``neurodeploy sparseprop``: simulate a large sparse balanced network exactly and write
its spikes (and optionally the network) to an ``.npz`` file."""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

import click
import numpy as np

from neurodeploy.errors import InputError, OutputError

logger = logging.getLogger(__name__)

PROGRESS_FROM = 1 << 20  # spikes: runs this long show a progress bar


def run(model: str, n: int, k: int, spikes: int, seed: int, out: Path, *,
        J0: float = 1.0, tau: float = 0.01, rate: float = 1.0, drive: Optional[float] = None,
        save_network: bool = False, plot: Optional[Path] = None,
        rebase_every: Optional[int] = None, progress: Optional[bool] = None) -> dict:
    """Build the network, simulate ``spikes`` spikes with the heap simulator, write
    ``out`` (and ``plot``); returns a summary dict (also logged, INFO)."""
    from neurodeploy.sparseprop.models import ModelParams, balanced_drive
    from neurodeploy.sparseprop.network import Network
    from neurodeploy.sparseprop.simulate import HeapSimulator, initial_voltages

    if model not in ("lif", "qif"):
        raise InputError(f"--model: expected lif or qif, got {model!r}")
    if n < 2:
        raise InputError(f"--neurons: expected N >= 2, got {n}")
    if not 1 <= k <= n - 1:
        raise InputError(f"--synapses: expected 1 <= K <= N - 1 = {n - 1}, got {k}")
    if spikes < 1:
        raise InputError(f"--spikes: expected S >= 1, got {spikes}")
    if not 0 <= seed < 2**63:
        raise InputError(f"--seed: expected 0 <= seed < 2**63, got {seed}")
    for name, value in (("--j0", J0), ("--tau", tau), ("--rate", rate)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{name}: expected a positive number, got {value}")
    if rebase_every is not None and rebase_every < 1:
        raise InputError(f"--rebase-every: expected >= 1, got {rebase_every}")
    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"--out {out}: expected a file name ending in .npz")
    if not out.parent.is_dir():
        raise OutputError(f"--out {out}: directory {out.parent} does not exist")
    if plot is not None and not Path(plot).parent.is_dir():
        raise OutputError(f"--plot {plot}: directory {Path(plot).parent} does not exist")
    I = balanced_drive(model, tau, J0, k, rate) if drive is None else drive
    try:
        params = ModelParams(model, tau, I)
    except ValueError as e:
        raise InputError(f"--drive: {e}") from None
    net = Network(params, n, k, J0, seed)
    v0 = initial_voltages(params, n, seed)
    sim = HeapSimulator(params, v0, network=net, rebase_every=rebase_every)
    t0 = time.perf_counter()
    result = sim.run(spikes, progress=spikes >= PROGRESS_FROM if progress is None else progress)
    wall = time.perf_counter() - t0
    arrays = {"spike_times": result.times, "spike_neurons": result.neurons}
    if save_network:
        csr = net.to_csr()
        arrays.update(indptr=csr.indptr, indices=csr.indices.astype(np.int32),
                      weights=csr.weights, v0=v0,
                      params=np.array(json.dumps(network_params(net))))
    _write_npz(out, arrays)
    summary = {"spikes": len(result), "simulated_s": float(result.times[-1]),
               "wall_s": wall, "spikes_per_s": len(result) / wall if wall > 0 else math.inf,
               "mean_rate_hz": len(result) / (n * float(result.times[-1])), "drive": I}
    logger.info(f"{len(result)} spikes of {n} {model.upper()} neurons (K = {k}) in "
                f"{summary['simulated_s']:.4g} s simulated, {wall:.3g} s wall "
                f"({summary['spikes_per_s']:.3g} spikes/s); mean rate {summary['mean_rate_hz']:.3g} Hz")
    logger.info(f"wrote {out}")
    if plot is not None:
        raster_and_rates(result.times, result.neurons, n, Path(plot),
                         title=f"{model.upper()}, N = {n}, K = {k}, J0 = {J0:g}")
        logger.info(f"wrote {plot}")
    return summary


def network_params(net) -> dict:
    """The ``params`` record of a saved network: enough to re-simulate it from the
    voltage form (``tau dV/dt = -V + I`` for LIF, ``tau dV/dt = V^2 + I`` for QIF,
    ``V += w`` per input spike, ``V >= threshold`` -> spike and ``V = reset``)."""
    p = net.params
    return {"model": p.model, "tau": p.tau, "drive": p.drive, "J0": net.J0, "K": net.k,
            "threshold": p.threshold if math.isfinite(p.threshold) else "+inf",
            "reset": p.reset if math.isfinite(p.reset) else "-inf",
            "N": net.n, "seed": net.seed, "time_unit": "s"}


def _write_npz(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent, prefix=f".{path.stem}.")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"--out {path}: cannot write ({e.strerror})") from None


def raster_and_rates(times, neurons, n, path: Path, title: str = "", max_points=200_000):
    """Spike raster (up to ``max_points`` spikes, neurons subsampled to fit) above a
    histogram of the neurons' firing rates."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duration = float(times[-1]) if len(times) else 1.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), gridspec_kw={"height_ratios": [2, 1]})
    shown = neurons < max(1, int(n * min(1.0, max_points / max(len(times), 1))))
    ax1.plot(times[shown], neurons[shown], ",k", rasterized=True)
    ax1.set_xlabel("time (s)")
    ax1.set_ylabel("neuron")
    ax1.set_title(title, fontsize=10)
    rates = np.bincount(neurons, minlength=n) / duration
    ax2.hist(rates, bins=50, color="0.3")
    ax2.set_xlabel(f"firing rate (Hz) over {duration:.3g} s")
    ax2.set_ylabel("neurons")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command("sparseprop")
@click.option("--model", type=click.Choice(["lif", "qif"]), default="lif", show_default=True,
              help="Neuron model: leaky or quadratic (theta) integrate-and-fire.")
@click.option("--neurons", "n", type=int, default=100_000, show_default=True, help="N.")
@click.option("--synapses", "k", type=int, default=100, show_default=True,
              help="K: random postsynaptic targets per neuron.")
@click.option("--spikes", type=int, default=100_000, show_default=True,
              help="Network spikes to simulate.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the connectivity and the initial state.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output .npz: spike_times, spike_neurons (in order of occurrence).")
@click.option("--save-network", is_flag=True,
              help="Also write the connectivity (CSR), v0 and the parameters.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="PNG with a spike raster and the rate histogram.")
@click.option("--j0", "J0", type=float, default=1.0, show_default=True,
              help="Coupling: every synapse is a voltage jump -J0/sqrt(K).")
@click.option("--tau", type=float, default=0.01, show_default=True,
              help="Membrane time constant (s).")
@click.option("--rate", type=float, default=1.0, show_default=True,
              help="Target mean rate (Hz) that sets the drive by the balance condition.")
@click.option("--drive", type=float, default=None,
              help="External drive I (threshold units) instead of the balanced one.")
@click.option("--rebase-every", type=int, default=None,
              help="Spikes between moves of the time origin (default max(N, 1024)).")
def sparseprop_command(model, n, k, spikes, seed, out, save_network, plot, J0, tau, rate,
                       drive, rebase_every):
    """Exact event-driven simulation of a sparse balanced network (SparseProp).

    O(log N) per spike; connectivity regenerated from the seed (O(N + K) memory).
    """
    run(model, n, k, spikes, seed, Path(out), J0=J0, tau=tau, rate=rate, drive=drive,
        save_network=save_network, plot=None if plot is None else Path(plot),
        rebase_every=rebase_every)
