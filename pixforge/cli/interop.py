"""``pixforge import`` and ``pixforge pretrained``: checkpoints of the reference implementations."""

from __future__ import annotations

from pathlib import Path

import click

from pixforge.cli._base import cli


@cli.command(name="import")
@click.argument("source", type=click.Choice(["junyanz", "nvidia"]))
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", required=True, type=click.Choice(["pix2pix", "cyclegan", "pix2pixhd"]))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--netG", "netg", help="The reference --netG (default: read from the tensors).")
@click.option("--ngf", type=int, help="The generator's width (default: read from the tensors).")
@click.option(
    "--norm", type=click.Choice(["batch", "instance", "none"]), help="Default: read from the tensors."
)
@click.option(
    "--label-nc", type=int, help="pix2pixHD: label classes (default: what the input channels leave)."
)
@click.option("--no-instance", is_flag=True, help="pix2pixHD: trained without instance maps (--no_instance).")
@click.option(
    "--direction", default="AtoB", show_default=True, type=click.Choice(["AtoB", "BtoA"]), help="As trained."
)
@click.option(
    "--crop-size", type=int, help="The training crop (default: 128 for unet_128, 256; 512 for pix2pixHD)."
)
@click.option(
    "--epoch", default="latest", show_default=True, help="In a checkpoint folder: {epoch}_net_*.pth."
)
def import_cmd(
    source: str,
    checkpoints: tuple[Path, ...],
    method: str,
    out: Path,
    netg: str | None,
    ngf: int | None,
    norm: str | None,
    label_nc: int | None,
    no_instance: bool,
    direction: str,
    crop_size: int | None,
    epoch: str,
) -> None:
    """Import the .pth files (or checkpoint folder) of junyanz's pix2pix/CycleGAN or NVIDIA's pix2pixHD as a run.

    Files named *_net_D.pth, *_net_G_A.pth, ... take that role; others are the generator.
    """
    from pixforge.interop.junyanz import import_junyanz
    from pixforge.interop.nvidia import import_nvidia
    from pixforge.interop.runs import ImportOptions

    options = ImportOptions(
        method,
        netG=netg,
        ngf=ngf,
        norm=norm,
        label_nc=label_nc,
        instances=False if no_instance else None,
        direction=direction,
        crop_size=crop_size,
        epoch=epoch,
    )
    run_import = import_junyanz if source == "junyanz" else import_nvidia
    saved = run_import(list(checkpoints), out, options)
    click.echo(f"imported {', '.join(str(c) for c in checkpoints)} as a {method} run: {out} ({saved.name})")


@cli.group()
def pretrained() -> None:
    """The authors' published generators by name."""


@pretrained.command(name="list")
def list_cmd() -> None:
    """Name, method, what it does, licence and source URL of every published model."""
    from pixforge.interop.catalogue import CATALOGUE, entry_key

    for entry in CATALOGUE:
        checksum = entry.sha256 or "sha256 not published"
        click.echo(f"{entry_key(entry):32} {entry.method:10} {entry.does}")
        click.echo(f"{'':32} {entry.url} ({checksum}; {entry.licence})")
        if entry.paper:
            click.echo(f"{'':32} paper: {entry.paper}")


@pretrained.command(name="get")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
def get_cmd(name: str, out: Path) -> None:
    """Download NAME, check its sha256 where published, and import it into the run OUT."""
    from pixforge.interop.catalogue import get

    entry, digest = get(name, out)
    checked = "checked" if entry.sha256 else "not published upstream, not checked"
    click.echo(f"{entry.name}: {entry.does}; sha256 {digest} ({checked}); run in {out}")
