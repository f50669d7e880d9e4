"""``pixforge train``, ``options`` and ``pix2pixhd cluster``: making and inspecting runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pixforge.cli._base import PRESETS_HELP, cli, launch_options, relaunch
from pixforge.config import FORMATS
from pixforge.distributed import launch_rank


@cli.command()
@click.argument("method")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Dataset folder.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory.")
@click.option("--preset", help=f"Preset of the method; {PRESETS_HELP}.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML file of options.")
@click.option("--size", type=int, help="Training crop size in pixels.")
@click.option("--steps", type=int, help="Train this many steps (instead of epochs).")
@click.option("--epochs", type=int, help="Epochs at the initial learning rate.")
@click.option("--epochs-decay", type=int, help="Epochs of linear learning-rate decay.")
@click.option("--batch-size", type=int)
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]))
@click.option("--data-format", type=click.Choice(list(FORMATS)))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option(
    "--amp", type=click.Choice(["none", "bf16"]), help="Mixed precision: bf16 autocast (CUDA and CPU)."
)
@click.option(
    "--channels-last", is_flag=True, default=None, help="channels_last memory format (CUDA and CPU)."
)
@click.option("--seed", type=int)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option(
    "--init-from", type=click.Path(path_type=Path), help="Start from the matching weights of another run."
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any config option (repeatable); `pixforge options METHOD` lists them.",
)
@launch_options
def train(
    method: str,
    data_root: Path,
    out: Path,
    preset: str | None,
    config_file: Path | None,
    size: int | None,
    steps: int | None,
    epochs: int | None,
    epochs_decay: int | None,
    batch_size: int | None,
    direction: str | None,
    data_format: str | None,
    device: str | None,
    amp: str | None,
    channels_last: bool | None,
    seed: int | None,
    resume: bool,
    init_from: Path | None,
    assignments: tuple[str, ...],
    launch: Any,
) -> None:
    """Train METHOD (pix2pix, ...) on the dataset in --data into the run directory --out.

    With --nproc N (and --nnodes, --node-rank, --rdzv-endpoint for several machines) the same command runs
    as N processes per machine through torch.distributed.run: one per GPU, or N gloo processes on the CPU.
    """
    from pixforge.api import train as run_train
    from pixforge.api import train_config
    from pixforge.config import parse_assignments

    flags = {
        "train.steps": steps,
        "train.epochs": epochs,
        "train.epochs_decay": epochs_decay,
        "train.batch_size": batch_size,
        "data.direction": direction,
        "data.format": data_format,
        "train.device": device,
        "train.amp": amp,
        "train.channels_last": channels_last,
        "train.seed": seed,
    }
    options: dict[str, Any] = {
        "preset": preset,
        "config": config_file,
        "size": size,
        "resume": resume,
        "overrides": parse_assignments(assignments),
        **{k: v for k, v in flags.items() if v is not None},
    }
    if launch.needed:
        cfg = train_config(method, data_root, out, **options)
        relaunch(launch, cfg.train.device)
        return
    result = run_train(method, data_root, out, init_from=init_from, **options)
    if launch_rank() != 0:
        return
    losses = " ".join(f"{k}={v:.4g}" for k, v in result.scalars.items())
    state = "interrupted at" if result.interrupted else "finished at"
    click.echo(
        f"{state} step {result.step}: {losses}\nrun: {result.run_dir} (open {result.run_dir / 'index.html'})"
    )


@cli.group(name="pix2pixhd")
def pix2pixhd_group() -> None:
    """pix2pixHD tools: feature clusters for diverse outputs and editing."""


@pix2pixhd_group.command(name="cluster")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", "data_root", type=click.Path(path_type=Path), help="Training data, if it moved.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def pix2pixhd_cluster(run: Path, data_root: Path | None, device: str) -> None:
    """K-means per class over the instance features of RUN's training set; rewrites its latest checkpoint."""
    from pixforge.editing import cluster_run

    folder, counts = cluster_run(run, data_root, device)
    click.echo(f"{sum(counts.values())} clusters over {len(counts)} classes written to {folder}")


@cli.command(name="options")
@click.argument("method")
@click.option("--preset", help=f"Show the values after this preset; {PRESETS_HELP}.")
def options_cmd(method: str, preset: str | None) -> None:
    """Every config option of METHOD (for --set KEY=VALUE): key, short key, type, value, allowed, help."""
    from pixforge.api import resolve_config
    from pixforge.config import describe

    rows = describe(resolve_config(method, preset=preset))
    table = [("key", "short", "type", "value", "allowed", "help")]
    table += [(r.key, r.short or "-", r.type, r.value, r.allowed, r.help) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    after = f" after preset {preset}" if preset else " (defaults)"
    click.echo(f"{method} options{after}; set one with --set KEY=VALUE (the short key where it is unique)\n")
    for row in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
        )


# export and serve (ONNX export of a run's generator; the HTTP model server) ---------------------------------
