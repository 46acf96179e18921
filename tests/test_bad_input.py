"""Every command's bad input is one line on stderr naming the file and field, with the
documented exit code (docs/cli.md), and no output is written; legitimate inputs still
give the right result. One parametrised case per class of failure and command."""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.export.netx import write_netx
from neurodeploy.network import CubaNeuron, Dense, Network

NEURON = CubaNeuron(current_decay=1024, voltage_decay=128, threshold=60)
FEATURES, CLASSES, STEPS, SAMPLES = 6, 3, 9, 5
BAD_INPUT, NO_CHIP, DOES_NOT_FIT, BAD_OUTPUT = 2, 3, 4, 5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small dense network, its inputs in every form the commands take, and
    malformed variants of each."""
    d = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(0)
    net = Network(layers=(Dense(weight=2 * rng.integers(-20, 60, (8, FEATURES)), neuron=NEURON),
                          Dense(weight=2 * rng.integers(-20, 60, (CLASSES, 8)), neuron=NEURON)),
                  input_shape=(FEATURES,), name="small")
    write_netx(net, d / "model.net")
    x = (rng.random((SAMPLES, FEATURES, STEPS)) < 0.5).astype(np.int8)
    y = rng.integers(0, CLASSES, SAMPLES)
    np.savez(d / "data.npz", inputs=x, labels=y)
    np.savez(d / "half.npz", inputs=x * 0.5, labels=y)
    np.savez(d / "nan.npz", inputs=np.where(x > 0, np.nan, 0.0), labels=y)
    np.savez(d / "nokey.npz", spikes=x, labels=y)
    np.savez(d / "shape.npz", inputs=x[:, :4], labels=y)
    np.savez(d / "count.npz", inputs=x, labels=y[:2])
    np.savez(d / "zero.npz", inputs=x[:0], labels=y[:0])
    np.savez(d / "badlabels.npz", inputs=x, labels=y + 0.5)
    np.savez(d / "biglabels.npz", inputs=x, labels=y + CLASSES)
    np.savez(d / "huge.npz", inputs=x.astype(np.int64) * 2 ** 40, labels=y)
    np.savez(d / "strings.npz", inputs=np.array(["a"] * SAMPLES), labels=y)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.save(d / "yfloat.npy", y + 0.5)
    np.save(d / "ybig.npy", y + 100)
    np.save(d / "yshort.npy", y[:2])
    np.save(d / "x0.npy", x[:0])
    np.save(d / "y0.npy", y[:0])
    np.save(d / "xhalf.npy", x * 0.5)
    np.save(d / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    (d / "junk.npy").write_bytes(b"\x93NUMPY junk")
    (d / "garbage.net").write_bytes(b"not hdf5 at all")
    with h5py.File(d / "nolayers.net", "w") as f:
        f.create_group("something")
    with h5py.File(d / "notype.net", "w") as f:
        f.create_group("layer").create_group("0")
    (d / "truncated.net").write_bytes((d / "model.net").read_bytes()[:700])
    # weights Lava's Dense would clip (netx stores what it is given)
    (d / "clipped.net").write_bytes((d / "model.net").read_bytes())
    with h5py.File(d / "clipped.net", "r+") as f:
        w = f["layer/1/weight"]  # layer/0 is the input block
        w[0, 0] = 300
    (d / "afile").write_text("a file, not a directory")
    return d


def run(*args, cwd=None):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(res, code, *words):
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


# --- the cases, command by command --------------------------------------
NET = "{d}/model.net"
CASES = [
    # deploy: silent casts, counts, unreadable files, shapes, zero samples
    ("deploy-non-integer", ["deploy", NET, "--data", "{d}/half.npz", "--fallback", "sim"], BAD_INPUT,
     ["half.npz", "non-integer", "0.5"]),
    ("deploy-nan", ["deploy", NET, "--data", "{d}/nan.npz", "--fallback", "sim"], BAD_INPUT, ["non-finite"]),
    ("deploy-negative-samples", ["deploy", NET, "--data", "{d}/data.npz", "--fallback", "sim", "--samples", "-1"],
     BAD_INPUT, ["--samples -1", ">= 1"]),
    ("deploy-zero-samples-option", ["deploy", NET, "--data", "{d}/data.npz", "--fallback", "sim", "--samples", "0"],
     BAD_INPUT, ["--samples 0"]),
    ("deploy-garbage-net", ["deploy", "{d}/garbage.net", "--data", "{d}/data.npz", "--fallback", "sim"],
     BAD_INPUT, ["garbage.net", "HDF5"]),
    ("deploy-no-inputs-key", ["deploy", NET, "--data", "{d}/nokey.npz", "--fallback", "sim"], BAD_INPUT,
     ["nokey.npz", "'inputs'"]),
    ("deploy-wrong-shape", ["deploy", NET, "--data", "{d}/shape.npz", "--fallback", "sim"], BAD_INPUT,
     ["shape.npz", "(samples, 6, T)"]),
    ("deploy-label-count", ["deploy", NET, "--data", "{d}/count.npz", "--fallback", "sim"], BAD_INPUT,
     ["count.npz", "2 labels for 5"]),
    ("deploy-zero-samples", ["deploy", NET, "--data", "{d}/zero.npz", "--fallback", "sim"], BAD_INPUT,
     ["zero.npz", "no samples"]),
    ("deploy-label-count-with-samples", ["deploy", NET, "--data", "{d}/count.npz", "--fallback", "sim",
                                         "--samples", "2"], BAD_INPUT, ["count.npz", "2 labels for 5"]),
    ("deploy-label-range", ["deploy", NET, "--data", "{d}/biglabels.npz", "--fallback", "sim"], BAD_INPUT,
     ["labels", "0..2"]),
    ("deploy-beyond-int32", ["deploy", NET, "--data", "{d}/huge.npz", "--fallback", "sim"], BAD_INPUT,
     ["int32"]),
    ("deploy-strings", ["deploy", NET, "--data", "{d}/strings.npz", "--fallback", "sim"], BAD_INPUT,
     ["strings.npz"]),
    ("deploy-unwritable-json", ["deploy", NET, "--data", "{d}/data.npz", "--fallback", "sim",
                                "--json", "{d}/afile/r.json"], BAD_OUTPUT, ["--json", "not writable"]),
    # bundle
    ("bundle-non-integer", ["bundle", NET, "--data", "{d}/half.npz", "-o", "{t}/b"], BAD_INPUT,
     ["half.npz", "non-integer"]),
    ("bundle-malformed-net", ["bundle", "{d}/notype.net", "-o", "{t}/b"], BAD_INPUT, ["notype.net", "type"]),
    ("bundle-truncated-net", ["bundle", "{d}/truncated.net", "-o", "{t}/b"], BAD_INPUT, ["truncated.net"]),
    ("bundle-label-count", ["bundle", NET, "--data", "{d}/count.npz", "-o", "{t}/b"], BAD_INPUT, ["2 labels"]),
    ("bundle-clipped-weights", ["bundle", "{d}/clipped.net", "-o", "{t}/b"], DOES_NOT_FIT,
     ["clipped.net", "does not fit loihi2"]),
    ("bundle-unwritable-out", ["bundle", NET, "-o", "{d}/afile/b"], BAD_OUTPUT, ["afile"]),
    ("bundle-zero-samples", ["bundle", NET, "--data", "{d}/data.npz", "--samples", "0", "-o", "{t}/b"],
     BAD_INPUT, ["--samples 0"]),
    # map
    ("map-garbage-net", ["map", "{d}/garbage.net"], BAD_INPUT, ["garbage.net"]),
    ("map-no-layers", ["map", "{d}/nolayers.net"], BAD_INPUT, ["nolayers.net", "layer"]),
    ("map-zero-samples", ["map", NET, "--data", "{d}/zero.npz", "--json", "{t}/m.json"], BAD_INPUT,
     ["zero.npz", "no samples"]),
    ("map-unwritable-json", ["map", NET, "--json", "{d}/afile/m.json"], BAD_OUTPUT, ["--json"]),
    ("map-bad-hw", ["map", NET, "--hw", "loihi9"], BAD_INPUT, ["loihi9"]),
    ("map-clipped-weights", ["map", "{d}/clipped.net", "--json", "{t}/m.json"], DOES_NOT_FIT, ["clipped.net"]),
    # validate
    ("validate-non-integer-labels", ["validate", NET, "--input", "{d}/x.npy", "--labels", "{d}/yfloat.npy",
                                     "--lava-samples", "0"], BAD_INPUT, ["yfloat.npy", "non-integer label"]),
    ("validate-label-range", ["validate", NET, "--input", "{d}/x.npy", "--labels", "{d}/ybig.npy",
                              "--lava-samples", "0"], BAD_INPUT, ["ybig.npy", "0..2"]),
    ("validate-label-count", ["validate", NET, "--input", "{d}/x.npy", "--labels", "{d}/yshort.npy",
                              "--lava-samples", "0"], BAD_INPUT, ["yshort.npy", "2 labels for 5"]),
    ("validate-zero-samples", ["validate", NET, "--input", "{d}/x0.npy", "--labels", "{d}/y0.npy",
                               "--lava-samples", "0"], BAD_INPUT, ["x0.npy", "no samples"]),
    ("validate-non-integer-inputs", ["validate", NET, "--input", "{d}/xhalf.npy", "--labels", "{d}/y.npy",
                                     "--lava-samples", "0"], BAD_INPUT, ["xhalf.npy", "non-integer"]),
    ("validate-pickle", ["validate", NET, "--input", "{d}/obj.npy", "--labels", "{d}/y.npy",
                         "--lava-samples", "0"], BAD_INPUT, ["obj.npy", "not a readable .npy"]),
    ("validate-unwritable-metrics", ["validate", NET, "--input", "{d}/x.npy", "--labels", "{d}/y.npy",
                                     "--lava-samples", "0", "--metrics", "{d}/afile/m.json"], BAD_OUTPUT,
     ["--metrics"]),
    # simulate
    ("simulate-unwritable-output", ["simulate", NET, "--input", "{d}/x.npy", "--output", "{d}/afile/o.npz"],
     BAD_OUTPUT, ["--output"]),
    ("simulate-junk-input", ["simulate", NET, "--input", "{d}/junk.npy", "--output", "{t}/o.npz"], BAD_INPUT,
     ["junk.npy"]),
    ("simulate-empty-input", ["simulate", NET, "--input", "{d}/x0.npy", "--output", "{t}/o.npz"], BAD_INPUT,
     ["x0.npy", "empty"]),
    ("simulate-malformed-net", ["simulate", "{d}/notype.net", "--input", "{d}/x.npy", "--output", "{t}/o.npz"],
     BAD_INPUT, ["notype.net"]),
]


@pytest.mark.parametrize("name, args, code, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code(files, tmp_path, monkeypatch, name, args, code, words):
    monkeypatch.chdir(tmp_path)
    res = run(*[a.format(d=files, t=tmp_path) for a in args])
    assert_one_line_error(res, code, *words)
    # nothing written: no bundle, no report, no metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- pipeline: configuration files and output directory ---------------------------
@pytest.mark.parametrize("text, words", [
    ("- a\n- b\n", ["top level is a list", "mapping"]),
    ("3\n", ["top level is a int"]),
    ("", ["empty", "examples/digits.yaml"]),
    ("# only a comment\n", ["empty"]),
    ("name: x\ndata: {name: digits, dir: /somewhere}\n", ["data.dir", "digits"]),
    ("name: [unclosed\n", ["not valid YAML"]),
    ("train: {epochs: many}\n", ["train.epochs"]),
    ("1: x\n", ["top-level key 1"]),
])
def test_pipeline_bad_config_is_one_line(tmp_path, monkeypatch, text, words):
    import neurodeploy.pipeline as P

    monkeypatch.setattr(P, "load_dataset", lambda *a: pytest.fail("work started"), raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    res = run("pipeline", cfg, "--out", tmp_path / "out")
    assert_one_line_error(res, BAD_INPUT, str(cfg), *words)
    assert not (tmp_path / "out").exists()


def test_pipeline_data_dir_option_for_digits_is_refused(tmp_path):
    res = run("pipeline", "--data-dir", tmp_path, "--out", tmp_path / "out")
    assert_one_line_error(res, BAD_INPUT, "data.dir", "digits")


def test_pipeline_unwritable_out_is_refused_before_work(files, tmp_path):
    res = run("pipeline", "--out", files / "afile" / "run", "--limit", "20")
    assert_one_line_error(res, BAD_OUTPUT, "afile", "not writable")


# --- outputs checked before any work -------------------------------------------------
def test_simulate_and_validate_check_outputs_before_computing(files, tmp_path, monkeypatch):
    import neurodeploy.sim.commands as C
    import neurodeploy.sim.simulator as S

    monkeypatch.setattr(S, "simulate", lambda *a, **k: pytest.fail("simulated before the output check"))
    monkeypatch.setattr(C, "simulated_outputs", lambda *a, **k: pytest.fail("simulated before the check"))
    res = run("simulate", files / "model.net", "--input", files / "x.npy", "--output", files / "afile" / "o.npz")
    assert_one_line_error(res, BAD_OUTPUT, "--output")
    res = run("validate", files / "model.net", "--input", files / "x.npy", "--labels", files / "y.npy",
              "--lava-samples", "0", "--metrics", files / "afile" / "m.json")
    assert_one_line_error(res, BAD_OUTPUT, "--metrics")


# --- legitimate inputs: the right result -------------------------------------------
def test_integer_valued_float_inputs_give_the_integer_result(files, tmp_path):
    """A float array holding only integers is not a cast: same accuracy as the ints."""
    with np.load(files / "data.npz") as d:
        np.savez(tmp_path / "f.npz", inputs=d["inputs"].astype(np.float32), labels=d["labels"].astype(float))
    a = run("deploy", files / "model.net", "--data", files / "data.npz", "--fallback", "sim",
            "--json", tmp_path / "a.json")
    b = run("deploy", files / "model.net", "--data", tmp_path / "f.npz", "--fallback", "sim",
            "--json", tmp_path / "b.json")
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    ra, rb = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert ra["accuracy"] == rb["accuracy"] and ra["samples"] == rb["samples"] == SAMPLES


def test_validate_writes_no_metrics_file_unless_asked(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("validate", files / "model.net", "--input", files / "x.npy", "--labels", files / "y.npy",
              "--lava-samples", "0")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["samples"]["sim"] == SAMPLES
    assert list(tmp_path.iterdir()) == []
    res = run("validate", files / "model.net", "--input", files / "x.npy", "--labels", files / "y.npy",
              "--lava-samples", "0", "--metrics", tmp_path / "m.json")
    assert res.exit_code == 0 and json.loads((tmp_path / "m.json").read_text())["samples"]["sim"] == SAMPLES


def test_bundle_maps_onto_the_default_target_and_records_it(files, tmp_path):
    res = run("bundle", files / "model.net", "-o", tmp_path / "b")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["hardware"]["hardware"] == "loihi2"


# --- bundles -------------------------------------------------------------------------
def test_existing_bundle_directory_names_the_force_option(files, tmp_path):
    assert run("bundle", files / "model.net", "-o", tmp_path / "b").exit_code == 0
    res = run("bundle", files / "model.net", "-o", tmp_path / "b")
    assert_one_line_error(res, BAD_OUTPUT, "--force")
    assert "overwrite" not in res.stderr
    assert run("bundle", files / "model.net", "-o", tmp_path / "b", "--force").exit_code == 0


def test_verify_fails_a_bundle_with_an_extra_file(files, tmp_path):
    assert run("bundle", files / "model.net", "-o", tmp_path / "b").exit_code == 0
    assert run("bundle", "--verify", tmp_path / "b").exit_code == 0
    (tmp_path / "b" / "smuggled.py").write_text("print('hi')")
    res = run("bundle", "--verify", tmp_path / "b")
    assert_one_line_error(res, BAD_INPUT, "smuggled.py", "not listed")


def test_bundle_runner_errors_are_one_line(files, tmp_path):
    assert run("bundle", files / "model.net", "--data", files / "data.npz", "-o", tmp_path / "b").exit_code == 0
    b = tmp_path / "b"

    def runner(*args, flags=()):
        return subprocess.run([sys.executable, *flags, "run.py", *args], cwd=b, capture_output=True,
                              text=True, timeout=120)

    ok = runner("--check")
    assert ok.returncode == 0 and "files match" in ok.stdout
    # without numpy (-S: no site-packages) and without the manifest: one line, no traceback
    r = runner("--check", flags=("-S",))
    assert r.returncode == 1 and "numpy is not installed" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (b / "manifest.json").rename(tmp_path / "manifest.json")
    r = runner("--check")
    assert r.returncode == 1 and "manifest.json" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "manifest.json").rename(b / "manifest.json")
    r = runner("--sim", "--data", str(files / "nokey.npz"))
    assert r.returncode == 1 and "nokey.npz" in r.stderr and "Traceback" not in r.stderr


# --- the one place that prints errors ---------------------------------------------
def test_an_unexpected_exception_is_one_line_and_exit_1(files, tmp_path, monkeypatch):
    import neurodeploy.hardware.mapper as M

    def boom(*a, **k):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(M, "map_network", boom)
    res = run("map", files / "model.net", "--json", tmp_path / "m.json")
    assert_one_line_error(res, 1, "ZeroDivisionError", "a bug", "bug, please report")
