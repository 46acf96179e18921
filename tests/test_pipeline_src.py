"""model.cell: src through the whole pipeline on a tiny digits config, and its
configuration checks."""
import json

import numpy as np
import pytest

pytest.importorskip("pydantic", reason="the pipeline's configuration needs pydantic")
from neurodeploy.config import (  # noqa: E402
    EXAMPLES_DIR,  # noqa: E402
    ConfigError,
    load_config,
    parse_config,
)

TINY_SRC = {
    "name": "tiny_src",
    "seed": 1,
    "data": {"name": "digits", "steps": 8, "limit": 120},
    # from h = h_s = -1 the cells can fire within the 8 steps (from 0 they cannot)
    "model": {"cell": "src", "hidden": [12], "src": {"initial_state": -1.0}},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "logit_scale": 1.0,
              "hardware_aware_epochs": 1},
    "lava": {"samples": 6},
}


@pytest.mark.lava
@pytest.mark.slow
def test_tiny_src_pipeline_agrees_with_lava_and_the_training_forward(tmp_path):
    from neurodeploy.lava_adapter import lava_available
    if not lava_available():
        pytest.skip("Lava is not importable here")
    from neurodeploy.export.netx import read_netx
    from neurodeploy.network import SrcNeuron
    from neurodeploy.pipeline import run_pipeline

    out = tmp_path / "run"
    run_pipeline(parse_config(TINY_SRC), out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["agreement"]["samples"] == 6
    assert m["agreement"]["lava_vs_quantized"] == 1.0, m["agreement"]["first_mismatch"]
    assert m["agreement"]["lava_vs_training_forward"] == 1.0
    assert np.abs(np.load(out / "lava_output.npz")["spikes"]).max() > 0
    net = read_netx(out / "model.net")
    blocks = [b for _, b in net.neuron_layers]  # after the neuron-less input block
    assert [b.neuron.output for b in blocks] == ["graded", "current"]
    assert all(isinstance(b.neuron, SrcNeuron) for b in blocks)
    src = m["hardware"]["src_resources"]
    assert [r["layer"] for r in src] == [0, 1] and all(r["estimate"] for r in src)


@pytest.mark.parametrize("key, value, message", [
    ("model", {"cell": "src", "conv": [{"channels": 2, "kernel": 3}], "input_shape": [1, 8, 8]}, "model.conv"),
    ("model", {"cell": "src", "batch_norm": True}, "batch_norm"),
    ("model", {"cell": "src", "src": {"bias_init": -3.0}}, "bias_init"),
    ("train", {"backward": "sparse"}, "sparse"),
])
def test_src_config_refuses_what_it_cannot_build(key, value, message):
    cfg = {"model": {"cell": "src", "surrogate": {"band": 3.0}}}
    cfg[key] = {**cfg.get(key, {}), **value}
    with pytest.raises(ConfigError, match=message):
        parse_config(cfg)


def test_src_examples_load():
    for name in ("digits_src", "mnist_src", "fashion_mnist_src", "nmnist_src"):
        cfg = load_config(EXAMPLES_DIR / f"{name}.yaml")
        assert cfg.model.cell == "src" and cfg.model.src.r_s == -7.0
