"""Command line interface (thin: every command calls library functions).

Commands defined next to the library code they call are registered by module path
and imported only when run (:class:`LazyGroup`): ``neurodeploy --help`` imports
click alone, and no command imports torch unless it trains or simulates.
"""
from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
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
def pipeline(config, out_dir, resume, data_dir, epochs, limit, lava_samples):
    """Train, quantise, export (netx), simulate bit-exactly and run on Lava.

    CONFIG defaults to examples/digits.yaml, which runs offline.
    """
    from pathlib import Path

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
    from neurodeploy.errors import NeurodeployError
    try:
        run_pipeline(cfg, out, resume=resume, log=click.echo)
    except NeurodeployError as e:  # one line, the exit code of its kind
        err = click.ClickException(str(e))
        err.exit_code = e.exit_code
        raise err from None
    except (OutputDirError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e))
