"""The one module that imports Lava (lazily, inside functions: importing
lava-dl's netx pulls in all of slayer and torch, a slow import).

A netx ``.net`` file -> Lava processes through lava-dl's netx -> run on
``Loihi2SimCfg(select_tag='fixed_pt')`` (bit-accurate CPU models). Inputs are fed
where netx feeds them: into ``net.inp`` for files without an input layer, into the
input layer's neuron ``a_in`` for files with one.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np

from neurodeploy.errors import ChipUnreachableError, MissingDependencyError
from neurodeploy.hardware import runner

# the lava-loihi and SLURM probes a deployment bundle's run.py makes, defined once there
from neurodeploy.hardware.runner import loihi_extension_status, slurm_controller_available  # noqa: F401


class LavaUnavailableError(MissingDependencyError):
    """lava-nc / lava-dl cannot be imported here (they need CPython 3.10)."""


def lava_available() -> bool:
    try:
        import lava.lib.dl  # noqa: F401
        import lava.magma  # noqa: F401
    except Exception:
        return False
    return True


def lava_dl_test_data() -> Optional[Path]:
    """lava-dl's installed netx test folder (networks and recorded traces under
    ``gts/``), found on sys.path without importing Lava; None when not installed."""
    for base in sys.path:
        cand = Path(base) / "tests" / "lava" / "lib" / "dl" / "netx"
        if (cand / "gts").is_dir():
            return cand
    return None


def _import_lava():
    import multiprocessing
    # Lava calls multiprocessing.set_start_method('fork') at import and fails if any
    # library (tqdm's lock, for one) already fixed the context: release it first.
    if multiprocessing.get_start_method(allow_none=True) is not None:
        multiprocessing.set_start_method(None, force=True)
    import contextlib
    import io as _io
    import logging

    # lava-dl prints a Prophesee toolbox notice and torch warns about CUDA_HOME at import
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(_io.StringIO()):
            from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc import io
    except ImportError as e:  # pragma: no cover - depends on the interpreter
        import sys
        raise LavaUnavailableError(
            f"Lava is not importable on Python {sys.version.split()[0]} ({e}). lava-nc 0.10.0 and "
            "lava-dl 0.6.0 need CPython 3.10: run through `uv run` in this project.") from None
    return netx, RunSteps, Loihi2SimCfg, io


@dataclass
class LavaRun:
    """Output of a Lava run: ``spikes`` (*out_shape, steps) as Lava's RingBuffer sink
    recorded them (step t at index t, 0-based), and optional per-layer probes."""

    spikes: np.ndarray
    probes: Dict[str, np.ndarray]


def _build_network(netx, path, stream: np.ndarray, reset_interval, reset_offset, num_layers=None,
                   skip_layers=0, input_message_bits=0):
    """lava-dl netx Network for ``path``; a file whose first block is a conv has no
    record of its input shape, so it is taken from the stream (netx order)."""
    import h5py

    with h5py.File(path, "r") as f:
        first = f["layer/0/type"][0].decode("ascii")
    kwargs = {} if first in ("input", "dense", "dense_rec") else {"input_shape": tuple(stream.shape[:-1])}
    return netx.hdf5.Network(net_config=str(path), reset_interval=reset_interval,
                             reset_offset=reset_offset, num_layers=num_layers,
                             skip_layers=int(skip_layers), input_message_bits=int(input_message_bits),
                             **kwargs)


def _wire(netx, io, path, stream: np.ndarray, steps: int, reset_interval, reset_offset,
          num_layers=None, input_bias=None, skip_layers=0, input_message_bits=0):
    """Build the netx network and connect a RingBuffer source where netx feeds
    input (``net.inp``, or the input layer's neuron ``a_in``) and a sink on ``net.out``;
    ``input_bias`` sets the input layer's bias mantissa (as lava-dl's examples inject images)."""
    net = _build_network(netx, path, stream, reset_interval, reset_offset, num_layers,
                         skip_layers, input_message_bits)
    target = runner.input_port(net)
    if tuple(stream.shape[:-1]) != tuple(target.shape):
        raise ValueError(f"input stream shape {stream.shape[:-1]} does not match the network's "
                         f"input port shape {tuple(target.shape)} (netx order, time last)")
    if input_bias is not None:
        if target is net.inp:
            raise ValueError(f"{path}: input_bias needs an input layer with neurons")
        net.in_layer.neuron.bias_mant.init = np.asarray(input_bias).astype(np.int32).reshape(
            net.in_layer.neuron.bias_mant.shape)
    return net, runner.connect_ring_buffers(io, net, target, stream, steps)


def run_netx(
    path: os.PathLike,
    stream: np.ndarray,
    steps: Optional[int] = None,
    reset_interval: Optional[int] = None,
    reset_offset: int = 0,
    input_bias: Optional[np.ndarray] = None,
    probe: Union[bool, Iterable[int]] = False,
    num_layers: Optional[int] = None,
    probe_vars: Iterable[str] = ("u", "v", "s"),
    skip_layers: int = 0,
    input_message_bits: int = 0,
    _extend=None,
) -> LavaRun:
    """Run a netx network on Lava's bit-accurate CPU simulator.

    stream: input of shape (*input_shape_in_netx_order, T) (spikes or graded
    integers); a RingBuffer sends ``stream[..., (t - 1) % T]`` at Lava step t
    (1-based), repeating cyclically when ``steps > T``. ``reset_interval`` and
    ``reset_offset`` go to netx's ``Network`` (each neuron layer i resets at
    steps where ``t % reset_interval == reset_offset + 1 + i``).
    input_bias: bias mantissa of the input layer's neurons (netx order), set on
    ``net.in_layer.neuron.bias_mant`` as lava-dl's examples inject images.
    probe: record every layer's u, v (CUBA) and spikes with Lava monitors; probes
    are keyed ``u/<j>``, ``v/<j>``, ``s/<j>`` with j the index in ``net.layers``
    (blocks that hold neurons), each (*layer_shape, steps); a collection of j
    probes only those layers, and ``probe_vars`` limits what is probed (a u or v
    monitor on a large layer costs Lava seconds per step; spike sinks are cheap).
    num_layers: build only the first blocks (netx's ``num_layers``).
    skip_layers, input_message_bits: netx's (leave out the first blocks and feed
    the next one's synapse; bits of the messages into ``net.inp``, 0 for spikes,
    which netx sets from the skipped blocks' output when it skips).
    """
    netx, RunSteps, Loihi2SimCfg, io = _import_lava()
    steps = int(stream.shape[-1] if steps is None else steps)
    net, sink = _wire(netx, io, path, stream, steps, reset_interval, reset_offset,
                      num_layers=num_layers, input_bias=input_bias, skip_layers=skip_layers,
                      input_message_bits=input_message_bits)
    if _extend is not None:  # more processes wired into the built network (residual shortcuts)
        _extend(net)
    if probe is True or probe is False:
        probed = set(range(len(net.layers))) if probe else set()
    else:
        probed = {int(j) for j in probe}
    probe_vars = set(probe_vars)
    sinks = {}
    for j, layer in enumerate(net.layers):
        if j in probed and "s" in probe_vars:
            sk = io.sink.RingBuffer(shape=layer.out.shape, buffer=steps)
            layer.out.connect(sk.a_in)
            sinks[f"s/{j}"] = sk
    monitors = {}
    if probed:
        from lava.proc.monitor.process import Monitor
        for j, layer in enumerate(net.layers):
            if j not in probed:
                continue
            for var in ("u", "v"):
                if var in probe_vars and hasattr(layer.neuron, var):
                    m = Monitor()
                    m.probe(getattr(layer.neuron, var), steps)
                    monitors[f"{var}/{j}"] = (m, getattr(layer.neuron, var))
    probes = {}
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
        for k, sk in sinks.items():
            probes[k] = np.asarray(sk.data.get())
        for k, (m, var) in monitors.items():
            data = m.get_data()[var.process.name][var.name]  # (steps, N)
            probes[k] = np.moveaxis(np.asarray(data), 0, -1).reshape(*var.shape, steps)
    finally:
        net.stop()
    return LavaRun(spikes=np.asarray(out), probes=probes)


#: state Vars zeroed between blocks by :func:`run_netx_blocks`: the LIF neuron's
#: current and voltage, every Dense synapse's buffered output (the 1-step delay)
_NEURON_STATE = ("u", "v")
_SYNAPSE_STATE = ("a_buff",)


def _state_vars(net):
    """Every state Var of a netx network built of CUBA (LIF) blocks and Dense / Conv
    synapses: (name, Var). Raises ValueError for a block whose state is not known here
    (sigma-delta, delayed or sparse synapses), rather than leave some state behind."""
    found = []
    for j, block in enumerate(net.layers):
        neuron = getattr(block, "neuron", None)
        if neuron is not None:
            if type(neuron).__name__ not in ("LIF", "LIFReset"):
                raise ValueError(f"layer {j}: fresh-state blocks support CUBA (LIF) neurons only, "
                                 f"not {type(neuron).__name__}")
            found += [(f"layer {j} neuron {v}", getattr(neuron, v)) for v in _NEURON_STATE]
        for name in ("synapse", "synapse_rec"):
            syn = getattr(block, name, None)
            if syn is None:
                continue
            if type(syn).__name__ not in ("Dense", "Conv"):
                raise ValueError(f"layer {j}: fresh-state blocks support Dense and Conv synapses "
                                 f"only, not {type(syn).__name__}")
            if type(syn).__name__ == "Dense":
                found += [(f"layer {j} {name} {v}", getattr(syn, v)) for v in _SYNAPSE_STATE]
            elif hasattr(syn, "a_buf"):  # Conv's output buffer
                found.append((f"layer {j} {name} a_buf", syn.a_buf))
    return found


def run_netx_blocks(path: os.PathLike, stream: np.ndarray, block_steps: int) -> LavaRun:
    """Run a netx network on Lava's bit-accurate CPU simulator in blocks of
    ``block_steps`` steps, each block from a fresh state: the run pauses after every
    block and sets every neuron's u and v and every synapse's buffered output to 0
    (Lava ``Var.set``), which is the state the network is built with. One network
    build for all blocks.

    netx's ``reset_interval`` resets neurons only: a recurrent block's synapse (netx
    ``dense_rec``) still delivers the last spikes before a reset into the first step
    after it, so samples fed one after another with netx resets are not independent
    on Lava. Fresh-state blocks are.

    stream: (*input_shape_in_netx_order, T), T a multiple of ``block_steps``; a
    RingBuffer sends ``stream[..., t - 1]`` at Lava step t (1-based). Returns the
    output spikes (*out_shape, T) as the sink recorded them (step t at index t - 1).
    """
    netx, RunSteps, Loihi2SimCfg, io = _import_lava()
    total = int(stream.shape[-1])
    block_steps = int(block_steps)
    if block_steps < 1 or total % block_steps:
        raise ValueError(f"stream of {total} steps is not a whole number of {block_steps}-step blocks")
    net, sink = _wire(netx, io, path, stream, total, None, 0)
    state = _state_vars(net)
    try:
        cfg = Loihi2SimCfg(select_tag="fixed_pt")
        for k in range(total // block_steps):
            if k:
                for _, var in state:
                    var.set(np.zeros(var.shape))
            net.run(condition=RunSteps(num_steps=block_steps), run_cfg=cfg)
        out = sink.data.get()
    finally:
        net.stop()
    return LavaRun(spikes=np.asarray(out), probes={})


# --- residual networks (several synapses into one neuron's a_in) ----------------
def shortcut_matrix(network, shortcut) -> np.ndarray:
    """The integer weight matrix (target neurons, source neurons) of a shortcut over
    both blocks' neurons flattened in netx's order ((x, y, c) C-order, as Lava's
    ``flatten`` of a conv block's port): the conv kernel applied to every one-hot
    source neuron, exactly (integers in float64)."""
    import torch

    src, tgt = network.layers[shortcut.source], network.layers[shortcut.target]
    if shortcut.conv:
        n = src.num_neurons
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *src.shape)
        y = torch.nn.functional.conv2d(basis, torch.tensor(np.array(shortcut.weight), dtype=torch.float64),
                                       stride=shortcut.stride, padding=shortcut.padding)
        m = y.reshape(n, -1).T.numpy()  # (target torch order, source torch order)
    else:
        m = np.asarray(shortcut.weight, dtype=np.float64)

    def order(shape):  # torch-order index of each neuron in netx flat order
        idx = np.arange(int(np.prod(shape))).reshape(tuple(shape))
        return idx.transpose(*range(idx.ndim)[::-1]).reshape(-1)

    return np.rint(m[order(tgt.shape)][:, order(src.shape)]).astype(np.int64)


def _chain_file(network, directory) -> Path:
    """The network's chain of blocks (no shortcuts) as a plain netx file, which
    lava-dl's netx builds."""
    from neurodeploy.export.netx import write_netx
    return write_netx(network.chain(), Path(directory) / "chain.net")


def run_residual_network(network, stream: np.ndarray, steps: Optional[int] = None,
                         reset_interval: Optional[int] = None, reset_offset: int = 0,
                         probe: Union[bool, Iterable[int]] = False,
                         probe_vars: Iterable[str] = ("u", "v", "s")) -> LavaRun:
    """Run a network with shortcuts (:class:`neurodeploy.network.Network` with
    ``shortcuts``) on Lava's bit-accurate CPU simulator. lava-dl's netx builds the
    chain of blocks (its Dense / Conv synapses, LIF neurons with its reset offsets);
    every shortcut is then a Lava ``DelaySparse`` (``Sparse`` without a delay)
    process from the source block's neurons' ``s_out`` (flattened) into the target
    block's neurons' ``a_in`` (reshaped), which Lava sums with the block's own
    synapse. Input, timeline and probes as in :func:`run_netx`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = _chain_file(network, tmp)
        return run_netx(path, stream, steps=steps, reset_interval=reset_interval,
                        reset_offset=reset_offset, probe=probe, probe_vars=probe_vars,
                        _extend=_shortcut_builder(network))


def _shortcut_builder(network):
    """A function that adds every shortcut of ``network`` to a netx network built
    from its chain (:func:`_chain_file`): a ``DelaySparse`` (``Sparse`` without a
    delay) from the source block's ``s_out`` into the target block's ``a_in``."""
    from scipy.sparse import csr_matrix

    from neurodeploy.layout import netx_shape
    from neurodeploy.network import holds_neurons

    _import_lava()
    from lava.proc.sparse.process import DelaySparse, Sparse

    net_block = {}  # IR block index -> index in netx's net.layers
    for i, b in enumerate(network.layers):
        if holds_neurons(b):
            net_block[i] = len(net_block)

    def attach(net):
        procs = []
        for sc in network.shortcuts:
            src = net.layers[net_block[sc.source]].neuron
            tgt = net.layers[net_block[sc.target]].neuron
            m = csr_matrix(shortcut_matrix(network, sc))
            if sc.delay:
                d = m.copy()
                d.data[:] = sc.delay
                syn = DelaySparse(weights=m, delays=d, num_message_bits=0)
            else:
                syn = Sparse(weights=m, num_message_bits=0)
            out = src.s_out if len(src.s_out.shape) == 1 else src.s_out.flatten()
            out.connect(syn.s_in)
            tshape = netx_shape(network.layers[sc.target].shape)
            (syn.a_out if len(tshape) == 1 else syn.a_out.reshape(tshape)).connect(tgt.a_in)
            procs.append(syn)
        return procs

    return attach


def run_residual_netx(path: os.PathLike, stream: np.ndarray, **kw) -> LavaRun:
    """:func:`run_residual_network` on the network stored in a ``.net`` file."""
    from neurodeploy.export.netx import read_netx
    return run_residual_network(read_netx(path), stream, **kw)


# --- Loihi 2 hardware (Intel's lava-loihi extension) ---------------------------
class LoihiUnavailableError(ChipUnreachableError):
    """No Loihi 2 run is possible here: lava-loihi missing or no system reachable."""


def connect_loihi(kind: str, partition: Optional[str] = None, board: Optional[str] = None,
                  host: Optional[str] = None, loihi_gen: str = "N3B3") -> None:
    """Point Lava at a Loihi 2 system: ``kind`` 'slurm' (use_slurm_host, with a
    partition or board) or 'ethernet' (use_ethernet_host, host address)."""
    ok, reason = loihi_extension_status()
    if not ok:
        raise LoihiUnavailableError(reason)
    from lava.utils import loihi
    gen = loihi.ChipGeneration(loihi_gen)
    try:
        if kind == "slurm":
            loihi.use_slurm_host(partition=partition, board=board, loihi_gen=gen)
        elif kind == "ethernet":
            loihi.use_ethernet_host(host_address=host, loihi_gen=gen)
        else:
            raise ValueError(f"unknown Loihi connection kind {kind!r} (slurm or ethernet)")
    except (ImportError, ValueError) as e:
        raise LoihiUnavailableError(f"cannot connect to Loihi 2 ({kind}): {e}") from None


@dataclass
class LoihiRun:
    """Output of a Loihi 2 run: ``spikes`` (*out_shape, steps) and what
    lava-loihi's profiler measured (None where it gave nothing): mean time per
    step in microseconds (Loihi2ExecutionTime.avg_time_per_step), mean total and
    static power in watts (Loihi2Power.total_power / static_total_power), energy per
    step in microjoules (total power x time per step) and its dynamic part
    ((total - static) power x time per step)."""

    spikes: np.ndarray
    time_per_step_us: Optional[float] = None
    total_power_w: Optional[float] = None
    static_power_w: Optional[float] = None
    energy_per_step_uj: Optional[float] = None
    dynamic_energy_per_step_uj: Optional[float] = None
    notes: tuple = ()


def run_netx_on_loihi(path: os.PathLike, stream: np.ndarray, steps: Optional[int] = None,
                      reset_interval: Optional[int] = None, reset_offset: int = 0,
                      profile: bool = True) -> LoihiRun:
    """Run a netx network on Loihi 2 with ``Loihi2HwCfg`` (call :func:`connect_loihi`
    first). Inputs as in :func:`run_netx`; a residual file's shortcuts are added to
    the chain netx builds, as in :func:`run_residual_network`. Raises :class:`LoihiUnavailableError`
    without lava-loihi, before ``Loihi2HwCfg`` is touched."""
    ok, reason = loihi_extension_status()
    if not ok:
        raise LoihiUnavailableError(reason)
    netx, RunSteps, _, io = _import_lava()
    from lava.magma.core.run_configs import Loihi2HwCfg

    steps = int(stream.shape[-1] if steps is None else steps)
    notes = []
    callbacks, power, runtime = [], None, None
    if profile:
        callbacks, power, runtime, note = runner.profiler_callbacks(steps)
        notes += [note] if note else []
    import tempfile

    from neurodeploy.export.netx import read_netx
    network = read_netx(path)
    with tempfile.TemporaryDirectory() as tmp:
        if network.shortcuts:  # netx builds the chain; the shortcuts are added to it
            path = _chain_file(network, tmp)
        net, sink = _wire(netx, io, path, stream, steps, reset_interval, reset_offset)
        if network.shortcuts:
            _shortcut_builder(network)(net)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2HwCfg(callback_fxs=callbacks))
        out = sink.data.get()
    finally:
        net.stop()
    result = LoihiRun(spikes=np.asarray(out), notes=tuple(notes))
    try:
        for key, value in runner.profiler_readings(power, runtime).items():
            setattr(result, key, value)
        if result.time_per_step_us is not None and result.total_power_w is not None:
            result.energy_per_step_uj = result.total_power_w * result.time_per_step_us
            if result.static_power_w is not None:
                result.dynamic_energy_per_step_uj = ((result.total_power_w - result.static_power_w)
                                                     * result.time_per_step_us)
    except Exception as e:  # attribute names differ between lava-loihi releases
        result.notes = result.notes + (f"could not read profiler results ({e})",)
    return result


# --- Spiking Recurrent Cell networks (neurodeploy's own Lava process) ------------------
def run_src_network(network, stream: np.ndarray, steps: Optional[int] = None,
                    reset_interval: Optional[int] = None, reset_offset: int = 0,
                    probe: Union[bool, Iterable[int]] = False,
                    probe_vars: Iterable[str] = ("i", "h", "hs", "s")) -> LavaRun:
    """Run a network of dense blocks with SRC neurons (:class:`neurodeploy.network.SrcNeuron`,
    read from a ``.net`` file with :func:`neurodeploy.export.netx.read_netx`) on Lava's
    CPU simulator, ``Loihi2SimCfg(select_tag='fixed_pt')``: RingBuffer source -> Dense ->
    SRC -> Dense -> SRC ... -> RingBuffer sink, the processes netx would build for CUBA
    blocks with the SRC process (``neurodeploy.lava_src``) in place of LIF.

    Each Dense gets netx's synapse parameters (``netx.utils.optimize_weight_bits`` of the
    stored weights) and the previous block's message bits. Input and timeline as in
    :func:`run_netx` (neuron layer j resets where ``t % reset_interval == reset_offset + 1 + j``).
    probe: record i, h, hs (kept by the process, see ``lava_src.process.SRC``) and s
    (sinks) of every block, or of the block indices given; probes are keyed
    ``<var>/<j>`` with j the index in ``network.layers``, each (neurons, steps)."""
    return run_src_networks([network], stream, steps, reset_interval, reset_offset, probe,
                            probe_vars)[0]


def run_src_networks(networks, stream: np.ndarray, steps: Optional[int] = None,
                     reset_interval: Optional[int] = None, reset_offset: int = 0,
                     probe: Union[bool, Iterable[int]] = False,
                     probe_vars: Iterable[str] = ("i", "h", "hs", "s")):
    """:func:`run_src_network` for several networks of the same input width at once,
    all fed by one source: one Lava build and run -> a :class:`LavaRun` per network."""
    netx, RunSteps, Loihi2SimCfg, io = _import_lava()
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.proc.dense.process import Dense as LavaDense

    from neurodeploy.lava_src.process import SRC
    from neurodeploy.network import Dense, Input, SrcNeuron
    from neurodeploy.sim.samples import reset_phase

    steps = int(stream.shape[-1] if steps is None else steps)
    stream = np.asarray(stream)
    source = io.source.RingBuffer(data=stream.astype(np.int32))
    built = []
    for network in networks:
        blocks = list(network.layers)
        # a neuron-less input block only names the input shape (netx builds no layer for it);
        # records keep the file's block index
        k0 = int(bool(blocks) and isinstance(blocks[0], Input) and blocks[0].neuron is None)
        blocks = blocks[k0:]
        if not blocks or not all(isinstance(b, Dense) and isinstance(b.neuron, SrcNeuron) and b.weight_rec is None
                   and b.delay is None for b in blocks):
            raise ValueError("run_src_network runs dense blocks with SRC neurons only "
                             "(no recurrent weights, no delays)")
        n_in = blocks[0].in_features
        if stream.ndim != 2 or stream.shape[0] != n_in:
            raise ValueError(f"input stream shape {stream.shape[:-1]} does not match the network's "
                             f"input ({n_in},) (time last)")
        port, bits = source.s_out, int(network.input_message_bits)
        probed = (set(range(len(blocks))) if probe is True else set() if probe is False
                  else {int(j) - k0 for j in probe})
        neurons = []
        for j, block in enumerate(blocks):
            w, num_weight_bits, weight_exp, _ = optimize_weight_bits(np.asarray(block.weight))
            syn = LavaDense(weights=np.asarray(w).astype(np.int32), weight_exp=int(weight_exp),
                            num_weight_bits=int(num_weight_bits), num_message_bits=bits)
            p = block.neuron
            offset = reset_phase(j, reset_interval, reset_offset) if reset_interval else 0
            bias = np.zeros(block.num_neurons, np.int64) if block.bias is None else block.bias
            cell = SRC(shape=(block.num_neurons,), bias=bias, x_table=np.asarray(p.x_table),
                       h_table=np.asarray(p.h_table), input_decay=p.input_decay,
                       input_shift=p.input_shift, x_shift=p.x_shift, h_shift=p.h_shift,
                       gain_fast=p.gain_fast, gain_slow=p.gain_slow, update_decay=p.update_decay,
                       gate_threshold=p.gate_threshold, slow_decay_rest=p.slow_decay_rest,
                       slow_decay_active=p.slow_decay_active, output=p.output,
                       message_shift=p.message_shift, reset_state=p.reset_state,
                       reset_interval=int(reset_interval or 0),
                       reset_offset=offset, record_steps=steps if j in probed else 0)
            port.connect(syn.s_in)
            syn.a_out.connect(cell.a_in)
            port, bits = cell.s_out, p.message_bits
            neurons.append(cell)
        sink = io.sink.RingBuffer(shape=(blocks[-1].num_neurons,), buffer=steps)
        port.connect(sink.a_in)
        sinks = {}
        for j in sorted(probed):
            if "s" in probe_vars:
                sk = io.sink.RingBuffer(shape=(blocks[j].num_neurons,), buffer=steps)
                neurons[j].s_out.connect(sk.a_in)
                sinks[f"s/{j + k0}"] = sk
        built.append((sink, sinks, {j + k0: neurons[j] for j in probed}))
    runs = []
    try:
        source.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        for sink, sinks, recorded in built:
            probes = {k: np.asarray(sk.data.get()) for k, sk in sinks.items()}
            for j, cell in recorded.items():
                data = np.asarray(cell.record.get())  # (steps, 3, N)
                for k, var in enumerate(("i", "h", "hs")):
                    if var in probe_vars:
                        probes[f"{var}/{j}"] = data[:, k].T
            runs.append(LavaRun(spikes=np.asarray(sink.data.get()), probes=probes))
    finally:
        source.stop()
    return runs


def run_src_netx(path: os.PathLike, stream: np.ndarray, **kw) -> LavaRun:
    """:func:`run_src_network` on the network stored in a ``.net`` file."""
    from neurodeploy.export.netx import read_netx
    return run_src_network(read_netx(path), stream, **kw)
