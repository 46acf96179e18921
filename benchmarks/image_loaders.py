"""What the image readers cost before training starts: CIFAR-10 at its published size
(50000 + 10000 images, written here as random pixels in the published python-version
layout) loaded from the extracted folder and from the .tar.gz, the rate code of one
training batch, and Imagenette's decode + resize + crop per JPEG (written with Pillow
at imagenette2-160's size, 213 x 160). JSON to benchmarks/results/.

    python benchmarks/image_loaders.py [--jpegs 200] [--out FILE]
"""
from __future__ import annotations

import argparse
import io
import json
import pickle
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from neurodeploy.data import DataSpec, load_dataset
from neurodeploy.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"


def write_cifar10(root: Path, rng) -> Path:
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name in names:
            raw = pickle.dumps({b"batch_label": name.encode(), b"labels": rng.integers(0, 10, 10000).tolist(),
                                b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8)}, protocol=2)
            (folder / name).write_bytes(raw)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    (root / "archive").mkdir()
    (root / "archive" / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    return root


def _timed(fn, repeats: int = 3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, {"median_s": statistics.median(times), "runs_s": times}


def cifar(root: Path) -> dict:
    spec = DataSpec(name="cifar10", dir=str(root), steps=10)
    (train, _), folder = _timed(lambda: load_dataset(spec))
    _, archive = _timed(lambda: load_dataset(DataSpec(name="cifar10", dir=str(root / "archive"), steps=10)))
    idx = np.arange(64)
    _, batch = _timed(lambda: train.encode(idx), repeats=5)
    return {"train_images": len(train), "load_from_folder": folder, "load_from_tar_gz": archive,
            "rate_code_batch_64_steps_10": batch,
            "rate_code_epoch_estimate_s": batch["median_s"] * len(train) / 64}


def imagenette(root: Path, n: int, rng) -> dict:
    from PIL import Image

    for split in ("train", "val"):
        for c in range(10):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for k in range(n // 10 if split == "train" else 1):
                # smooth random images (a few colour blobs) compress like photographs, not like noise
                small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
                Image.fromarray(small).resize((213, 160), Image.BICUBIC).save(d / f"{k}.JPEG", quality=90)
    out = {}
    for size in (32, 64):
        spec = DataSpec(name="imagenette", dir=str(root), steps=10, image_size=size)
        (train, test), t = _timed(lambda: load_dataset(spec), repeats=2)
        images = len(train) + len(test)
        out[f"image_size_{size}"] = {"images": images, "load": t, "per_image_ms": 1e3 * t["median_s"] / images}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jpegs", type=int, default=200, help="training JPEGs written (10 classes)")
    ap.add_argument("--out", default=str(RESULTS / "image_loaders.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        c = cifar(write_cifar10(Path(tmp), rng))
    with tempfile.TemporaryDirectory() as tmp:
        i = imagenette(Path(tmp), args.jpegs, rng)
    result = {"machine": describe(), "cifar10": c, "imagenette": i,
              "note": "random CIFAR pixels (incompressible: the published archive is smaller); "
                      "Imagenette JPEGs at imagenette2-160's 213 x 160"}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
