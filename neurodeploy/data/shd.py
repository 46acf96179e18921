"""Spiking Heidelberg Digits from the published HDF5 files (Cramer et al. 2020,
https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/).

``data.dir`` holds shd_train.h5 and shd_test.h5 (published gzipped: gunzip them).
Layout read (via h5py):

    spikes/times  (N,) variable-length float arrays, spike times in seconds
    spikes/units  (N,) variable-length integer arrays, input channel 0..699
    labels        (N,) integers, 0..19 (digits 0-9 in English and German)

(``extra/`` with speakers and metadata is not read.) Spikes are binned into ``steps``
bins over ``window`` seconds (default 1.4 s, longer than every recording), see
:func:`neurodeploy.data.encoding.bin_events`. Input (700,), 20 classes.

Only the labels are kept in memory; each batch opens the file and reads its samples.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from neurodeploy.data import TEST, TRAIN, DatasetError, DataSpec, SpikeDataset, data_dir, select_limit
from neurodeploy.data.encoding import bin_events

TITLE = "SHD (Spiking Heidelberg Digits)"
URL = "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/"
FILES = {TRAIN: "shd_train.h5", TEST: "shd_test.h5"}
CHANNELS = 700
NUM_CLASSES = 20
DEFAULT_WINDOW_S = 1.4
REQUIRED = ("spikes/times", "spikes/units", "labels")


def _hint() -> str:
    return (f"{TITLE} is published at {URL} as shd_train.h5.gz and shd_test.h5.gz; gunzip them into "
            f"data.dir")


def find_file(directory: Path, split: int) -> Path:
    path = directory / FILES[split]
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    extra = f" (found {gz.name}: gunzip it first)" if gz.is_file() else ""
    raise DatasetError(f"{path}: missing; expected the {TITLE} HDF5 file {FILES[split]}{extra}. {_hint()}")


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({e}); expected {TITLE}'s HDF5 file. "
                           f"{_hint()}") from None


@contextlib.contextmanager
def _readable(path: Path):
    """A damaged file (truncated, flipped bytes, a dataset of the wrong kind) fails
    deep inside h5py or numpy: one DatasetError naming the file instead."""
    try:
        yield
    except DatasetError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"{path}: damaged or not {TITLE}'s layout ({type(e).__name__}: {msg}). "
                           f"{_hint()}") from None


def read_labels(path: Path) -> np.ndarray:
    """Check the file's layout and return its labels (int64)."""
    with _readable(path), _open(path) as f:
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise DatasetError(f"{path}: missing dataset{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                               f"expected {', '.join(REQUIRED)}. {_hint()}")
        labels = np.asarray(f["labels"][()]).astype(np.int64).reshape(-1)
        lengths = {k: len(f[k]) for k in ("spikes/times", "spikes/units")}
    for key, n in lengths.items():
        if n != len(labels):
            raise DatasetError(f"{path}: {key} has {n} samples but labels has {len(labels)}; expected the same")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{path}: labels {int(labels.min())}..{int(labels.max())} out of range; "
                           f"expected 0..{NUM_CLASSES - 1}")
    return labels


def read_samples(path: Path, indices):
    """[(times in s float64, units int64)] for the samples at ``indices`` (file order)."""
    with _readable(path), _open(path) as f:
        times, units = f["spikes/times"], f["spikes/units"]
        out = []
        for i in indices:
            t = np.asarray(times[int(i)], dtype=np.float64)
            u = np.asarray(units[int(i)]).astype(np.int64)
            if t.shape != u.shape:
                raise DatasetError(f"{path}: sample {int(i)} has {t.size} spike times but {u.size} units; "
                                   f"expected one unit per spike")
            if u.size and (u.min() < 0 or u.max() >= CHANNELS):
                raise DatasetError(f"{path}: sample {int(i)} has unit {int(u.max())}; expected 0..{CHANNELS - 1}")
            if not np.all(np.isfinite(t)):
                raise DatasetError(f"{path}: sample {int(i)} has non-finite spike times")
            out.append((t, u))
    return out


def encode_samples(path: Path, indices, spec: DataSpec) -> np.ndarray:
    """Samples at ``indices`` of the file -> (n, steps, 700) float32."""
    window = DEFAULT_WINDOW_S if spec.window is None else spec.window
    samples = read_samples(path, indices)
    out = np.zeros((len(samples), spec.steps, CHANNELS), dtype=np.float32)
    for row, (t, u) in enumerate(samples):
        bin_events(t, u, CHANNELS, spec.steps, window, counts=spec.counts, out=out[row])
    return out


def load_splits(spec: DataSpec):
    directory = data_dir(spec, TITLE, URL, "shd_train.h5 and shd_test.h5")
    splits = []
    for split in (TRAIN, TEST):
        path = find_file(directory, split)
        labels = read_labels(path)
        ids = select_limit(labels, spec.limit)

        def encode(i, path=path, ids=ids):
            return encode_samples(path, ids[i], spec)

        splits.append(SpikeDataset(encode, labels[ids], (CHANNELS,), NUM_CLASSES, spec.steps,
                                   name=f"shd/{'train' if split == TRAIN else 'test'}"))
    return tuple(splits)
