"""CIFAR-10 and CIFAR-100 from the published "python version" files (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html).

``data.dir`` holds either the published archive (``cifar-10-python.tar.gz``,
``cifar-100-python.tar.gz``, read in place) or its extracted folder
(``cifar-10-batches-py/``, ``cifar-100-python/``); ``data.dir`` may also be that
folder itself.

- CIFAR-10: ``data_batch_1`` .. ``data_batch_5`` (training, in that order) and
  ``test_batch``; each a pickled dict with ``b"data"`` (uint8, N x 3072) and
  ``b"labels"`` (N ints, 0..9).
- CIFAR-100: ``train`` and ``test``, with ``b"data"`` and ``b"fine_labels"`` (0..99).

A row of ``data`` is the 32x32 red plane, then green, then blue, each row-major, so a
sample is (3, 32, 32) = (channel, y, x), the input shape. The pickles are read with an
unpickler that builds only dicts, lists, numbers, bytes and numpy arrays (a file that
asks for anything else is refused, not run). Intensity = pixel / 255, rate- or
latency-encoded per batch like the other image sets; no per-channel normalisation
(both codes take intensities in [0, 1]).
"""
from __future__ import annotations

import importlib
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from neurodeploy.data import TEST, TRAIN, DatasetError, DataSpec, SpikeDataset, data_dir, encode_images, select_limit

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGE_SHAPE = (3, 32, 32)
ROW = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    """Where one CIFAR variant's files are and what their dicts hold."""
    title: str
    archive: str  # the published .tar.gz
    folder: str  # its top-level folder
    files: Tuple[Tuple[str, ...], Tuple[str, ...]]  # (training files, test files), in order
    label_key: bytes
    num_classes: int


FORMATS = {
    "cifar10": CifarFormat("CIFAR-10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                           (tuple(f"data_batch_{k}" for k in range(1, 6)), ("test_batch",)), b"labels", 10),
    "cifar100": CifarFormat("CIFAR-100", "cifar-100-python.tar.gz", "cifar-100-python",
                            (("train",), ("test",)), b"fine_labels", 100),
}

# the globals a pickled numpy array needs (numpy 1 and 2 spell the module differently)
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module.startswith("numpy") and module.endswith("multiarray"):
            core = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
            return getattr(importlib.import_module(core), name)
        return super().find_class(module, name)


def _hint(fmt: CifarFormat) -> str:
    return (f"{fmt.title} is published at {URL} (python version); data.dir must hold {fmt.archive} "
            f"or its folder {fmt.folder}/ with {', '.join(fmt.files[TRAIN] + fmt.files[TEST])}")


def read_batch(raw: bytes, where: str, fmt: CifarFormat) -> Tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images (n, 3, 32, 32) uint8, labels (n,) int64)."""
    try:
        d = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any malformed pickle: one line naming the file
        reason = " ".join(str(e).split())  # one line whatever the unpickler says
        raise DatasetError(f"{where}: not a {fmt.title} batch pickle ({type(e).__name__}: {reason}). "
                           f"{_hint(fmt)}") from None
    if not isinstance(d, dict):
        raise DatasetError(f"{where}: expected a pickled dict with b'data' and {fmt.label_key!r}, "
                           f"got {type(d).__name__}")
    d = {k.encode("latin1") if isinstance(k, str) else k: v for k, v in d.items()}
    for key in (b"data", fmt.label_key):
        if key not in d:
            raise DatasetError(f"{where}: missing key {key!r}; expected b'data' (uint8 N x {ROW}) and "
                               f"{fmt.label_key!r} (N labels 0..{fmt.num_classes - 1})")
    data = d[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == ROW):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{where}: b'data' is {desc}; expected uint8 N x {ROW}")
    try:
        labels = np.asarray(d[fmt.label_key])
    except (TypeError, ValueError, OverflowError):
        labels = None
    if labels is None or labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DatasetError(f"{where}: {fmt.label_key!r} is not a list of integers; expected "
                           f"N labels 0..{fmt.num_classes - 1}")
    labels = labels.astype(np.int64)
    if len(labels) != len(data):
        raise DatasetError(f"{where}: {len(data)} images but {len(labels)} labels; expected the same count")
    if labels.size and (labels.min() < 0 or labels.max() >= fmt.num_classes):
        raise DatasetError(f"{where}: labels {int(labels.min())}..{int(labels.max())} out of range; "
                           f"expected 0..{fmt.num_classes - 1}")
    return data.reshape(len(data), *IMAGE_SHAPE), labels


def _from_archive(path: Path, fmt: CifarFormat, names) -> Dict[str, Tuple[bytes, str]]:
    """name -> (bytes, where) of the wanted members of the published .tar.gz."""
    wanted = {f"{fmt.folder}/{n}": n for n in names}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    out[wanted[member.name]] = (tar.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable .tar.gz ({' '.join(str(e).split())}). {_hint(fmt)}") from None
    missing = [m for m, n in wanted.items() if n not in out]
    if missing:
        raise DatasetError(f"{path}: archive lacks {', '.join(missing)}. {_hint(fmt)}")
    return out


def read_files(directory: Path, fmt: CifarFormat, names) -> Dict[str, Tuple[bytes, str]]:
    """name -> (bytes, where) of the named batch files, from the extracted folder (in
    ``directory`` or ``directory`` itself) or else from the archive in ``directory``."""
    for folder in (directory / fmt.folder, directory):
        if all((folder / n).is_file() for n in names):
            return {n: ((folder / n).read_bytes(), str(folder / n)) for n in names}
    if (directory / fmt.archive).is_file():
        return _from_archive(directory / fmt.archive, fmt, names)
    folder = directory / fmt.folder if (directory / fmt.folder).is_dir() else directory
    missing = next(folder / n for n in names if not (folder / n).is_file())
    raise DatasetError(f"{missing}: missing; expected the {fmt.title} batch file {missing.name} "
                       f"(and no {fmt.archive} in {directory}). {_hint(fmt)}")


def read_split(directory: Path, fmt: CifarFormat, split: int, files=None):
    """(images (n, 3, 32, 32) uint8, labels (n,) int64) of a split, files in published order."""
    files = read_files(directory, fmt, fmt.files[split]) if files is None else files
    parts = [read_batch(*files[n], fmt) for n in fmt.files[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_splits(spec: DataSpec):
    fmt = FORMATS[spec.name]
    directory = data_dir(spec, fmt.title, URL, f"{fmt.archive} or its folder {fmt.folder}/")
    files = read_files(directory, fmt, fmt.files[TRAIN] + fmt.files[TEST])
    splits = []
    for split in (TRAIN, TEST):
        images, labels = read_split(directory, fmt, split, files)
        ids = select_limit(labels, spec.limit)
        images, labels = images[ids], labels[ids]

        def encode(i, images=images, ids=ids, split=split):
            return encode_images(images, i, spec, split, scale=255.0, sample_ids=ids)

        splits.append(SpikeDataset(encode, labels, IMAGE_SHAPE, fmt.num_classes, spec.steps,
                                   name=f"{spec.name}/{'train' if split == TRAIN else 'test'}"))
    return tuple(splits)
