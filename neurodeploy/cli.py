"""Command line interface (thin: every command calls library functions)."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurodeploy")
def main():
    """neurodeploy: spiking networks from training to Loihi."""
    import warnings
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, filename, lineno, line=None):
    """Warnings on the command line as one line each, without the source line."""
    return f"warning: {message}\n"


# Commands are defined next to the library code they call and registered here.


def _launch_distributed(nproc: int) -> None:
    """Run this command again in ``nproc`` processes through torch's launcher, with the
    same arguments less ``--nproc``, and exit with its status."""
    import os
    import subprocess

    from neurodeploy.train import distributed

    ctx = click.get_current_context()
    if distributed.requested_world_size() > 1:
        raise click.ClickException("--nproc inside a distributed launch (torchrun/srun already "
                                   "started the processes): drop --nproc")
    argv = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "nproc" or value is None or value is False:
            continue
        if isinstance(param, click.Argument):
            argv.append(str(value))
        elif getattr(param, "is_flag", False):
            argv.append(param.opts[0])
        else:
            argv += [param.opts[0], str(value)]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(
        max(1, (os.cpu_count() or 1) // nproc))))
    ctx.exit(subprocess.call(distributed.launch_command(nproc, argv), env=env))


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: runs/<config name>/).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last checkpoint.")
@click.option("--data-dir", default=None, help="Directory with the dataset's published files.")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--limit", type=int, default=None, help="Samples per split, for a quick run.")
@click.option("--lava-samples", type=click.IntRange(min=0), default=None,
              help="Test samples to run on Lava (0: skip Lava).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel in this many processes on this machine (torch.distributed; "
                   "gloo on CPU, NCCL on GPUs). Across nodes: launch with torchrun (docs/distributed.md).")
def pipeline(config, out_dir, resume, data_dir, epochs, limit, lava_samples, nproc):
    """Train, quantise, export (netx), simulate bit-exactly and run on Lava.

    CONFIG defaults to examples/digits.yaml, which runs offline.
    """
    from pathlib import Path

    if nproc > 1:
        _launch_distributed(nproc)

    from neurodeploy.config import ConfigError, load_config
    from neurodeploy.pipeline import OutputDirError, run_pipeline

    try:
        cfg = load_config(config)
        skip_lava = lava_samples == 0
        cfg = cfg.with_overrides(**{"data.dir": data_dir, "train.epochs": epochs, "data.limit": limit,
                                    "lava.samples": None if skip_lava else lava_samples,
                                    "lava.enabled": False if skip_lava else None})
    except ConfigError as e:
        raise click.ClickException(str(e))
    out = Path(out_dir) if out_dir else Path("runs") / cfg.name
    try:
        run_pipeline(cfg, out, resume=resume, log=click.echo)
    except (OutputDirError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e))


from neurodeploy.hardware.commands import bundle_command, deploy_command, map_command  # noqa: E402

main.add_command(map_command)
main.add_command(deploy_command)
main.add_command(bundle_command)
from neurodeploy.sim.commands import simulate_command, validate_command  # noqa: E402
main.add_command(simulate_command)
main.add_command(validate_command)
