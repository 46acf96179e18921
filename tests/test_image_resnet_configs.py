"""The paper-setting configurations (examples/cifar10_resnet.yaml, cifar100_resnet.yaml,
imagenette_resnet.yaml) run through the pipeline on tiny files written in the published
formats: their stage structure (depth, strides, shortcuts) as written, widths shrunk to
4 channels, 2 time steps, 10 samples, one epoch, no Lava; so the configs cannot rot."""
from __future__ import annotations

import pytest
from test_data_images import write_cifar, write_imagenette

from neurodeploy.config import EXAMPLES_DIR, load_config, parse_config
from neurodeploy.pipeline import run_pipeline


def tiny(name: str, data_dir) -> dict:
    d = load_config(EXAMPLES_DIR / name).resolved()
    d["data"].update(dir=str(data_dir), steps=2, limit=10)
    if d["data"]["name"] == "imagenette":
        d["data"]["image_size"] = 16
    d["model"]["conv"] = [dict(c, channels=4) for c in d["model"]["conv"]]
    d["model"]["blocks"] = [dict(b, channels=4 * (k + 1)) for k, b in enumerate(d["model"]["blocks"])]
    d["train"].update(epochs=1, batch_size=5, device="cpu")
    d["lava"].update(enabled=False)
    d["hardware"].update(activity_samples=2)
    return d


@pytest.mark.parametrize("name, layers", [("cifar10_resnet.yaml", 18), ("cifar100_resnet.yaml", 34),
                                          ("imagenette_resnet.yaml", 50)])
def test_paper_configs_run_one_tiny_epoch_on_published_format_files(tmp_path, name, layers):
    cfg = load_config(EXAMPLES_DIR / name)
    blocks = sum(b.count for b in cfg.model.blocks)
    assert len(cfg.model.conv) + 2 * blocks + len(cfg.model.hidden) + 1 == layers
    assert cfg.data.steps == 10 and cfg.model.batch_norm and cfg.model.surrogate.tune_height
    data = tmp_path / "data"
    data.mkdir()
    if cfg.data.name == "imagenette":
        write_imagenette(data, per_class=(1, 1), size=(24, 20))
    else:
        write_cifar(data, cfg.data.name, archive=True, n=5 if cfg.data.name == "cifar10" else 10)
    result = run_pipeline(parse_config(tiny(name, data), source=name), tmp_path / "run")
    m = result.metrics
    classes = 100 if cfg.data.name == "cifar100" else 10
    assert len(m["network"]["layers"]) == layers and m["network"]["layers"][-1] == classes
    assert m["network"]["input"] == ([3, 16, 16] if cfg.data.name == "imagenette" else [3, 32, 32])
    for key in ("float", "quantized", "sim"):
        assert 0.0 <= m["accuracy"][key] <= 1.0
    assert (result.out_dir / "model.net").is_file()
