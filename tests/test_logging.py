"""Progress lines go through the ``neurodeploy`` logger: a library user silences or
redirects them with ``logging``; the command line prints them as its output."""
from __future__ import annotations

import io
import logging

import yaml
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.config import parse_config
from neurodeploy.pipeline import run_pipeline

TINY = {"name": "tiny", "seed": 1, "data": {"name": "digits", "steps": 6, "limit": 40},
        "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 32, "lr": 0.01},
        "lava": {"enabled": False}, "hardware": {"config": None}}


def test_a_library_user_redirects_or_silences_the_progress_lines(tmp_path, caplog):
    package = logging.getLogger("neurodeploy")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    package.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="neurodeploy"):
            run_pipeline(parse_config(TINY), tmp_path / "a")
        lines = stream.getvalue().splitlines()
        assert any(line.startswith("data: digits, ") for line in lines)
        assert any(line.startswith("float epoch 1/1: loss ") for line in lines)
        assert {r.name for r in caplog.records} >= {"neurodeploy.pipeline", "neurodeploy.train.loop"}
        stream.seek(0)
        stream.truncate()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="neurodeploy"):
            run_pipeline(parse_config(TINY), tmp_path / "b")
        assert stream.getvalue() == "" and caplog.records == []
    finally:
        package.removeHandler(handler)


def test_the_command_line_prints_the_log_lines_and_leaves_logging_as_it_was(tmp_path):
    package = logging.getLogger("neurodeploy")
    before = (list(package.handlers), package.level, package.propagate)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    res = CliRunner().invoke(main, ["pipeline", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(line.startswith("data: digits, ") for line in lines)
    assert any(line.startswith("float epoch 1/1: loss ") for line in lines)
    assert (list(package.handlers), package.level, package.propagate) == before
