"""``neurodeploy convert``: netx ``.net`` <-> NIR ``.nir``, chosen by extension."""
from __future__ import annotations

from pathlib import Path

import click

from neurodeploy.errors import InputError, OutputError

FORMATS = {".net": "netx", ".nir": "nir"}


def convert(src, dst, dt: float = 1.0, input_shape=None, current_input: str = "euler") -> Path:
    """Convert ``src`` to ``dst`` by their extensions: ``.net -> .nir`` (NIR graph with
    time constants at ``dt``) or ``.nir -> .net`` (quantised with the training
    quantiser). ``input_shape`` (C, H, W) for a ``.net`` that starts with a conv block
    and records no input shape; ``current_input``: how a CubaLIF's input enters its
    current (``neurodeploy.export.nir.CURRENT_INPUTS``). Returns the written path."""
    from neurodeploy import fixedpoint as fx
    from neurodeploy.export.netx import NetxFormatError, read_netx, write_netx
    from neurodeploy.export.nir import read_nir, write_nir

    src, dst = Path(src), Path(dst)
    kinds = []
    for p in (src, dst):
        if p.suffix.lower() not in FORMATS:
            raise InputError(f"{p}: unknown format '{p.suffix}'; convert takes .net (netx) and .nir (NIR)")
        kinds.append(FORMATS[p.suffix.lower()])
    if kinds[0] == kinds[1]:
        raise InputError(f"{src} -> {dst}: both are {kinds[0]} files; convert .net <-> .nir")
    if not src.is_file():
        raise InputError(f"{src}: file not found")
    if not dst.parent.is_dir():
        raise OutputError(f"{dst}: directory {dst.parent} does not exist")
    if kinds[0] == "netx":
        try:
            network = read_netx(src, input_shape=input_shape)
        except (NetxFormatError, fx.BitWidthError, ValueError) as e:
            raise InputError(f"{src}: {e}" if str(src) not in str(e) else str(e)) from None
        return write_nir(network, dst, dt=dt)
    network = read_nir(src, dt=dt, current_input=current_input)
    try:
        return write_netx(network, dst)
    except (fx.BitWidthError, ValueError, NotImplementedError) as e:
        raise InputError(f"{src}: {e}") from None


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected C,H,W integers, got {value!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"expected three positive integers C,H,W, got {value!r}")
    return shape


@click.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--dt", type=float, default=1.0, show_default=True,
              help="Time step for NIR's time constants (tau = 4096 dt / decay), in NIR's time unit "
                   "(seconds). Use the dt the .nir was written with (snnTorch's exporter: 1e-4).")
@click.option("--input-shape", callback=_shape, default=None,
              help="C,H,W of a .net whose first block is a conv and records no input shape.")
@click.option("--current-input", type=click.Choice(["euler", "jump"]), default="euler", show_default=True,
              help="How a CubaLIF's input enters its current: euler, I += (dt/tau_syn) w_in x (snnTorch); "
                   "jump, I += w_in x (Norse's LIFCell).")
def convert_command(src, dst, dt, input_shape, current_input):
    """Convert between netx and NIR: SRC.net -> DST.nir or SRC.nir -> DST.net.

    A .nir is read as its forward-Euler discretisation at --dt and quantised with
    the training quantiser (8-bit weights, 12-bit decays); docs/nir.md has the mapping.
    """
    out = convert(src, dst, dt=dt, input_shape=input_shape, current_input=current_input)
    click.echo(f"wrote {out}")
