"""The documentation: the strict mkdocs build, the generated configuration page, the
README's links and commands, and result files named by what they measure."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "config" / "index.html").exists()


def test_the_configuration_page_is_generated_from_the_models():
    spec = importlib.util.spec_from_file_location("config_keys", ROOT / "docs" / "config_keys.py")
    config_keys = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config_keys)
    page = (ROOT / "docs" / "config.md").read_text()
    assert page == config_keys.render(), "docs/config.md is stale: run `uv run python docs/config_keys.py`"
    from neurodeploy.config import RunConfig
    for section, model in RunConfig.model_fields.items():
        for key in getattr(model.annotation, "model_fields", {}):
            assert f"`{section}.{key}`" in page


def test_the_readme_keeps_the_two_commands_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    assert "uv run neurodeploy pipeline" in text and "uv run pytest" in text
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local and all((ROOT / link).exists() for link in local), [x for x in local if not (ROOT / x).exists()]


def test_result_files_are_named_by_what_they_measure_and_referenced_ones_exist():
    results = ROOT / "benchmarks" / "results"
    history = re.compile(r"_(first_version|new|rerun|stop\d+|run\d+|old|v\d+)(\.|_)")
    assert not [p.name for p in results.iterdir() if history.search(p.name)]
    texts = [p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]
    named = {m for t in texts for m in re.findall(r"\b([a-z0-9_]+\.(?:json|png))\b", t)}
    missing = [n for n in named if "*" not in n and "{" not in n and n.startswith(
        ("sim_", "sparse", "peers", "pipeline_", "src_depth", "nir_peers", "cli_startup", "digits_src"))
        and not (results / n).exists()]
    assert not missing
