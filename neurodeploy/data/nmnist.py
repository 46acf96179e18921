"""N-MNIST from the published binary event files (Orchard et al. 2015,
https://www.garrickorchard.com/datasets/n-mnist).

``data.dir`` holds the unzipped Train.zip and Test.zip: ``Train/0/*.bin`` ...
``Train/9/*.bin`` and ``Test/0/*.bin`` ... ``Test/9/*.bin``.

Each file is a sequence of 40-bit events, 5 bytes each (as Orchard's
Read_Ndataset.m reads them):

    byte 0: x (0..33)          byte 1: y (0..33)
    byte 2: bit 7 polarity (1 = ON, 0 = OFF), bits 6..0 timestamp bits 22..16
    byte 3: timestamp bits 15..8     byte 4: timestamp bits 7..0

The timestamp is in microseconds from the start of the recording (~300 ms, three
saccades); it is used as is. Events are binned into ``steps`` bins over ``window``
microseconds (default 300_000), see :func:`neurodeploy.data.encoding.bin_events`.
Input (2, 34, 34) = (polarity: 0 OFF, 1 ON; y; x), or (1, 34, 34) with
``polarity='merge'`` (both polarities in one channel).

Only the file list is kept in memory; each batch reads its own files.
Sample order within a split: classes round-robin (class 0's first file, class 1's
first, ..., then the second files), files of a class sorted by name, so any prefix,
and ``limit``, is class-balanced.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from neurodeploy.data import TEST, TRAIN, DatasetError, DataSpec, SpikeDataset, data_dir, select_limit
from neurodeploy.data.encoding import bin_events

TITLE = "N-MNIST"
URL = "https://www.garrickorchard.com/datasets/n-mnist"
SPLIT_DIRS = {TRAIN: "Train", TEST: "Test"}
SENSOR = 34  # the sensor area is 34 x 34 pixels
NUM_CLASSES = 10
EVENT_BYTES = 5
DEFAULT_WINDOW_US = 300_000


def _hint() -> str:
    return (f"{TITLE} is published at {URL} (Train.zip, Test.zip); unzip both into data.dir so it holds "
            f"Train/0..9/*.bin and Test/0..9/*.bin")


def decode_events(raw: bytes, path="<bytes>") -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw N-MNIST bytes -> (x uint8, y uint8, polarity uint8 (1 = ON), timestamp uint32 in us)."""
    if len(raw) % EVENT_BYTES:
        raise DatasetError(f"{path}: {len(raw)} bytes is not a multiple of {EVENT_BYTES}; expected "
                           f"{TITLE}'s 40-bit events (x, y, polarity + 23-bit timestamp). {_hint()}")
    ev = np.frombuffer(raw, dtype=np.uint8).reshape(-1, EVENT_BYTES)
    x, y = ev[:, 0].copy(), ev[:, 1].copy()
    polarity = (ev[:, 2] >> 7).astype(np.uint8)
    t = ((ev[:, 2].astype(np.uint32) & 0x7F) << 16) | (ev[:, 3].astype(np.uint32) << 8) | ev[:, 4]
    if len(ev) and (x.max() >= SENSOR or y.max() >= SENSOR):
        raise DatasetError(f"{path}: event address ({int(x.max())}, {int(y.max())}) outside the "
                           f"{SENSOR}x{SENSOR} sensor; expected {TITLE} events. {_hint()}")
    return x, y, polarity, t


def read_events(path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One N-MNIST .bin file -> (x, y, polarity, timestamp_us), see :func:`decode_events`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (it was listed when the dataset was opened). {_hint()}") from None
    return decode_events(raw, path)


def list_split(directory: Path, split: int) -> Tuple[List[Path], np.ndarray]:
    """(files, labels) of a split in round-robin class order; checks the layout and
    that every file holds whole 5-byte events."""
    root = directory / SPLIT_DIRS[split]
    if not root.is_dir():
        zipped = directory / f"{SPLIT_DIRS[split]}.zip"
        extra = f" (found {zipped.name}: unzip it there)" if zipped.is_file() else ""
        raise DatasetError(f"{root}: missing; expected the {TITLE} folder {SPLIT_DIRS[split]}/ with class "
                           f"folders 0..9{extra}. {_hint()}")
    per_class = []
    for c in range(NUM_CLASSES):
        folder = root / str(c)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing; expected the class folder {SPLIT_DIRS[split]}/{c}/ "
                               f"with .bin event files. {_hint()}")
        files = sorted(p for p in folder.iterdir() if p.suffix == ".bin")
        if not files:
            raise DatasetError(f"{folder}: no .bin event files; expected {TITLE}'s class {c} recordings. {_hint()}")
        for p in files:
            size = p.stat().st_size
            if size % EVENT_BYTES:
                raise DatasetError(f"{p}: {size} bytes is not a multiple of {EVENT_BYTES}; expected "
                                   f"{TITLE}'s 40-bit events. {_hint()}")
        per_class.append(files)
    files, labels = [], []
    for k in range(max(len(f) for f in per_class)):
        for c, members in enumerate(per_class):
            if k < len(members):
                files.append(members[k])
                labels.append(c)
    return files, np.asarray(labels, dtype=np.int64)


def encode_file(path, spec: DataSpec, out: np.ndarray = None) -> np.ndarray:
    """One recording -> (steps, C, 34, 34) float32 spikes (C = 2 split, 1 merged),
    written into ``out`` (zeroed) when given."""
    x, y, polarity, t = read_events(path)
    window = DEFAULT_WINDOW_US if spec.window is None else spec.window
    pixel = y.astype(np.int64) * SENSOR + x
    if spec.polarity == "split":
        channels, units = 2, polarity.astype(np.int64) * SENSOR * SENSOR + pixel
    else:
        channels, units = 1, pixel
    if out is None:
        out = np.zeros((spec.steps, channels, SENSOR, SENSOR), dtype=np.float32)
    bin_events(t, units, channels * SENSOR * SENSOR, spec.steps, window, counts=spec.counts, out=out)
    return out


def load_splits(spec: DataSpec):
    directory = data_dir(spec, TITLE, URL, "the unzipped Train/ and Test/ folders")
    channels = 2 if spec.polarity == "split" else 1
    splits = []
    for split in (TRAIN, TEST):
        files, labels = list_split(directory, split)
        keep = select_limit(labels, spec.limit)
        files = [files[i] for i in keep]

        def encode(i, files=files):
            out = np.zeros((len(i), spec.steps, channels, SENSOR, SENSOR), dtype=np.float32)
            for row, k in enumerate(i):
                encode_file(files[k], spec, out=out[row])
            return out

        splits.append(SpikeDataset(encode, labels[keep], (channels, SENSOR, SENSOR), NUM_CLASSES, spec.steps,
                                   name=f"nmnist/{SPLIT_DIRS[split].lower()}"))
    return tuple(splits)
