"""CLI commands ``map``, ``deploy`` and ``bundle`` (thin wrappers over the
library functions in this package). Registered in :mod:`neurodeploy.cli`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from neurodeploy.hardware.config import HardwareConfigError
from neurodeploy.hardware.mapper import MappingError

EXIT_DOES_NOT_FIT = 4  # (click uses 2 for usage errors)
EXIT_NO_CHIP = 3


class _Fail(click.ClickException):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.exit_code = code


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


@click.command("map")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--hw", "hw", default="loihi2", show_default=True,
              help="hardware config: a YAML path or a name in hw_configs/ (loihi1, loihi2, oheo_gulch, kapoho_point)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the JSON report [default: MODEL's folder, <model>.<hw>.mapping.json]")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="npz with inputs (samples, *input_shape, T): simulate them for synaptic ops and an energy estimate")
@click.option("--samples", type=int, default=16, show_default=True, help="samples of --data to simulate")
@click.option("--nonzero-only", is_flag=True, help="count only nonzero dense weights as stored synapses")
def map_command(model: Path, hw: str, json_path: Optional[Path], data: Optional[Path], samples: int,
                nonzero_only: bool):
    """Map MODEL.net onto a hardware target: per-layer cores, memory, axons, fit."""
    from neurodeploy.export.netx import read_netx
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.deploy import load_samples
    from neurodeploy.hardware.mapper import estimate_activity, map_network, spikes_from_simulation

    try:
        config = load_hardware_config(hw)
    except HardwareConfigError as e:
        raise _Fail(str(e))
    network = read_netx(model)
    try:
        report = map_network(network, config, count_zero_weights=not nonzero_only)
    except MappingError as e:
        raise _Fail(f"{model}: does not fit {config.name}: {e}", EXIT_DOES_NOT_FIT)
    if data is not None:
        x, _ = load_samples(data)
        x = x[:samples]
        try:
            spikes = spikes_from_simulation(network, x)
        except NotImplementedError as e:
            click.echo(f"warning: no activity estimate, the simulator cannot run this network ({e})", err=True)
        else:
            report = report.with_activity(estimate_activity(
                network, config, spikes, steps=x.shape[-1], samples=x.shape[0],
                count_zero_weights=not nonzero_only))
    click.echo(report.table())
    out = json_path or model.with_name(f"{model.stem}.{config.name}.mapping.json")
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
@click.option("--samples", type=int, default=None, help="use only the first N samples of --data")
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
    from neurodeploy.hardware.deploy import ChipUnavailableError, deploy, detect_loihi, load_samples

    availability = detect_loihi(partition=partition, board=board, host=host, loihi_gen=loihi_gen)
    if availability.reachable:
        click.echo(availability.message)
    if data is None:
        if not availability.reachable:
            raise _Fail("nothing deployed: " + availability.message
                        + (" (--fallback sim needs --data)" if fallback else ""), EXIT_NO_CHIP)
        raise _Fail("a Loihi 2 system is reachable; give --data inputs.npz to run samples on it")
    x, labels = load_samples(data)
    if samples is not None:
        x = x[:samples]
        labels = None if labels is None else labels[:samples]
    try:
        result = deploy(model, x, labels, fallback=fallback, availability=availability, hw_config=hw)
    except MappingError as e:
        raise _Fail(f"{model}: does not fit {hw}: {e}", EXIT_DOES_NOT_FIT)
    except ChipUnavailableError as e:
        raise _Fail(str(e), EXIT_NO_CHIP)
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
@click.option("--samples", type=int, default=None, help="include only the first N samples of --data")
@click.option("--steps", type=int, default=None, help="time steps per sample (default: the data's T, else 100)")
@click.option("--encoding", "encoding_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSON with extra input-encoding fields (e.g. the pipeline's encoder)")
@click.option("--hw", "hw", default=None, help="also map onto this hardware config and record it in the manifest")
@click.option("--force", is_flag=True, help="replace an existing non-empty bundle directory")
@click.option("--verify", "verify_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="verify an existing bundle's checksums instead of writing one")
def bundle_command(model: Optional[Path], out: Optional[Path], data: Optional[Path], samples: Optional[int],
                   steps: Optional[int], encoding_path: Optional[Path], hw: Optional[str], force: bool,
                   verify_dir: Optional[Path]):
    """Write a self-contained deployment directory for MODEL.net (run there with `sh run.sh`)."""
    from neurodeploy.hardware.bundle import BundleError, verify_bundle, write_bundle

    if verify_dir is not None:
        check = verify_bundle(verify_dir)
        if not check.ok:
            raise _Fail("bundle verification failed:\n  " + "\n  ".join(check.problems))
        click.echo(f"{verify_dir}: {check.files} files match manifest.json")
        return
    if model is None:
        raise click.UsageError("give MODEL.net (or --verify DIR)")
    x = labels = None
    if data is not None:
        from neurodeploy.hardware.deploy import load_samples
        x, labels = load_samples(data)
        if samples is not None:
            x = x[:samples]
            labels = None if labels is None else labels[:samples]
    hardware = None
    if hw is not None:
        from neurodeploy.export.netx import read_netx
        from neurodeploy.hardware.config import load_hardware_config
        from neurodeploy.hardware.mapper import map_network
        try:
            hardware = map_network(read_netx(model), load_hardware_config(hw)).to_dict()
        except MappingError as e:
            raise _Fail(f"{model}: does not fit {hw}: {e}", EXIT_DOES_NOT_FIT)
    encoding = json.loads(encoding_path.read_text()) if encoding_path else None
    out = out or model.with_name(f"{model.stem}_bundle")
    try:
        path = write_bundle(model, out, steps=steps, inputs=x, labels=labels, encoding=encoding,
                            hardware=hardware, overwrite=force)
    except BundleError as e:
        raise _Fail(str(e))
    check = verify_bundle(path, strict=True)
    click.echo(f"wrote {path} ({check.files} files, checksums verified); run it there with: sh run.sh")
