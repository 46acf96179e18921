"""CLI commands ``map``, ``deploy`` and ``bundle`` (thin wrappers over the
library functions in this package). Registered in :mod:`neurodeploy.cli`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from neurodeploy import checks
from neurodeploy.errors import DoesNotFitError, InputError
from neurodeploy.hardware.mapper import MappingError


def _write_json(path: Path, data: dict) -> None:
    checks.atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _samples(path: Path, network, samples: Optional[int], option: str = "--data"):
    """Inputs (netx order, :mod:`neurodeploy.layout`) and labels of an .npz, checked
    against ``network``."""
    from neurodeploy.layout import check_samples

    x, labels = checks.load_samples(path, option)
    x = check_samples(x, network, f"{option} {path}: inputs", allow_single=False)
    labels = checks.check_labels(labels, x.shape[0], checks.num_classes(network), f"{option} {path}: labels")
    return checks.first_samples(x, labels, samples)


def _does_not_fit(model, target: str, e: MappingError) -> DoesNotFitError:
    return DoesNotFitError(f"{model}: does not fit {target}: {e}")


@click.command("map")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--hw", "hw", default="loihi2", show_default=True,
              help="hardware config: a YAML path or a name in hw_configs/ (loihi1, loihi2, oheo_gulch, kapoho_point)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the JSON report [default: MODEL's folder, <model>.<hw>.mapping.json]")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="npz with inputs (samples, *input_shape, T): simulate them for synaptic ops and an energy estimate")
@click.option("--samples", type=int, default=16, show_default=True, help="samples of --data to simulate (>= 1)")
@click.option("--nonzero-only", is_flag=True, help="count only nonzero dense weights as stored synapses")
def map_command(model: Path, hw: str, json_path: Optional[Path], data: Optional[Path], samples: int,
                nonzero_only: bool):
    """Map MODEL.net onto a hardware target: per-layer cores, memory, axons, fit."""
    from neurodeploy.hardware.activity import activity_of_samples
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.mapper import map_network

    checks.check_sample_count(samples)
    config = load_hardware_config(hw)
    network = checks.load_network(model)
    out = json_path or model.with_name(f"{model.stem}.{config.name}.mapping.json")
    checks.check_output_file(out, "--json")
    x = None if data is None else _samples(data, network, samples)[0]
    try:
        report = map_network(network, config, count_zero_weights=not nonzero_only)
    except MappingError as e:
        raise _does_not_fit(model, config.name, e) from None
    if x is not None:
        try:
            report = report.with_activity(activity_of_samples(
                network, config, x, count_zero_weights=not nonzero_only))
        except NotImplementedError as e:
            click.echo(f"warning: no activity estimate, the simulator cannot run this network ({e})", err=True)
    click.echo(report.table())
    d = report.to_dict()
    d["config"] = config.to_dict()
    from neurodeploy.hardware.src_resources import src_resources, src_table
    src_rows = src_resources(network, {p.index: p.cores for p in report.layers})
    if src_rows:  # SRC layers: state, tables and ops per step (an estimate)
        click.echo(src_table(src_rows))
        d["src_resources"] = src_rows
    _write_json(out, d)
    click.echo(f"wrote {out}")


@click.command("deploy")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="npz with inputs (samples, *input_shape, T) and optional labels (samples,)")
@click.option("--samples", type=int, default=None, help="use only the first N (>= 1) samples of --data")
@click.option("--partition", default=None, help="SLURM partition (default: $PARTITION)")
@click.option("--board", default=None, help="SLURM board (default: $BOARD)")
@click.option("--host", default=None, help="Ethernet host of a Loihi 2 system (default: $NXSDKHOST)")
@click.option("--loihi-gen", default=None, help="chip generation, e.g. N3B3 (default: $LOIHI_GEN or N3B3)")
@click.option("--hw", "hw", default="loihi2", show_default=True, help="hardware config checked before deploying")
@click.option("--fallback", type=click.Choice(["sim"]), default=None,
              help="without a reachable chip, run the bit-accurate simulator instead")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the result as JSON")
def deploy_command(model: Path, data: Optional[Path], samples: Optional[int], partition, board, host,
                   loihi_gen, hw: str, fallback: Optional[str], json_path: Optional[Path]):
    """Run MODEL.net on Loihi 2 (lava-loihi), or explain why no chip is reachable."""
    from neurodeploy.hardware.deploy import ChipUnavailableError, deploy, detect_loihi

    checks.check_sample_count(samples)
    network = checks.load_network(model)
    if json_path is not None:
        checks.check_output_file(json_path, "--json")
    x = labels = None
    if data is not None:
        x, labels = _samples(data, network, samples)
    availability = detect_loihi(partition=partition, board=board, host=host, loihi_gen=loihi_gen)
    if availability.reachable:
        click.echo(availability.message)
    if data is None:
        if not availability.reachable:
            raise ChipUnavailableError("nothing deployed: " + availability.message
                                       + (" (--fallback sim needs --data)" if fallback else ""))
        raise InputError("--data: missing; a Loihi 2 system is reachable: give --data inputs.npz to run "
                         "samples on it")
    try:
        result = deploy(model, x, labels, fallback=fallback, availability=availability, hw_config=hw)
    except MappingError as e:
        raise _does_not_fit(model, hw, e) from None
    for k, v in result.to_dict().items():
        if v is not None and v != []:
            click.echo(f"{k}: {v}")
    if json_path is not None:
        _write_json(json_path, result.to_dict())
        click.echo(f"wrote {json_path}")


@click.command("bundle")
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="bundle directory to write [default: <model>_bundle next to MODEL]")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="npz with inputs/labels to include as inputs.npz")
@click.option("--samples", type=int, default=None, help="include only the first N (>= 1) samples of --data")
@click.option("--steps", type=int, default=None, help="time steps per sample (default: the data's T, else 100)")
@click.option("--encoding", "encoding_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSON with extra input-encoding fields (e.g. the pipeline's encoder)")
@click.option("--hw", "hw", default="loihi2", show_default=True,
              help="map onto this hardware config first (refused if the network does not fit, "
                   "e.g. weights Lava would clip) and record the mapping in the manifest")
@click.option("--force", is_flag=True, help="replace an existing non-empty bundle directory")
@click.option("--verify", "verify_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="verify an existing bundle's checksums instead of writing one")
def bundle_command(model: Optional[Path], out: Optional[Path], data: Optional[Path], samples: Optional[int],
                   steps: Optional[int], encoding_path: Optional[Path], hw: Optional[str], force: bool,
                   verify_dir: Optional[Path]):
    """Write a self-contained deployment directory for MODEL.net (run there with `sh run.sh`)."""
    from neurodeploy.hardware.bundle import BundleError, verify_bundle, write_bundle
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.mapper import map_network

    if verify_dir is not None:
        check = verify_bundle(verify_dir)
        if not check.ok:
            raise BundleError(f"{verify_dir}: bundle verification failed: " + "; ".join(check.problems))
        click.echo(f"{verify_dir}: {check.files} files match manifest.json")
        return
    if model is None:
        raise click.UsageError("give MODEL.net (or --verify DIR)")
    checks.check_sample_count(samples)
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps}: expected >= 1")
    network = checks.load_network(model)
    out = out or model.with_name(f"{model.stem}_bundle")
    checks.check_output_dir(out, "--out", create=False)
    x = labels = None
    if data is not None:
        x, labels = _samples(data, network, samples)
    config = load_hardware_config(hw)
    try:
        hardware = map_network(network, config).to_dict()
    except MappingError as e:
        raise _does_not_fit(model, config.name, e) from None
    encoding = None
    if encoding_path is not None:
        try:
            encoding = json.loads(encoding_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"--encoding {encoding_path}: not readable JSON ({e})") from None
        if not isinstance(encoding, dict):
            raise InputError(f"--encoding {encoding_path}: a JSON {type(encoding).__name__}; expected an "
                             "object of extra encoding fields")
    path = write_bundle(model, out, steps=steps, inputs=x, labels=labels, encoding=encoding,
                        hardware=hardware, overwrite=force)
    check = verify_bundle(path, strict=True)
    click.echo(f"wrote {path} ({check.files} files, checksums verified); run it there with: sh run.sh")
