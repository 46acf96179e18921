"""The learning-rate schedule: its values, and that a resumed run continues it."""
import math
import shutil

import pytest
import torch

from neurodeploy.config import ConfigError, parse_config
from neurodeploy.train.loop import learning_rate

TINY = {"name": "tiny", "seed": 1, "data": {"name": "digits", "steps": 6, "limit": 64},
        "model": {"hidden": [12]}, "train": {"epochs": 3, "batch_size": 32, "lr": 0.01,
                                             "lr_schedule": "cosine"}}


def test_constant_schedule_keeps_the_rate():
    assert [learning_rate(0.01, e, 5) for e in range(5)] == [0.01] * 5


def test_cosine_schedule_starts_at_the_rate_and_falls_towards_zero():
    rates = [learning_rate(0.01, e, 40, "cosine") for e in range(40)]
    assert rates[0] == 0.01
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert 0 < rates[-1] < 0.01 * 0.01
    assert rates[20] == pytest.approx(0.005)
    assert math.isclose(learning_rate(1.0, 0, 0, "cosine"), 1.0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        learning_rate(0.01, 0, 3, "step")
    with pytest.raises(ConfigError, match="lr_schedule"):
        parse_config({**TINY, "train": {**TINY["train"], "lr_schedule": "step"}})


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resumed_cosine_run_equals_the_uninterrupted_one(tmp_path):
    from neurodeploy.data import load_dataset
    from neurodeploy.pipeline import build_model, data_spec
    from neurodeploy.train.loop import fit

    cfg = parse_config(TINY)
    train, test = load_dataset(data_spec(cfg))

    def run(ck, resume=False, schedule="cosine"):
        torch.manual_seed(0)
        model = build_model(cfg, train.input_shape, train.num_classes)
        fit(model, train, test, epochs=3, lr=0.01, batch_size=32, seed=0, checkpoint_dir=ck,
            resume=resume, lr_schedule=schedule)
        return _weights(model)

    whole = run(tmp_path / "whole")
    # a run killed after its first epoch, resumed: epochs 2 and 3 at the schedule's rates
    (tmp_path / "cut").mkdir()
    shutil.copy(tmp_path / "whole" / "float_epoch_001.pt", tmp_path / "cut")
    resumed = run(tmp_path / "cut", resume=True)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    constant = run(tmp_path / "constant", schedule="constant")
    assert any(not torch.equal(whole[k], constant[k]) for k in whole)
