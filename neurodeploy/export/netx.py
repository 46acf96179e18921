"""Read and write lava-dl netx ``.net`` HDF5 files (h5py only; no Lava import).

Layout, as slayer's ``export_hdf5`` writes it and ``lava.lib.dl.netx.hdf5.Network``
reads it: no attributes, only datasets; ``layer/<i>/type`` (S10) is one of input,
dense, dense_rec, conv, pool, flatten, average, convT, unpool; ``shape`` is int64
in torch order; ``neuron/`` holds the integer neuron fields (CUBA: iDecay, vDecay,
vThMant, refDelay, gradedSpike).

Weights are stored as the effective integers Lava's Dense must use. netx re-derives
the synapse's ``weight_exponent``/``num_weight_bits`` from them
(``netx.utils.optimize_weight_bits``: shifts the integers up by ``scale_bits`` and
sets ``weight_exponent = -scale_bits``), which leaves ``W @ s`` unchanged for the
values :func:`neurodeploy.fixedpoint.quantize_weights` produces.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import h5py
import numpy as np

from neurodeploy import fixedpoint as fx
from neurodeploy.errors import InputError
from neurodeploy.network import (
    Conv,
    CubaNeuron,
    Dense,
    Flatten,
    Input,
    Network,
    SigmaDeltaNeuron,
    SrcNeuron,
)

SUPPORTED_BLOCKS = ("input", "dense", "dense_rec", "conv", "flatten",
                    "conv_res", "dense_res")  # the last two: docs/residual.md
KNOWN_BLOCKS = SUPPORTED_BLOCKS + ("pool", "average", "convT", "unpool")


#: the activation of Lava's SigmaDelta process as netx builds it (act_mode RELU)
NETX_SDNN_ACTIVATION = "relu"


class NetxFormatError(InputError):
    """A .net file is missing, corrupt, or describes something we cannot read (an
    :class:`InputError`, exit code 2)."""


# --- writing ----------------------------------------------------------------
def _write_type(g: h5py.Group, name: str) -> None:
    g.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _write_neuron(g: h5py.Group, neuron) -> None:
    if neuron is None:
        return
    if isinstance(neuron, SrcNeuron):  # neurodeploy's extension block (export.netx_src)
        from neurodeploy.export.netx_src import write_src_neuron
        write_src_neuron(g, neuron)
    elif isinstance(neuron, CubaNeuron):
        g.create_dataset("neuron/type", data="CUBA")
        # one value per layer, or an int64 array of one per neuron (slayer's shared_param=False)
        g.create_dataset("neuron/iDecay", data=np.asarray(neuron.current_decay, dtype=np.int64))
        g.create_dataset("neuron/vDecay", data=np.asarray(neuron.voltage_decay, dtype=np.int64))
        g.create_dataset("neuron/vThMant", data=np.asarray(neuron.threshold, dtype=np.int64))
        g.create_dataset("neuron/refDelay", data=int(neuron.refractory_delay))
        g.create_dataset("neuron/gradedSpike", data=bool(neuron.graded_spike))
    elif isinstance(neuron, SigmaDeltaNeuron):
        g.create_dataset("neuron/type", data="SDNN")
        g.create_dataset("neuron/activation", data=NETX_SDNN_ACTIVATION)
        if neuron.threshold is not None:
            g.create_dataset("neuron/vThMant", data=int(neuron.threshold))
        if neuron.sigma_output:
            g.create_dataset("neuron/sigma_output", data=True)
    else:
        raise TypeError(f"cannot write neuron of type {type(neuron).__name__}")


def _write_bias_delay_neuron(g: h5py.Group, layer) -> None:
    """A dense or conv block's optional bias and delays (float32, as slayer writes
    them) and its neuron."""
    if layer.bias is not None:
        g.create_dataset("bias", data=layer.bias.astype(np.float32))
    if layer.delay is not None:
        g.create_dataset("delay", data=layer.delay.astype(np.float32))
    _write_neuron(g, layer.neuron)


def _check_dense_weights(i: int, name: str, w: np.ndarray) -> None:
    """Refuse weights that are not 8-bit Loihi synapses: with mixed signs the chip's
    8-bit mantissa drops the lowest bit, so only even integers in [-256, 254] are exact
    (netx would carry an odd value as a 9-bit weight that no chip has)."""
    eff = fx.effective_weights(w)
    if not np.array_equal(eff, w):
        bad = tuple(int(v) for v in np.argwhere(eff != w)[0])   # plain ints in the message
        raise fx.BitWidthError(
            f"layer {i}: {name}[{bad}] = {w[bad]} is not an 8-bit Loihi weight "
            f"(the nearest one is {eff[bad]}); quantise with fixedpoint.quantize_weights"
        )


def write_netx(network: Network, path: Union[str, os.PathLike]) -> Path:
    """Write ``network`` as a netx ``.net`` file; validates bit widths first, so a
    bad network leaves no partial file behind. The file always names its input
    shape: a network without an input block is written with a neuron-less input
    block first (``type`` input and ``shape`` only), which netx reads as the input
    shape and builds no layer for (see :meth:`Network.with_input_block`); reading
    the file back gives that block as layer 0."""
    path = Path(path)
    for i, layer in enumerate(network.layers):
        if isinstance(layer, (Dense, Conv)):
            if layer.weight_exp != 0:
                raise NotImplementedError(
                    f"layer {i}: netx stores no weight exponent; fold weight_exp={layer.weight_exp} "
                    "into the weights before export")
            _check_dense_weights(i, "weight", layer.weight)
            if isinstance(layer, Dense) and layer.weight_rec is not None:
                _check_dense_weights(i, "weight_rec", np.hstack([layer.weight, layer.weight_rec]))
            if layer.delay is not None:
                fx.check_range("delay", layer.delay, 0, fx.NETX_MAX_DELAY, where=f"layer {i}: ")
    for sc in network.shortcuts:
        _check_dense_weights(sc.target, f"shortcut from {sc.source}: weight", sc.weight)
    network = network.with_input_block()  # after the checks: their messages name the blocks as given
    tmp = path.with_suffix(path.suffix + ".tmp")
    with h5py.File(tmp, "w") as f:
        for i, layer in enumerate(network.layers):
            g = f.create_group(f"layer/{i}")
            if isinstance(layer, Input):
                _write_type(g, "input")
                g.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
                g.create_dataset("weight", data=np.float32(layer.weight))  # a scalar: netx takes int() of it
                if layer.bias is not None:
                    g.create_dataset("bias", data=layer.bias.astype(np.float32))
                _write_neuron(g, layer.neuron)
            elif isinstance(layer, Dense):
                _write_type(g, "dense_rec" if layer.weight_rec is not None else "dense")
                g.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
                g.create_dataset("inFeatures", data=layer.in_features)
                g.create_dataset("outFeatures", data=layer.num_neurons)
                g.create_dataset("weight", data=layer.weight.astype(np.float32))
                if layer.weight_rec is not None:
                    g.create_dataset("weight_rec", data=layer.weight_rec.astype(np.float32))
                _write_bias_delay_neuron(g, layer)
            elif isinstance(layer, Conv):
                _write_type(g, "conv")
                g.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
                g.create_dataset("inChannels", data=layer.weight.shape[1] * layer.groups)
                g.create_dataset("outChannels", data=layer.weight.shape[0])
                g.create_dataset("kernelSize", data=np.array(layer.weight.shape[2:], dtype=np.int64))
                g.create_dataset("stride", data=np.array(layer.stride, dtype=np.int64))
                g.create_dataset("padding", data=np.array(layer.padding, dtype=np.int64))
                g.create_dataset("dilation", data=np.array(layer.dilation, dtype=np.int64))
                g.create_dataset("groups", data=layer.groups)
                g.create_dataset("weight", data=layer.weight.astype(np.float32))
                _write_bias_delay_neuron(g, layer)
            elif isinstance(layer, Flatten):
                _write_type(g, "flatten")
                g.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
            else:
                raise TypeError(f"layer {i}: cannot write block {type(layer).__name__}")
        if network.shortcuts:  # neurodeploy's extension (export.netx_residual)
            from neurodeploy.export.netx_residual import write_shortcuts
            write_shortcuts(f, network)
    os.replace(tmp, path)
    return path


# --- reading ----------------------------------------------------------------
def _scalar(g: h5py.Group, key: str, where: str):
    if key not in g:
        raise NetxFormatError(f"{where}: missing dataset '{key}'")
    v = g[key][()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else v
    if isinstance(v, bytes):
        v = v.decode("ascii")
    return v


def _array(g: h5py.Group, key: str, where: str, required: bool = True):
    if key not in g:
        if required:
            raise NetxFormatError(f"{where}: missing dataset '{key}'")
        return None
    return np.asarray(g[key][()])


def _integers(a: np.ndarray, what: str, where: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)) or not np.array_equal(np.round(a), a):
        raise NetxFormatError(f"{where}: {what} must hold integers (Loihi fixed point)")
    return a.astype(np.int64)


def _field(n: h5py.Group, key: str, where: str):
    """A CUBA field: one integer, or a 1-D array of one per neuron."""
    v = np.asarray(_array(n, key, where))
    if v.ndim > 1:
        raise NetxFormatError(f"{where}: '{key}' must be one value or a 1-D per-neuron array, "
                              f"got shape {v.shape}")
    return _integers(v, key, where).reshape(-1) if v.size > 1 else int(_integers(v, key, where).reshape(-1)[0])


def _check_activation(n: h5py.Group, where: str) -> None:
    """A sigma-delta neuron's ``activation`` (slayer writes its function's name): netx
    ignores it and Lava's SigmaDelta applies ReLU, so any other value would be run as
    ReLU, unlike the trained network: refused."""
    if "activation" not in n:
        return
    act = str(_scalar(n, "activation", where))
    if act != NETX_SDNN_ACTIVATION:
        raise NetxFormatError(f"{where}: activation '{act}' is not supported: Lava's netx runs "
                              f"every sigma-delta block with '{NETX_SDNN_ACTIVATION}', the only "
                              "activation accepted")


def _read_neuron(g: h5py.Group, where: str):
    if "neuron" not in g:
        return None
    n = g["neuron"]
    kind = str(_scalar(n, "type", where + "/neuron"))
    w = f"{where}/neuron ({kind})"
    if kind in ("CUBA", "LOIHI"):
        try:
            return CubaNeuron(  # one value per layer, or per-neuron arrays
                current_decay=_field(n, "iDecay", w),
                voltage_decay=_field(n, "vDecay", w),
                threshold=_field(n, "vThMant", w),
                refractory_delay=int(_scalar(n, "refDelay", w)) if "refDelay" in n else 1,
                graded_spike=bool(_scalar(n, "gradedSpike", w)) if "gradedSpike" in n else False,
            )
        except fx.BitWidthError as e:
            raise fx.BitWidthError(f"{w}: {e}") from None
    if kind == "SDNN":
        _check_activation(n, w)
        sigma_output = "sigma_output" in n
        # a sigma-output block needs no threshold (netx builds Lava's Sigma without one;
        # lava-dl's dendrite.Sigma, micro-YOLO's last layer, stores none)
        threshold = None if sigma_output and "vThMant" not in n else int(_scalar(n, "vThMant", w))
        return SigmaDeltaNeuron(threshold=threshold, sigma_output=sigma_output)
    if kind == "SRC":  # neurodeploy's extension block (export.netx_src)
        from neurodeploy.export.netx_src import read_src_neuron
        return read_src_neuron(n, w, NetxFormatError)
    raise NetxFormatError(f"{w}: neuron type '{kind}' is not supported (CUBA/LOIHI, SDNN, SRC are)")


#: netx's default message bits of a sigma-delta layer's graded spikes
NETX_SDNN_MESSAGE_BITS = 16


def _message_bits(g: h5py.Group, where: str) -> int:
    """Bits of the messages a block sends, as netx reads them: the neuron's
    'messageBits', else 16 for sigma-delta neurons and 0 (spikes) for the others."""
    if "neuron" not in g:
        return 0
    n = g["neuron"]
    if "messageBits" in n:
        return int(_scalar(n, "messageBits", where + "/neuron"))
    return NETX_SDNN_MESSAGE_BITS if str(_scalar(n, "type", where + "/neuron")) == "SDNN" else 0


def _delays(d, where: str):
    """Stored delays as netx builds them: floored to integers, and clamped to
    0..62 (netx's DelayDense ``max_delay``) with a warning, as netx does."""
    if d is None:
        return None
    d = np.floor(np.asarray(d, dtype=np.float64)).astype(np.int64).reshape(-1)
    if d.size and d.max() > fx.NETX_MAX_DELAY:
        import warnings
        warnings.warn(f"{where}: delay {int(d.max())} is beyond netx's {fx.NETX_MAX_DELAY}; clamped "
                      f"to {fx.NETX_MAX_DELAY} as lava-dl's netx clamps it")
        d = np.minimum(d, fx.NETX_MAX_DELAY)
    return d


def _open_netx(path: Path) -> h5py.File:
    """The HDF5 file, or FileNotFoundError / NetxFormatError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"netx file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise NetxFormatError(f"{path}: not a readable HDF5 file ({e})") from None


def _layer_keys(f: h5py.File, path: Path) -> list:
    """The block groups' names, in order (netx requires 0..N-1)."""
    if "layer" not in f:
        raise NetxFormatError(f"{path}: no 'layer' group; not a netx network file")
    keys = sorted(f["layer"].keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if [int(k) for k in keys if k.isdigit()] != list(range(len(keys))):
        raise NetxFormatError(f"{path}: layer groups must be named 0..N-1, found {keys}")
    return keys


def _block_type(g: h5py.Group, where: str) -> str:
    """The block's ``type``, refused unless this reader builds it."""
    try:
        kind = str(_scalar(g, "type", where))
    except Exception as e:  # corrupt dataset
        raise NetxFormatError(f"{where}: unreadable 'type' ({e})") from None
    if kind not in KNOWN_BLOCKS:
        raise NetxFormatError(f"{where} ({kind}): unknown block type")
    if kind not in SUPPORTED_BLOCKS:
        raise NetxFormatError(f"{where} ({kind}): block type '{kind}' is not supported "
                              f"(supported: {', '.join(SUPPORTED_BLOCKS)})")
    return kind


def _bias(g: h5py.Group, where: str):
    b = _array(g, "bias", where, required=False)
    return None if b is None else _integers(b, "bias", where).reshape(-1)


def _read_input(g: h5py.Group, block_shape: tuple, where: str) -> Input:
    w = _array(g, "weight", where, required=False)
    return Input(shape=block_shape, neuron=_read_neuron(g, where),
                 weight=float(np.asarray(w).reshape(-1)[0]) if w is not None else 64.0,
                 bias=_bias(g, where))


def _read_dense(g: h5py.Group, kind: str, block_shape: tuple, where: str) -> Dense:
    w = _integers(_array(g, "weight", where), "weight", where)
    if w.ndim == 1:
        w = w.reshape(int(np.prod(block_shape)), -1)
    wr = None
    if kind == "dense_rec":
        wr = _integers(_array(g, "weight_rec", where), "weight_rec", where)
        wr = wr.reshape(w.shape[0], -1)
    d = _delays(_array(g, "delay", where, required=False), where)
    neuron = _read_neuron(g, where)
    if neuron is None:  # netx's default: Lava LIF(du=-1, dv=4096, vth=1 << 17)
        neuron = CubaNeuron(*fx.NETX_DEFAULT_CUBA)
    return Dense(weight=w, neuron=neuron, weight_rec=wr, bias=_bias(g, where), delay=d)


def _read_conv(g: h5py.Group, block_shape: tuple, where: str) -> Conv:
    w = _integers(_array(g, "weight", where), "weight", where)
    if w.ndim == 5:  # slayer's (out, in, kH, kW, 1)
        w = w[..., 0]
    if w.ndim != 4:
        raise NetxFormatError(f"{where}: conv weight must be 4-D (out, in, kH, kW), got {w.shape}")
    d = _array(g, "delay", where, required=False)
    return Conv(weight=w, neuron=_read_neuron(g, where), shape=block_shape,
                stride=tuple(_array(g, "stride", where).reshape(-1)),
                padding=tuple(_array(g, "padding", where).reshape(-1)),
                dilation=tuple(_array(g, "dilation", where).reshape(-1)),
                groups=int(_scalar(g, "groups", where)), bias=_bias(g, where),
                delay=None if d is None else np.floor(d).astype(np.int64).reshape(-1))


def _read_block(g: h5py.Group, kind: str, block_shape: tuple, where: str):
    """One block (a residual block's shortcuts are read by the caller)."""
    if kind == "input":
        return _read_input(g, block_shape, where)
    if kind in ("dense", "dense_rec"):
        return _read_dense(g, kind, block_shape, where)
    if kind == "conv":
        return _read_conv(g, block_shape, where)
    return Flatten(shape=block_shape)


def _network_input_shape(layer, given_shape, where: str) -> tuple:
    """The network's input shape from its first block: an input block's shape, a dense
    block's fan-in, or for a conv block the ``input_shape`` the caller gave."""
    if isinstance(layer, Input):
        return tuple(layer.shape)
    if isinstance(layer, Dense):
        return (layer.weight.shape[1],)
    if isinstance(layer, Conv):
        if given_shape is None:
            raise NetxFormatError(f"{where}: the file starts with a conv block and stores no "
                                  "input shape; pass input_shape=(C, H, W)")
        return given_shape
    return None


def _skipped_input(layers: list, bits: list, input_shape: tuple, skip: int) -> tuple:
    """(input shape, input message bits) of the network left after the first ``skip``
    blocks: the skipped blocks' output shape and message bits."""
    shape, message_bits = input_shape, 0
    for layer, b in zip(layers[:skip], bits):
        if isinstance(layer, Flatten):
            shape = (int(np.prod(shape)),)
            continue
        shape = (layer.num_neurons,) if isinstance(layer, Dense) else tuple(layer.shape)
        if not (isinstance(layer, Input) and layer.neuron is None):
            message_bits = b  # netx: the input message bits of whatever block comes next
    return shape, message_bits


def read_netx(path: Union[str, os.PathLike], input_shape=None, num_layers=None,
              skip_layers: int = 0) -> Network:
    """Read a netx ``.net`` file into a :class:`Network`, with errors naming the
    file, layer and dataset. ``input_shape`` (torch order, (C, H, W)) is needed only
    for files whose first block is a conv and that name no input shape (no input
    block: files of other exporters; ``write_netx`` always writes one).
    ``num_layers``: read only the first blocks (as netx's ``Network(num_layers=...)``).
    ``skip_layers``: leave out the first blocks, as netx's ``Network(skip_layers=...)``
    does (lava-dl feeds the first kept block's synapse directly, e.g. with a
    recording of the skipped input layer's output): the network then takes the
    skipped blocks' output shape, and their output message bits (graded for
    sigma-delta, 0 for spikes) as its ``input_message_bits``; netx's reset offsets
    count the kept blocks only, as the simulator does."""
    path = Path(path)
    skip = int(skip_layers)
    if skip < 0:
        raise ValueError(f"skip_layers must be >= 0, got {skip_layers}")
    given_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
    layers, bits, shortcuts, input_shape = [], [], [], None
    with _open_netx(path) as f:
        keys = _layer_keys(f, path)
        for i, k in enumerate(keys if num_layers is None else keys[:max(0, int(num_layers))]):
            g = f["layer"][k]
            kind = _block_type(g, f"{path}: layer {i}")
            where = f"{path}: layer {i} ({kind})"
            block_shape = tuple(int(s) for s in _array(g, "shape", where).reshape(-1))
            if kind in ("conv_res", "dense_res"):  # neurodeploy's extension (export.netx_residual)
                from neurodeploy.export.netx_residual import RESIDUAL_TYPES, read_shortcuts
                shortcuts += read_shortcuts(g, i, where, NetxFormatError)
                kind = RESIDUAL_TYPES[kind]
            layer = _read_block(g, kind, block_shape, where)
            if input_shape is None or isinstance(layer, Input):
                input_shape = _network_input_shape(layer, given_shape, where)
            layers.append(layer)
            if i < skip:  # only the skipped blocks' output bits are needed
                bits.append(_message_bits(g, where))
    if shortcuts:
        if skip or num_layers is not None:
            raise ValueError(f"{path}: a residual network (shortcuts between blocks) is read whole; "
                             "skip_layers and num_layers cut its shortcuts")
        try:
            return Network(layers=tuple(layers), input_shape=input_shape, name=path.stem,
                           shortcuts=tuple(shortcuts))
        except ValueError as e:
            raise NetxFormatError(f"{path}: {e}") from None
    if skip == 0:
        return Network(layers=tuple(layers), input_shape=input_shape, name=path.stem)
    if skip >= len(layers):
        raise ValueError(f"{path}: skip_layers={skip} leaves none of the {len(layers)} blocks read")
    shape, message_bits = _skipped_input(layers, bits, input_shape, skip)
    return Network(layers=tuple(layers[skip:]), input_shape=shape, name=path.stem,
                   input_message_bits=message_bits)
