"""``pixforge reproduce``: the papers' ablation tables, rerun at any budget."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pixforge.cli._base import cli
from pixforge.errors import PixforgeError

if TYPE_CHECKING:
    from pixforge.reproduce import Table


def _table(name: str) -> Table:
    from pixforge.reproduce import TABLES

    if name not in TABLES:
        match = difflib.get_close_matches(name, list(TABLES), n=1)
        hint = f" (did you mean {match[0]}?)" if match else ""
        raise PixforgeError(f"unknown table '{name}'{hint}; `pixforge reproduce --list` shows them")
    return TABLES[name]


def _list_tables() -> None:
    from pixforge.reproduce import TABLES

    for table in TABLES.values():
        click.echo(f"{table.name}: {table.title}\n  paper (theirs): {table.source}; {table.setting}")
        for line in table.paper_rows():
            click.echo(f"  {line}")
        if table.note:
            click.echo(f"  note: {table.note}")
        click.echo("")


@cli.command()
@click.argument("table_name", metavar="TABLE", required=False)
@click.option("--list", "show_list", is_flag=True, help="Show every table with the paper's numbers.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), help="Dataset folder.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the runs, scores and the table.")
@click.option(
    "--steps", default=2000, show_default=True, help="Training steps per arm (the last half decay)."
)
@click.option("--size", type=int, help="Training crop size in pixels (default: each preset's).")
@click.option("--seeds", default=1, show_default=True, help="Seeds per arm (the table shows their spread).")
@click.option("--holdout", default=0, show_default=True, help="Hold out the last N training samples by name.")
@click.option("--segmenter", type=click.Path(path_type=Path), help="Segmenter run for FCN-scores.")
@click.option("--segmenter-steps", default=2000, show_default=True, help="Steps of the segmenter stage.")
@click.option("--metrics", default="psnr,ssim,kid,fid", show_default=True, help="Scores besides FCN.")
@click.option("--jobs", default=0, help="Arms trained at once, one thread each (default: the CPU count).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--at-step", default=0, help="Train nothing: score the runs at this step of their schedule.")
def reproduce(
    table_name: str | None,
    show_list: bool,
    data_root: Path | None,
    out: Path | None,
    steps: int,
    size: int | None,
    seeds: int,
    holdout: int,
    segmenter: Path | None,
    segmenter_steps: int,
    metrics: str,
    jobs: int,
    device: str,
    at_step: int,
) -> None:
    """Rerun a paper's ablation TABLE on --data into --out: train its arms (resumable, in parallel), score a
    held-out split with `pixforge compare`, and write ours ± the seed spread beside the paper's numbers."""
    if show_list:
        _list_tables()
        return
    if table_name is None:
        raise PixforgeError("reproduce needs a TABLE (or --list)")
    table = _table(table_name)
    if data_root is None or out is None:
        raise PixforgeError("reproduce TABLE needs --data DIR and --out DIR")
    if steps < 1 or seeds < 1:
        raise PixforgeError("--steps and --seeds must be at least 1")
    from pixforge.reproduce import Budget, RunOptions, output_stem, run_table

    options = RunOptions(
        budget=Budget(steps=steps, size=size, seeds=seeds, device=device),
        holdout=holdout,
        segmenter=segmenter,
        segmenter_steps=segmenter_steps,
        metrics=metrics,
        jobs=jobs,
        progress=click.echo,
        at_step=at_step,
    )
    result = run_table(table, data_root, out, options)
    click.echo(result.to_markdown())
    name = output_stem(table, at_step)
    click.echo(f"wrote {out / name}.md and {out / name}.json")
