"""Command line interface (thin: every command calls library functions).

Commands defined next to the library code they call are registered by module path
and imported only when run (:class:`LazyGroup`): ``neurodeploy --help`` imports
click alone, and no command imports torch unless it trains or simulates.
"""
from __future__ import annotations

import importlib
import logging
import os

import click

from neurodeploy.errors import NeurodeployError

#: set to 1 to get the traceback of an unexpected failure (exit code 1)
TRACEBACK_ENV = "NEURODEPLOY_TRACEBACK"


def one_line(message: str) -> str:
    """A message as one line (a multi-line list of problems joined by '; ')."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


class EchoHandler(logging.Handler):
    """Log records of the ``neurodeploy`` logger as the command's output lines:
    the message alone, on stdout (click.echo), as the library logged it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(record.getMessage())
        except Exception:  # a closed stdout: logging's own error report
            self.handleError(record)


class Commands(click.Group):
    """The command group: the one place that turns errors into exit codes.

    A :class:`~neurodeploy.errors.NeurodeployError` becomes its one line on
    stderr (``error: ...``) and its ``exit_code`` (docs/cli.md). Click's own
    usage errors keep click's handling (exit 2). Anything else is a bug: one line
    that says so, exit 1 (the traceback with NEURODEPLOY_TRACEBACK=1).

    While a command runs, the library's log lines (logger ``neurodeploy``, INFO and
    above) are printed as the command's output.
    """

    def invoke(self, ctx):
        package = logging.getLogger("neurodeploy")
        handler, level, propagate = EchoHandler(), package.level, package.propagate
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False  # printed once, whatever handlers other libraries set up
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except NeurodeployError as e:
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(e.exit_code)
        except NotImplementedError as e:
            click.echo(f"error: not supported: {one_line(e)}", err=True)
            ctx.exit(2)
        except Exception as e:
            if os.environ.get(TRACEBACK_ENV) == "1":
                raise
            click.echo(f"error: unexpected failure ({type(e).__name__}: {one_line(e)[:500]}); "
                       f"this is a bug, please report it (set {TRACEBACK_ENV}=1 for the traceback)",
                       err=True)
            ctx.exit(1)
        finally:
            package.removeHandler(handler)
            package.setLevel(level)
            package.propagate = propagate


class LazyGroup(Commands):
    """A click group whose ``lazy`` commands are ``name -> (module, attribute, short
    help)``: the module is imported when the command runs or shows its own help;
    the group's help lists the short help without importing anything."""

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            module, attribute, _ = self.lazy[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, self.lazy[name][2]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


LAZY_COMMANDS = {
    "map": ("neurodeploy.hardware.commands", "map_command",
            "Map MODEL.net onto a hardware target: per-layer cores, memory, axons, fit."),
    "deploy": ("neurodeploy.hardware.commands", "deploy_command",
               "Run MODEL.net on Loihi 2 (lava-loihi), or explain why no chip is reachable."),
    "bundle": ("neurodeploy.hardware.commands", "bundle_command",
               "Write a self-contained deployment directory for MODEL.net (run there with `sh run.sh`)."),
    "simulate": ("neurodeploy.sim.commands", "simulate_command",
                 "Run MODEL.net on the bit-accurate simulator (same spikes as Lava fixed_pt)."),
    "validate": ("neurodeploy.sim.commands", "validate_command",
                 "Accuracy of MODEL.net on the simulator and its agreement with Lava."),
    "convert": ("neurodeploy.export.commands", "convert_command",
                "Convert between netx and NIR: SRC.net -> DST.nir or SRC.nir -> DST.net."),
    "sparseprop": ("neurodeploy.sparseprop.commands", "sparseprop_command",
                   "Exact event-driven simulation of a sparse balanced network (SparseProp)."),
}


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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
    env = distributed.launch_environment(os.environ, nproc)
    ctx.exit(subprocess.call(distributed.launch_command(nproc, argv), env=env))



@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: runs/<config name>/).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last checkpoint "
              "(refused if the configuration or data differ from the run's).")
@click.option("--force", is_flag=True, help="Clear a non-empty run directory and start afresh.")
@click.option("--data-dir", default=None, help="Directory with the dataset's published files.")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--limit", type=int, default=None, help="Samples per split, for a quick run.")
@click.option("--lava-samples", type=click.IntRange(min=0), default=None,
              help="Test samples to run on Lava (0: skip Lava).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel in this many processes on this machine (torch.distributed; "
                   "gloo on CPU, NCCL on GPUs). Across nodes: launch with torchrun (docs/distributed.md).")
def pipeline(config, out_dir, resume, force, data_dir, epochs, limit, lava_samples, nproc):
    """Train, quantise, export (netx), simulate bit-exactly and run on Lava.

    CONFIG defaults to examples/digits.yaml, which runs offline.
    """
    from pathlib import Path

    if nproc > 1:
        _launch_distributed(nproc)

    from neurodeploy.config import load_config
    from neurodeploy.pipeline import run_pipeline

    if resume and force:
        raise click.UsageError("--resume continues a run and --force clears it: give one of them")
    cfg = load_config(config)
    skip_lava = lava_samples == 0
    cfg = cfg.with_overrides(**{"data.dir": data_dir, "train.epochs": epochs, "data.limit": limit,
                                "lava.samples": None if skip_lava else lava_samples,
                                "lava.enabled": False if skip_lava else None})
    out = Path(out_dir) if out_dir else Path("runs") / cfg.name
    run_pipeline(cfg, out, resume=resume, force=force)
