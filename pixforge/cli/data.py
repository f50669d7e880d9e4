"""``pixforge data``: the built-in dataset, inspecting a folder, the public archives."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pixforge.cli._base import cli
from pixforge.config import FORMATS


@cli.group()
def data() -> None:
    """Make, check and fetch datasets."""


@data.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--count", default=200, show_default=True, help="Number of scenes.")
@click.option("--size", default=64, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True)
def synth(out: Path, count: int, size: int, seed: int) -> None:
    """Render the built-in procedural facade dataset into OUT (aligned, labeled, unaligned, derain)."""
    from pixforge.data.synth import synthesize

    summary = synthesize(out, count=count, size=size, seed=seed)
    click.echo(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


@data.command(name="inspect")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--data-format", default="auto", type=click.Choice(list(FORMATS)))
def inspect_cmd(root: Path, data_format: str) -> None:
    """Report the format, counts, image sizes and every problem of a dataset, without training."""
    from pixforge.data.formats import inspect

    report = inspect(root, data_format)
    click.echo(f"{report.root}: {report.fmt} format")
    for split, count in report.counts.items():
        sizes = ", ".join(f"{s} x{n}" for s, n in report.sizes.get(split, {}).items())
        notes = [sizes] if sizes else []
        if split in report.labels_only:
            notes.append("labels only")
        click.echo(f"  {split}: {count} samples" + (f" ({'; '.join(notes)})" if notes else ""))
    click.echo(f"{len(report.problems)} problem(s)")
    for problem in report.problems:
        click.echo(f"  - {problem}")
    if report.problems:
        sys.exit(1)


@data.command()
@click.argument("name")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Folder to unpack into.")
@click.option("--sha256", help="Expected checksum of the archive.")
def download(name: str, root: Path, sha256: str | None) -> None:
    """Fetch and unpack a standard pix2pix/CycleGAN dataset (facades, maps, horse2zebra, ...)."""
    from pixforge.data.download import download as fetch

    path = fetch(name, root, sha256=sha256)
    click.echo(f"{name}: {path}")
