"""Checks at the edges: every file, array, option and output path a command takes
is checked here before any work starts.

Each failure is one line naming the file, the field and what was expected, raised
as an error of :mod:`neurodeploy.errors` (the CLI prints it and exits with its
code: 2 bad input, 5 unusable output location; see ``docs/cli.md``). Nothing is
cast silently: a float array is accepted as spikes only when every value is an
integer, and is then converted exactly.

numpy, h5py and yaml only (no torch); the netx reader is imported when a network
is loaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import yaml

from neurodeploy.errors import InputError, NeurodeployError, OutputError

#: Lava's messages are int32: inputs outside this range cannot be sent
MESSAGE_RANGE = (-(2 ** 31), 2 ** 31 - 1)
#: elements checked at a time (memory-mapped inputs are never read whole)
CHUNK = 1 << 22


class OutputDirError(OutputError):
    """An output directory or file cannot be used: not writable, not empty, or
    holding another run (exit code 5)."""


class InputFileError(InputError):
    """An input file (array, data file, configuration) is missing, unreadable or
    holds something other than what is expected (exit code 2)."""


# --- networks -----------------------------------------------------------------
def load_network(path, option: str = "MODEL", **read_kwargs):
    """Read a netx ``.net`` file; anything unreadable or malformed is one
    :class:`~neurodeploy.export.netx.NetxFormatError` line naming the file."""
    from neurodeploy.export.netx import NetxFormatError, read_netx

    path = Path(path)
    if not path.is_file():
        raise NetxFormatError(f"{option} {path}: no such file; expected a netx .net file")
    try:
        return read_netx(path, **read_kwargs)
    except NeurodeployError as e:
        if "\n" in str(e).strip():  # e.g. a value's repr in the message: keep it one line
            raise type(e)(" ".join(str(e).split())) from None
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as e:
        # the reader's own checks name the layer; anything below them (h5py, numpy,
        # the network's shape checks) still means the file is not a network we can run
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NetxFormatError(f"{option} {path}: not a valid netx network ({msg})") from None


# --- arrays -------------------------------------------------------------------
def load_array(path, option: str, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` array (``mmap``: memory-mapped, read as used). No pickles."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{option} {path}: no such file; expected a .npy array")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # numpy's header parser raises whatever a damaged header provokes
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(f"{option} {path}: not a readable .npy array ({type(e).__name__}: {msg})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise InputFileError(f"{option} {path}: an .npz archive; expected a single .npy array")
    return arr


def load_samples(path, option: str = "--data") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """An ``.npz`` with ``inputs`` (samples, *input_shape, T) and optional ``labels``
    (samples,); both read whole. Shapes and values are checked by
    :func:`check_inputs` / :func:`check_labels` against the network."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{option} {path}: no such file; expected an .npz with 'inputs' "
                             "(samples, *input_shape, T) and optional 'labels' (samples,)")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise InputFileError(f"{option} {path}: a single .npy array; expected an .npz with 'inputs' "
                                 "(samples, *input_shape, T) and optional 'labels' (samples,)")
        with f:
            keys = list(f.keys())
            if "inputs" not in keys:
                raise InputFileError(f"{option} {path}: no 'inputs' array (keys: {keys}); expected "
                                     "'inputs' (samples, *input_shape, T) and optional 'labels' (samples,)")
            inputs = np.asarray(f["inputs"])
            labels = np.asarray(f["labels"]) if "labels" in keys else None
    except NeurodeployError:
        raise
    except Exception as e:  # zipfile, zlib and numpy's header parser: a damaged archive
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(f"{option} {path}: not a readable .npz file ({type(e).__name__}: {msg})") from None
    return inputs, labels


def _chunks(arr: np.ndarray):
    flat = arr.reshape(-1) if arr.flags.c_contiguous or arr.flags.f_contiguous else np.ravel(arr)
    for s in range(0, flat.size, CHUNK):
        yield np.asarray(flat[s:s + CHUNK])


def check_inputs(x: np.ndarray, input_shape: Sequence[int], source: str, order: str = "torch",
                 allow_single: bool = False) -> np.ndarray:
    """Spike or graded inputs (samples, *shape, T): an integer (or bool, or
    integer-valued float) array, at least one sample and one step, values in
    Lava's int32 message range, ``shape`` = ``input_shape`` (``order`` "netx":
    reversed). Returns the array (integer-valued floats converted exactly to
    int64; integer arrays, memory maps included, unchanged). ``allow_single``:
    (*shape, T) is one sample."""
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    shape = tuple(int(s) for s in input_shape)
    shape = shape[::-1] if order == "netx" else shape
    want = f"(samples, {', '.join(map(str, shape))}, T)" + (" in netx order" if order == "netx" else "")
    if allow_single and x.ndim == len(shape) + 1 and tuple(x.shape[:-1]) == shape:
        x = x[None]
    if x.ndim != len(shape) + 2 or tuple(x.shape[1:-1]) != shape:
        raise InputFileError(f"{source}: shape {x.shape}; expected {want}")
    if x.shape[0] < 1:
        raise InputFileError(f"{source}: no samples (shape {x.shape}); expected at least one")
    if x.shape[-1] < 1:
        raise InputFileError(f"{source}: no time steps (shape {x.shape}); expected T >= 1")
    return check_values(x, source)


def check_values(x: np.ndarray, source: str) -> np.ndarray:
    """The values of an input array: integers (bool, integer, or integer-valued
    float), finite, in Lava's int32 message range, at least one element. Returns it
    (floats converted exactly to int64, bools to int8; integers unchanged)."""
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    if x.size == 0:
        raise InputFileError(f"{source}: empty (shape {x.shape}); expected at least one sample and step")
    kind = x.dtype.kind
    if kind not in "biuf":
        raise InputFileError(f"{source}: dtype {x.dtype}; expected integers (spikes or graded values)")
    lo = hi = None
    for c in _chunks(x):
        if kind == "f":
            if not np.all(np.isfinite(c)):
                raise InputFileError(f"{source}: non-finite values (nan/inf); expected integers")
            if not np.array_equal(np.round(c), c):
                bad = c[np.round(c) != c][0]
                raise InputFileError(f"{source}: non-integer value {bad!r} (dtype {x.dtype}); expected "
                                     "integers (Loihi fixed point); nothing is rounded for you")
        if c.size:
            cmin, cmax = c.min(), c.max()
            lo = cmin if lo is None else min(lo, cmin)
            hi = cmax if hi is None else max(hi, cmax)
    if kind != "b" and lo is not None and (lo < MESSAGE_RANGE[0] or hi > MESSAGE_RANGE[1]):
        raise InputFileError(f"{source}: values {lo}..{hi} outside Lava's int32 message range "
                             f"[{MESSAGE_RANGE[0]}, {MESSAGE_RANGE[1]}]")
    if kind == "f":
        return x.astype(np.int64)
    if kind == "b":
        return x.astype(np.int8)
    return x


def check_labels(labels: Optional[np.ndarray], num_samples: int, num_classes: int,
                 source: str) -> Optional[np.ndarray]:
    """Class labels: one per sample, integers (integer-valued floats accepted) in
    [0, num_classes). Returns int64 labels (None stays None)."""
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputFileError(f"{source}: shape {y.shape}; expected one label per sample ({num_samples},)")
    if y.shape[0] != num_samples:
        raise InputFileError(f"{source}: {y.shape[0]} labels for {num_samples} input samples; expected "
                             "one label per sample")
    if y.dtype.kind not in "iuf":
        raise InputFileError(f"{source}: dtype {y.dtype}; expected integer class labels")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.array_equal(np.round(y), y):
            bad = y[~np.isfinite(y) | (np.round(y) != y)][0]
            raise InputFileError(f"{source}: non-integer label {bad!r}; expected integer class labels")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise InputFileError(f"{source}: labels {y.min():g}..{y.max():g} outside the network's "
                             f"{num_classes} classes; expected 0..{num_classes - 1}")
    return y.astype(np.int64)


def check_sample_count(samples: Optional[int], option: str = "--samples") -> Optional[int]:
    """A sample count option: None (all) or >= 1."""
    if samples is not None and int(samples) < 1:
        raise InputError(f"{option} {samples}: expected a number of samples >= 1 (omit it for all)")
    return samples


def first_samples(x: np.ndarray, labels: Optional[np.ndarray], samples: Optional[int]):
    """The first ``samples`` inputs and labels (all when None)."""
    if samples is None:
        return x, labels
    return x[:samples], (None if labels is None else labels[:samples])


def num_classes(network) -> int:
    """Classes a network's output layer can name (one per output neuron)."""
    return int(np.prod(network.output_shape))


# --- configuration files --------------------------------------------------------
def read_config_mapping(path) -> dict:
    """A YAML configuration file's top-level mapping.

    An empty file (or one holding only comments) is an error, not a silent run
    with built-in defaults: the built-in defaults are not those of
    ``examples/digits.yaml``, which is what ``pipeline`` runs without a CONFIG.
    """
    from neurodeploy.config import ConfigError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file; expected a YAML configuration")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not readable as UTF-8 text ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid YAML ({msg})") from None
    except (ValueError, RecursionError, TypeError) as e:  # e.g. out-of-range timestamps
        raise ConfigError(f"{path}: not valid YAML ({type(e).__name__}: {e})") from None
    if data is None:
        raise ConfigError(f"{path}: empty; expected a mapping of sections (name, data, model, train, ...) "
                          "as in examples/digits.yaml (run `neurodeploy pipeline` without CONFIG for that default)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level is a {type(data).__name__}; expected a mapping of "
                          "sections (name, data, model, train, ...) as in examples/digits.yaml")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: top-level key {bad[0]!r} is not a name; expected section names "
                          "(name, data, model, train, ...)")
    return data


# --- output paths -----------------------------------------------------------------
def _probe_dir(d: Path, what: str) -> None:
    probe = d / f".neurodeploy-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise OutputDirError(f"{what}: directory {d} is not writable ({e.strerror or e})") from None


def check_output_file(path, option: str) -> Path:
    """An output file that can be written: its directory exists (or is created)
    and is writable, and the path is not a directory. Checked before any work."""
    path = Path(path)
    what = f"{option} {path}"
    if path.is_dir():
        raise OutputDirError(f"{what}: is a directory; expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"{what}: not writable: directory {parent} cannot be created "
                             f"({e.strerror or e})") from None
    _probe_dir(parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputDirError(f"{what}: exists and is not writable")
    return path


def check_output_dir(path, option: str, create: bool = True) -> Path:
    """An output directory that exists (created when ``create``) and is writable."""
    path = Path(path)
    what = f"{option} {path}"
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{what}: exists and is not a directory")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"{what}: not writable: the directory cannot be created "
                             f"({e.strerror or e})") from None
    probe_at = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    _probe_dir(probe_at, what)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write through a temporary file and ``os.replace``: a reader (or a killed
    run) sees the old file or the whole new one, never half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
