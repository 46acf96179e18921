"""Checkpoints load with ``torch.load(weights_only=True)``: a file whose unpickling
would run code is refused on ``--resume``, in one line, and nothing in it runs."""
import pathlib

import torch
import yaml
from click.testing import CliRunner

from neurodeploy.cli import main


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: code chosen by whoever wrote the file."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused_on_resume(tmp_path):
    marker = tmp_path / "code_ran"
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"name": "tiny", "data": {"name": "digits", "steps": 4, "limit": 40},
                                   "model": {"hidden": [8]}, "train": {"epochs": 2},
                                   "lava": {"enabled": False}, "hardware": {"config": None}}))
    res = CliRunner().invoke(main, ["pipeline", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output  # a genuine run: run.json, config, checkpoints
    # its last checkpoint replaced by a real attack: a plain (weights_only=False) load runs its code
    evil = out / "checkpoints" / "float_epoch_002.pt"
    torch.save({"model": _RunsCode(marker), "optimizer": {}, "epoch": 2, "history": {}}, evil)
    torch.load(evil, weights_only=False)
    assert marker.exists()
    marker.unlink()
    before = sorted(p.name for p in (out / "checkpoints").iterdir())

    res = CliRunner().invoke(main, ["pipeline", str(cfg), "--out", str(out), "--resume"])
    assert res.exit_code == 2, res.output
    assert f"{evil}: refused" in res.output and "would run Python code" in res.output
    assert "Traceback" not in res.output
    assert not marker.exists(), "the checkpoint's code ran"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # no training


def test_checkpoint_that_is_not_one_is_a_one_line_error(tmp_path):
    from neurodeploy.errors import InputError
    from neurodeploy.train.loop import load_checkpoint
    p = tmp_path / "float_epoch_001.pt"
    p.write_bytes(b"\x80\x04 truncated")
    try:
        load_checkpoint(p)
    except InputError as e:
        assert str(e).startswith(f"{p}: not a readable checkpoint") and "\n" not in str(e)
    else:
        raise AssertionError("a damaged checkpoint was accepted")
    torch.save({"weights": torch.zeros(2)}, p)
    try:
        load_checkpoint(p)
    except InputError as e:
        assert "not a neurodeploy checkpoint" in str(e)
    else:
        raise AssertionError("a foreign checkpoint was accepted")
