"""Imagenette from the published folders (fast.ai, https://github.com/fastai/imagenette):
ten easy ImageNet classes, ``imagenette2``, ``imagenette2-320`` or ``imagenette2-160``.

``data.dir`` is the extracted folder (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``;
the val split is the test split). Classes are the ten WordNet ids sorted, label = the
position in that order; both splits must have the same ten. Images are decoded with
Pillow (JPEG draft mode first, the decoder's own downscale), converted to RGB,
resized so the shorter side is ``data.image_size`` (bilinear, default 64) and
center-cropped to a square: input (3, S, S) = (channel, y, x). All images of a split
(its ``limit`` subset) are decoded once at load time and kept as uint8; intensity =
pixel / 255, rate- or latency-encoded per batch like the other image sets, without
per-channel normalisation.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from neurodeploy.data import TEST, TRAIN, DatasetError, DataSpec, SpikeDataset, data_dir, encode_images, select_limit

TITLE = "Imagenette"
URL = "https://github.com/fastai/imagenette"
SPLITS = {TRAIN: "train", TEST: "val"}
NUM_CLASSES = 10
DEFAULT_IMAGE_SIZE = 64
SUFFIXES = (".jpeg", ".jpg")


def _hint() -> str:
    return (f"{TITLE} is published at {URL} (imagenette2, -320 or -160); data.dir must be the extracted "
            f"folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG for {NUM_CLASSES} classes")


def list_split(directory: Path, split: int) -> Tuple[List[str], List[Path], np.ndarray]:
    """(class folder names sorted, image paths, labels int64) of a split, paths sorted by
    class then file name."""
    root = directory / SPLITS[split]
    if not root.is_dir():
        raise DatasetError(f"{root}: missing; expected the {TITLE} folder {SPLITS[split]}/. {_hint()}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) != NUM_CLASSES:
        raise DatasetError(f"{root}: {len(classes)} class folders; expected {NUM_CLASSES} (one per WordNet "
                           f"id). {_hint()}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DatasetError(f"{root / name}: no .JPEG images; expected the class's images. {_hint()}")
        paths.extend(files)
        labels.extend([label] * len(files))
    return classes, paths, np.asarray(labels, dtype=np.int64)


def load_image(path: Path, size: int) -> np.ndarray:
    """A JPEG -> (3, size, size) uint8: shorter side resized to ``size``, center crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            pixels = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable JPEG image ({' '.join(str(e).split())}). {_hint()}") from None
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def load_splits(spec: DataSpec):
    directory = data_dir(spec, TITLE, URL, "the extracted imagenette2 folder (train/, val/)")
    size = int(spec.image_size or DEFAULT_IMAGE_SIZE)
    listed = {split: list_split(directory, split) for split in (TRAIN, TEST)}
    if listed[TRAIN][0] != listed[TEST][0]:
        raise DatasetError(f"{directory}: train/ and val/ have different class folders "
                           f"({', '.join(listed[TRAIN][0])} vs {', '.join(listed[TEST][0])}); expected the same ten")
    splits = []
    for split in (TRAIN, TEST):
        _, paths, labels = listed[split]
        ids = select_limit(labels, spec.limit)
        images = np.zeros((len(ids), 3, size, size), dtype=np.uint8)
        for k, i in enumerate(ids):
            images[k] = load_image(paths[i], size)

        def encode(i, images=images, ids=ids, split=split):
            return encode_images(images, i, spec, split, scale=255.0, sample_ids=ids)

        splits.append(SpikeDataset(encode, labels[ids], (3, size, size), NUM_CLASSES, spec.steps,
                                   name=f"imagenette/{SPLITS[split]}"))
    return tuple(splits)
