"""Command line interface (thin: every command calls library functions)."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurodeploy")
def main():
    """neurodeploy: spiking networks from training to Loihi."""


# Commands are defined next to the library code they call and registered here.
from neurodeploy.sim.commands import simulate_command, validate_command  # noqa: E402
main.add_command(simulate_command)
main.add_command(validate_command)
