"""Run directories cannot mix two runs: a fresh run into a non-empty directory is
refused unless --force clears it, --resume refuses a changed configuration, changed
data and checkpoints of another run, and every file a run writes is written
atomically."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from neurodeploy.checks import OutputDirError, atomic_write_bytes
from neurodeploy.cli import main
from neurodeploy.config import parse_config
from neurodeploy.errors import OutputError
from neurodeploy.pipeline import run_pipeline
from neurodeploy.rundir import RUN_FILE, check_data, config_differences, open_run_dir

TINY = {"name": "tiny", "seed": 1, "data": {"name": "digits", "steps": 6, "limit": 40},
        "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 32, "lr": 0.01},
        "lava": {"enabled": False}, "hardware": {"config": None}}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run (config file + run directory)."""
    d = tmp_path_factory.mktemp("rundir")
    cfg = d / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    res = cli("pipeline", cfg, "--out", d / "run")
    assert res.exit_code == 0, res.output
    return cfg, d / "run"


def test_a_run_records_its_configuration_and_data_fingerprint(finished):
    cfg, out = finished
    rec = json.loads((out / RUN_FILE).read_text())
    assert rec["config"] == parse_config({**TINY, "name": "tiny"}).resolved()
    assert len(rec["data_fingerprint"]) == 64 and len(rec["run_id"]) == 32
    assert yaml.safe_load((out / "config.yaml").read_text()) == rec["config"]


def test_a_fresh_run_into_a_used_directory_is_refused(finished):
    cfg, out = finished
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    res = cli("pipeline", cfg, "--out", out)
    assert res.exit_code == 5, res.output
    assert "not empty" in res.stderr and "--force" in res.stderr and "--resume" in res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched


@pytest.mark.parametrize("override, named", [
    (["--limit", "60"], "data.limit: 40 -> 60"),
    (["--epochs", "0"], "train.epochs: 1 -> 0"),
])
def test_resume_refuses_a_changed_configuration_naming_it(finished, override, named):
    cfg, out = finished
    res = cli("pipeline", cfg, "--out", out, "--resume", *override)
    assert res.exit_code == 5, res.output
    assert named in res.stderr and "configuration differs" in res.stderr
    assert "Traceback" not in res.output


def test_resume_refuses_a_changed_config_file(finished, tmp_path):
    _, out = finished
    changed = tmp_path / "tiny.yaml"
    changed.write_text(yaml.safe_dump({**TINY, "model": {"hidden": [9]}}))
    res = cli("pipeline", changed, "--out", out, "--resume")
    assert res.exit_code == 5 and "model.hidden" in res.stderr, res.output


def test_resume_with_the_same_configuration_is_accepted(finished):
    cfg, out = finished
    res = cli("pipeline", cfg, "--out", out, "--resume")
    assert res.exit_code == 0, res.output
    assert "resumed float training from float_epoch_001.pt (epoch 1/1)" in res.output


def test_the_issue_case_mixed_checkpoints_cannot_happen(tmp_path):
    """A second run into the first's directory (the issue: it overwrote some
    checkpoints and kept others, and --resume built a model from both) is refused;
    with --force the old checkpoints are gone."""
    cfg = dict(TINY, train={**TINY["train"], "epochs": 2, "hardware_aware_epochs": 1})
    run_pipeline(parse_config(cfg), tmp_path / "run")
    other = dict(cfg, seed=7, train={**cfg["train"], "epochs": 1})
    with pytest.raises(OutputDirError, match="not empty"):
        run_pipeline(parse_config(other), tmp_path / "run")
    with pytest.raises(OutputDirError, match=r"seed: 1 -> 7"):
        run_pipeline(parse_config(other), tmp_path / "run", resume=True)
    run_pipeline(parse_config(other), tmp_path / "run", force=True)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    # the first run's second float epoch is gone; its fine-tuning checkpoint was replaced
    assert ckpts == ["float_epoch_001.pt", "hardware_epoch_001.pt"]
    import torch
    run_id = json.loads((tmp_path / "run" / RUN_FILE).read_text())["run_id"]
    for name in ckpts:
        assert torch.load(tmp_path / "run" / "checkpoints" / name, weights_only=False)["run_id"] == run_id


def test_force_clears_only_a_run_directory(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep")
    with pytest.raises(OutputDirError, match="not a neurodeploy run directory"):
        open_run_dir(precious, {"a": 1}, force=True)
    assert (precious / "thesis.tex").read_text() == "keep"
    res = cli("pipeline", "--out", precious, "--resume", "--force")
    assert res.exit_code == 2 and "give one of them" in res.output


def test_resume_refuses_checkpoints_of_another_run(tmp_path):
    """Checkpoints copied in from another run (same configuration, different run id)."""
    a, b = tmp_path / "a", tmp_path / "b"
    cfg = parse_config(TINY)
    run_pipeline(cfg, a)
    run_pipeline(cfg, b)
    os.replace(a / "checkpoints" / "float_epoch_001.pt", b / "checkpoints" / "float_epoch_001.pt")
    with pytest.raises(OutputDirError, match="checkpoint of another run"):
        run_pipeline(cfg, b, resume=True)


def test_resume_refuses_changed_data(tmp_path):
    rec = open_run_dir(tmp_path / "r", {"x": 1})
    rec = check_data(tmp_path / "r", rec, "a" * 64)
    again = open_run_dir(tmp_path / "r", {"x": 1}, resume=True)
    assert again.run_id == rec.run_id and again.data_fingerprint == "a" * 64
    with pytest.raises(OutputDirError, match="data differ"):
        check_data(tmp_path / "r", again, "b" * 64)


def test_data_fingerprint_changes_with_the_data():
    from neurodeploy.data import load_dataset
    from neurodeploy.pipeline import data_spec
    from neurodeploy.rundir import data_fingerprint

    fp = lambda c: data_fingerprint(*load_dataset(data_spec(parse_config(c))))  # noqa: E731
    base = fp(TINY)
    assert base == fp(TINY)
    assert base != fp({**TINY, "seed": 2})
    assert base != fp({**TINY, "data": {**TINY["data"], "limit": 41}})
    assert base != fp({**TINY, "data": {**TINY["data"], "encoding": "latency"}})


def test_more_epochs_on_resume_continue_training(tmp_path, caplog):
    run_pipeline(parse_config(TINY), tmp_path / "r")
    more = dict(TINY, train={**TINY["train"], "epochs": 2})
    caplog.clear()
    caplog.set_level(logging.INFO, logger="neurodeploy")
    run_pipeline(parse_config(more), tmp_path / "r", resume=True)
    logs = caplog.messages
    assert any("train.epochs: 1 -> 2" in line for line in logs)
    assert json.loads((tmp_path / "r" / RUN_FILE).read_text())["config"]["train"]["epochs"] == 2
    fewer = dict(TINY, train={**TINY["train"], "epochs": 1})
    with pytest.raises(OutputDirError, match="train.epochs: 2 -> 1"):
        run_pipeline(parse_config(fewer), tmp_path / "r", resume=True)


def test_config_differences_name_keys_and_both_values():
    assert config_differences({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1]}, "d": None}) == [
        "a.b: 1 -> 2", "d: (absent) -> null"]


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    """A write killed before its os.replace leaves the previous file whole."""
    p = tmp_path / "metrics.json"
    atomic_write_bytes(p, b"old")

    def killed(src, dst):
        raise KeyboardInterrupt("killed between write and replace")
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(p, b"new" * 1000)
    assert p.read_bytes() == b"old"


def test_output_error_is_exit_code_5():
    assert issubclass(OutputDirError, OutputError) and OutputDirError.exit_code == 5
    assert np.int64(5) == OutputDirError("x").exit_code
