"""The deployment bundle's runner (neurodeploy/hardware/runner.py, a bundle's run.py),
tested directly: manifest check, data checks, stream layout and decoding, the
Loihi probes, and that it runs with numpy alone (no neurodeploy importable)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from neurodeploy.export.netx import write_netx
from neurodeploy.hardware import deploy as dep
from neurodeploy.hardware import runner
from neurodeploy.hardware.bundle import write_bundle
from neurodeploy.network import CubaNeuron, Dense, Network
from neurodeploy.sim.samples import sample_stream, stream_steps
from neurodeploy.sim.simulator import simulate

NEURON = CubaNeuron(current_decay=1024, voltage_decay=128, threshold=60)


@pytest.fixture
def bundle(tmp_path):
    rng = np.random.default_rng(3)
    net = Network(layers=(Dense(weight=2 * rng.integers(-20, 20, (32, 20)), neuron=NEURON),
                          Dense(weight=2 * rng.integers(-20, 20, (5, 32)), neuron=NEURON)),
                  input_shape=(20,), name="net")
    write_netx(net, tmp_path / "small.net")
    x = (np.random.default_rng(5).random((4, 20, 30)) < 0.3).astype(np.int64)
    labels = np.array([3, 4, 0, 2])
    return net, write_bundle(tmp_path / "small.net", tmp_path / "b", inputs=x, labels=labels), x, labels


def test_sha256_is_hashlib_over_the_file_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # over one read chunk
    (tmp_path / "f").write_bytes(data)
    assert runner.sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_manifest_problems_name_changed_missing_and_unlisted_files(bundle):
    _, out, _, _ = bundle
    files = runner.read_manifest_files(out)
    assert runner.manifest_problems(out, files) == []
    (out / "extra.npz").write_bytes(b"x")
    (out / "samples.py").write_text("# changed\n")
    (out / "encoding.json").unlink()
    problems = runner.manifest_problems(out, files)
    assert len(problems) == 4  # extra file; samples.py size and sha256; encoding.json missing
    assert any("extra.npz: not listed" in p for p in problems)
    assert any("samples.py: sha256" in p for p in problems)
    assert any("encoding.json: listed in the manifest but missing" in p for p in problems)
    assert len(runner.manifest_problems(out, files, allow_extra=True)) == 3
    with pytest.raises(SystemExit, match="bundle check failed .*encoding.json"):
        runner.verify(out)


def test_unreadable_manifest_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="manifest.json"):
        runner.read_manifest_files(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="unreadable manifest"):
        runner.read_manifest_files(tmp_path)
    with pytest.raises(SystemExit, match="bundle check failed: .*manifest.json"):
        runner.verify(tmp_path)


ENC = {"input_shape_netx": [4, 3], "reset_interval": 5}


@pytest.mark.parametrize("inputs, labels, expect", [
    (np.zeros((2, 4, 3, 5), np.float32), None, "expected integers of shape"),
    (np.zeros((2, 3, 4, 5), np.int8), None, r"\(2, 3, 4, 5\); expected integers of shape \(samples >= 1, 4, 3, T\)"),
    (np.zeros((0, 4, 3, 5), np.int8), None, "samples >= 1"),
    (np.zeros((2, 4, 3, 6), np.int8), None, "6 steps per sample; this bundle was made for 5"),
    (np.zeros((2, 4, 3, 5), np.int8), np.zeros(3, int), "expected one per sample"),
])
def test_data_that_does_not_fit_the_bundle_is_refused_in_one_line(tmp_path, inputs, labels, expect):
    path = tmp_path / "d.npz"
    np.savez(path, inputs=inputs, **({} if labels is None else {"labels": labels}))
    with pytest.raises(SystemExit, match=expect):
        runner.load_data(str(path), ENC)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match="bad.npz: not an .npz with 'inputs'"):
        runner.load_data(str(tmp_path / "bad.npz"), ENC)


def test_data_in_netx_order_loads_as_int32(tmp_path):
    x = np.arange(2 * 4 * 3 * 5).reshape(2, 4, 3, 5) % 3
    np.savez(tmp_path / "d.npz", inputs=x, labels=np.array([1, 0]))
    got, labels = runner.load_data(str(tmp_path / "d.npz"), ENC)
    assert got.dtype == np.int32 and np.array_equal(got, x) and labels.tolist() == [1, 0]


def test_classify_reads_each_samples_window_like_deploy(bundle):
    """The classes the bundle reports from one stream equal those of ``deploy``,
    which runs every sample on its own stream from a fresh state."""
    net, _, x, labels = bundle
    n, p = x.shape[0], x.shape[-1]
    out = simulate(net, sample_stream(x), steps=stream_steps(n, p, 2), reset_interval=p).spikes
    expect = dep.classify(dep.simulated_outputs(net, x))
    assert len(set(expect.tolist())) > 1  # the windows matter: not one class for all
    got = runner.classify(out, n, p, 2, labels)
    assert got["predictions"] == expect.tolist()
    assert got["accuracy"] == pytest.approx(np.mean(expect == labels))
    assert "accuracy" not in runner.classify(out, n, p, 2)


def test_profiler_readings_are_means_of_what_was_measured():
    power = SimpleNamespace(total_power=[1.0, 3.0], static_total_power=[0.5, 0.5])
    runtime = SimpleNamespace(avg_time_per_step=[10.0, 14.0])
    assert runner.profiler_readings(power, runtime) == {
        "time_per_step_us": 12.0, "total_power_w": 2.0, "static_power_w": 0.5}
    assert runner.profiler_readings(None, None) == {}


def test_connect_without_lava_loihi_says_why(monkeypatch):
    monkeypatch.setattr(runner, "loihi_extension_status", lambda: (False, "lava-loihi missing (test)"))
    assert runner.connect(host="10.0.0.1", env={}) == "lava-loihi missing (test)"


def test_main_checks_the_bundle_and_refuses_without_a_chip(bundle, monkeypatch, capsys):
    _, out, _, _ = bundle
    assert runner.main(["--check"], bundle_dir=str(out)) == 0
    assert "6 files match manifest.json" in capsys.readouterr().out
    monkeypatch.setattr(runner, "connect", lambda *a, **k: "no chip (test)")
    with pytest.raises(SystemExit, match="no Loihi 2 chip is reachable: no chip \\(test\\). Re-run with --sim"):
        runner.main([], bundle_dir=str(out))
    assert not (out / "results.json").exists()


def test_run_py_runs_with_numpy_alone(bundle, tmp_path):
    """run.py and samples.py import nothing from neurodeploy: with the package made
    unimportable, the bundle still verifies itself and leaves no __pycache__."""
    _, out, _, _ = bundle
    code = ("import runpy, sys; sys.modules['neurodeploy'] = None; sys.argv = ['run.py', '--check']; "
            "runpy.run_path('run.py', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "6 files match" in run.stdout
    assert not (out / "__pycache__").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "run.py").read_bytes() == open(runner.__file__, "rb").read()
    assert manifest["files"]["samples.py"]["sha256"] == runner.sha256(out / "samples.py")
