"""Run directories that cannot mix two runs.

A run directory holds ``run.json``: a run id, the resolved configuration and a
fingerprint of the data the run trains and tests on. Every checkpoint carries the
run id. So:

- a fresh run into a non-empty directory is refused (:class:`OutputDirError`,
  exit code 5) unless ``force`` clears it first (only a directory that holds a
  run, or nothing, is ever cleared);
- ``resume`` is refused when the configuration (CLI overrides included) or the
  data differ from the run's, naming each difference, or when a checkpoint
  belongs to another run. The one change it accepts is more epochs
  (``train.epochs``, ``train.hardware_aware_epochs``): training continues.

numpy and yaml only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

import numpy as np
import yaml

from neurodeploy.checks import OutputDirError, atomic_write_text, check_output_dir

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
#: samples per split encoded for the data fingerprint (the first and the last ones)
FINGERPRINT_SAMPLES = 4
#: what a directory holding a run may contain: only such a directory is cleared by --force
RUN_MARKERS = (RUN_FILE, CONFIG_FILE, CHECKPOINT_DIR, "model.net", "metrics.json")


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` holds. ``data_fingerprint`` is None until the data is loaded."""

    run_id: str
    config: dict
    data_fingerprint: Optional[str] = None
    created: str = ""

    def to_json(self) -> str:
        return json.dumps({"run_id": self.run_id, "created": self.created,
                           "data_fingerprint": self.data_fingerprint, "config": self.config},
                          indent=2) + "\n"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> {dotted key: value}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(old: dict, new: dict) -> List[str]:
    """Each differing dotted key as ``key: <run's value> -> <given value>``."""
    a, b = flatten(old), flatten(new)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            show = lambda v: "(absent)" if v is missing else json.dumps(v)  # noqa: E731
            out.append(f"{key}: {show(va)} -> {show(vb)}")
    return out


#: the only changes --resume accepts: more epochs (training continues where it stopped)
LONGER_TRAINING = ("train.epochs", "train.hardware_aware_epochs")


def _longer_training(old: dict, new: dict) -> List[str]:
    """The differences that only add epochs, when they are the only differences."""
    a, b = flatten(old), flatten(new)
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    ok = all(k in LONGER_TRAINING and isinstance(a.get(k), int) and isinstance(b.get(k), int)
             and b[k] > a[k] for k in diff)
    return [f"{k}: {a[k]} -> {b[k]}" for k in diff] if diff and ok else []


def data_fingerprint(train_set, test_set) -> str:
    """sha256 over what a run trains and tests on: each split's size, input shape,
    steps, classes and labels, and the encoded spikes of its first and last
    ``FINGERPRINT_SAMPLES`` samples (a different file, split, limit, seed or
    encoding changes it)."""
    h = hashlib.sha256()
    for ds in (train_set, test_set):
        n = len(ds)
        h.update(json.dumps([n, list(ds.input_shape), int(ds.steps), int(ds.num_classes)]).encode())
        h.update(np.ascontiguousarray(np.asarray(ds.labels, dtype=np.int64)).tobytes())
        k = min(n, FINGERPRINT_SAMPLES)
        idx = np.unique(np.concatenate([np.arange(k), np.arange(n - k, n)])) if n else np.arange(0)
        h.update(np.ascontiguousarray(np.asarray(ds.encode(idx), dtype=np.float32)).tobytes())
    return h.hexdigest()


def read_record(out_dir: Path) -> Optional[RunRecord]:
    p = Path(out_dir) / RUN_FILE
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
        return RunRecord(run_id=str(d["run_id"]), config=dict(d["config"]),
                         data_fingerprint=d.get("data_fingerprint"), created=str(d.get("created", "")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputDirError(f"{p}: unreadable run record ({type(e).__name__}: {e}); this directory "
                             "cannot be resumed: use --force to clear it or another --out") from None


def write_record(out_dir: Path, record: RunRecord) -> None:
    atomic_write_text(Path(out_dir) / RUN_FILE, record.to_json())


def _entries(d: Path) -> List[str]:
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _clear(out_dir: Path) -> None:
    entries = _entries(out_dir)
    if entries and not any(m in entries for m in RUN_MARKERS):
        raise OutputDirError(f"--force {out_dir}: not a neurodeploy run directory (holds {', '.join(entries[:5])}"
                             f"{' ...' if len(entries) > 5 else ''}; no {RUN_FILE} or {CONFIG_FILE}); "
                             "refusing to clear it: choose another --out")
    for p in out_dir.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def open_run_dir(out_dir, config: dict, resume: bool = False, force: bool = False) -> RunRecord:
    """Prepare ``out_dir`` for a run of ``config`` (the resolved configuration) and
    return its record; refuses (OutputDirError) everything that could mix runs.
    Writes ``config.yaml`` and ``run.json`` (without the data fingerprint, which
    :func:`check_data` adds)."""
    out_dir = check_output_dir(Path(out_dir), "--out")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = read_record(out_dir) if resume else None
    if resume and record is None:
        ckpts = sorted((out_dir / CHECKPOINT_DIR).glob("*.pt"))
        if ckpts:
            raise OutputDirError(f"--resume {out_dir}: checkpoints without a {RUN_FILE} (from another tool "
                                 "or version); cannot tell which run they belong to: use --force or another --out")
        others = [e for e in _entries(out_dir) if e not in (CONFIG_FILE,)]
        if others:
            raise OutputDirError(f"--resume {out_dir}: no {RUN_FILE}, so not a run that can be resumed "
                                 f"(holds {', '.join(others[:5])}): use --force or another --out")
        logger.info(f"resume: nothing to resume in {out_dir}; starting the run")
    if record is not None:
        longer = _longer_training(record.config, config)
        if longer:
            logger.info(f"resume: {'; '.join(longer)}: training continues from the last checkpoint")
            record = RunRecord(record.run_id, config, record.data_fingerprint, record.created)
            atomic_write_text(out_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
            write_record(out_dir, record)
        diff = config_differences(record.config, config)
        if diff:
            raise OutputDirError(f"--resume {out_dir}: the configuration differs from the run's "
                                 f"({'; '.join(diff)}); resume with the same configuration and options, "
                                 "or start a fresh run (another --out, or --force)")
    elif not resume:
        if _entries(out_dir):
            if not force:
                raise OutputDirError(f"--out {out_dir}: not empty (holds {', '.join(_entries(out_dir)[:5])}); "
                                     "use --resume to continue that run, --force to clear it, or another --out")
            _clear(out_dir)
            logger.info(f"--force: cleared {out_dir}")
    if record is None:
        record = RunRecord(run_id=uuid.uuid4().hex, config=config, created=now)
        atomic_write_text(out_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        write_record(out_dir, record)
    return record


def check_data(out_dir, record: RunRecord, fingerprint: str) -> RunRecord:
    """Record the data fingerprint, or refuse if the run recorded another one."""
    if record.data_fingerprint is not None and record.data_fingerprint != fingerprint:
        raise OutputDirError(f"--resume {out_dir}: the data differ from the run's (fingerprint "
                             f"{fingerprint[:12]} now, {record.data_fingerprint[:12]} in {RUN_FILE}): "
                             "the dataset files changed; start a fresh run (another --out, or --force)")
    if record.data_fingerprint is None:
        record = RunRecord(record.run_id, record.config, fingerprint, record.created)
        write_record(out_dir, record)
    return record
