"""Dense residual blocks through the configuration (model.dense_stem, then
model.blocks on a flat input) and a first block on the network's input spikes:
the pipeline on digits (fine-tuned with learned thresholds and decays), with the
quantised network on Lava spike-exact."""
from __future__ import annotations

import pytest
import torch
from conftest import requires_lava

from neurodeploy.config import ConfigError, parse_config
from neurodeploy.export.quantize_residual import quantize_residual_model
from neurodeploy.network import Dense
from neurodeploy.pipeline import build_model, run_pipeline
from neurodeploy.train.residual import ResidualNetwork

DENSE = {
    "name": "dense_resnet",
    "seed": 2,
    "data": {"name": "digits", "steps": 8, "limit": 200},
    "model": {"dense_stem": [24], "blocks": [{"channels": 24, "count": 2}, {"channels": 16, "count": 1}],
              "hidden": [], "batch_norm": True, "neuron": {"current_decay": 1.0, "voltage_decay": 0.1},
              "surrogate": {"tune_height": True}},
    "train": {"epochs": 5, "batch_size": 20, "lr": 0.01, "device": "cpu", "hardware_aware_epochs": 1,
              "hardware_aware_learn": ["threshold", "decays"]},
    "lava": {"samples": 12},
    "hardware": {"activity_samples": 4},
}


def test_dense_stem_builds_dense_blocks_with_identity_and_projection_shortcuts():
    cfg = parse_config(DENSE)
    m = build_model(cfg, (64,), 10)
    assert isinstance(m, ResidualNetwork) and m.num_spiking_layers == 1 + 6 + 1
    assert [b.conv for b in m.blocks] == [False] * 3
    assert [b.identity for b in m.blocks] == [True, True, False]
    net = quantize_residual_model(m)
    assert all(isinstance(b, Dense) for b in net.layers) and net.input_shape == (64,)
    # every shortcut starts at the neurons feeding its block: the stem, block 0, block 1
    assert [(s.source, s.target) for s in net.shortcuts] == [(0, 2), (2, 4), (4, 6)]
    assert [s.weight.shape for s in net.shortcuts] == [(24, 24), (24, 24), (16, 24)]
    # a (C, H, W) input through a dense stem is flattened in torch order
    m3 = build_model(cfg.with_overrides(**{"model.input_shape": [1, 8, 8]}), (64,), 10)
    x = (torch.rand(3, 8, 64) < 0.5).float()
    assert m3.input_shape == (64,) and m3(x.reshape(3, 8, 1, 8, 8))[-1].shape == (3, 8, 10)


@pytest.mark.parametrize("model, message", [
    ({"blocks": [{"channels": 8}]}, "not at the network's input spikes; put a stem layer"),
    ({"input_shape": [1, 8, 8], "blocks": [{"channels": 8}]}, r"model.conv for conv blocks"),
    ({"dense_stem": [8], "blocks": [{"channels": 8, "stride": 2}]}, "dense and have no stride"),
    ({"dense_stem": [8], "input_shape": [1, 8, 8], "conv": [{"channels": 4, "kernel": 3}],
      "blocks": [{"channels": 8}]}, "model.dense_stem: a dense stem takes the flat input"),
    ({"dense_stem": [8]}, "without model.blocks list the dense layers in model.hidden"),
])
def test_blocks_on_the_input_spikes_and_bad_stems_are_one_line_config_errors(model, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_config({"model": model})
    assert "\n" not in str(e.value)


def test_first_block_on_the_input_without_shortcuts_is_a_plain_stack():
    cfg = parse_config({"model": {"blocks": [{"channels": 8, "count": 2}], "shortcuts": False, "hidden": []}})
    net = quantize_residual_model(build_model(cfg, (64,), 10))
    assert len(net.layers) == 5 and net.shortcuts == ()


@requires_lava
@pytest.mark.lava
@pytest.mark.slow
def test_dense_blocks_pipeline_on_digits_with_learned_neurons_is_spike_exact_on_lava(tmp_path):
    m = run_pipeline(parse_config(DENSE), tmp_path / "run").metrics
    assert m["network"]["layers"] == [24] * 5 + [16, 16, 10]
    assert m["agreement"]["samples"] == 12
    assert m["agreement"]["lava_vs_quantized"] == 1.0, m["agreement"]["first_mismatch"]
    # fine-tuned with learned thresholds and voltage decays: the chip-exact training forward is Lava's
    assert m["agreement"]["lava_vs_training_forward"] == 1.0
    assert m["agreement"]["output_spikes"] > 0
    assert m["accuracy"]["float"] > 0.3
