"""The ``pixforge`` command line (also ``python -m pixforge``): thin wrappers over the Python API.

Bad input ends with one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
from PIL import Image

from pixforge import __version__
from pixforge.api import Item, dataset_items, viewable
from pixforge.distributed import PeerError, launch_rank
from pixforge.errors import PixforgeError

if TYPE_CHECKING:
    from pixforge.metrics.image import Color
    from pixforge.metrics.report import ScoreOptions
    from pixforge.metrics.segmentation import AbsentClasses

log = logging.getLogger("pixforge")


def _presets_help() -> str:
    """Every method's presets, for ``train --help``."""
    from pixforge.config import preset_names
    from pixforge.methods import METHODS

    return "; ".join(f"{m}: {', '.join(preset_names(m)) or 'none'}" for m in METHODS)


PRESETS_HELP = _presets_help()

#: explanation maps written beside outputs by --show-region (DRPAN) and --show-attention (GuideGAN)
REGION_MAPS = {"score", "region"}
ATTENTION_MAPS = {"attention", "attention_output"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixforge")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """pixforge: image-to-image translation with conditional GANs."""


def launch_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add --nproc, --nnodes, --node-rank and --rdzv-endpoint; the command receives them as ``launch``."""
    from pixforge.distributed import Launch

    @functools.wraps(command)
    def wrapper(
        *, nproc: int, nnodes: int, node_rank: int | None, rdzv_endpoint: str | None, **kwargs: Any
    ) -> None:
        command(launch=Launch(nproc, nnodes, node_rank, rdzv_endpoint), **kwargs)

    options = [
        click.option(
            "--nproc", default=1, show_default=True, help="Processes on this machine (one per GPU)."
        ),
        click.option("--nnodes", default=1, show_default=True, help="Machines in the job."),
        click.option("--node-rank", type=int, help="This machine's rank (0 hosts the rendezvous)."),
        click.option(
            "--rdzv-endpoint", metavar="HOST:PORT", help="Rendezvous address: node 0's host and a port."
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


LAUNCH_PARAMS = {"nproc", "nnodes", "node_rank", "rdzv_endpoint"}


def relaunch(launch: Any, device: str) -> None:
    """Run the current command again as ``launch`` describes, through torch.distributed.run; exit with its code."""
    from pixforge.distributed import launch as run_launch

    launch.check(device)
    ctx = click.get_current_context()
    sys.exit(run_launch(launch, _command_args(ctx)))


def _command_args(ctx: click.Context) -> list[str]:
    """The command line of ``ctx``'s command rebuilt from its parsed values, less the launch options."""
    args = ["--debug"] if ctx.parent is not None and ctx.parent.params.get("debug") else []
    args.append(ctx.info_name or "")
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name in LAUNCH_PARAMS or value is None or value is False or value == ():
            continue
        if isinstance(param, click.Argument):
            args += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
            continue
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            args.append(flag)
        elif getattr(param, "multiple", False):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args


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
@click.option("--data-format", type=click.Choice(["auto", "aligned", "paired", "unaligned", "labeled"]))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--amp", type=click.Choice(["none", "bf16"]), help="Mixed precision (CUDA).")
@click.option("--channels-last", is_flag=True, default=None, help="channels_last memory format (CUDA).")
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


def _inputs(paths: tuple[Path, ...], translator: Any, split: str, instances: Path | None) -> list[Item]:
    """Every input file, plain folder of images, or dataset root (read at ``split``, with targets)."""
    from pixforge.data import formats

    items: list[Item] = []
    for path in paths:
        if not path.exists():
            raise PixforgeError(f"input not found: {path}")
        if path.is_dir() and formats.is_dataset_root(path):
            items.extend(dataset_items(path, translator, split))
            continue
        files = formats.list_images(path) if path.is_dir() else [path]
        if not files:
            raise PixforgeError(f"{path}: no images to translate")
        items.extend(Item(f.stem, formats.read_image(f, mode="")) for f in files)
    if instances is not None:
        for item in items:
            item.instance = formats.read_image(_match_stem(instances, item.name), mode="")
    return items


def _match_stem(folder: Path, stem: str) -> Path:
    from pixforge.data import formats

    if folder.is_file():
        return folder
    matches = [f for f in formats.list_images(folder) if f.stem == stem]
    if not matches:
        raise PixforgeError(f"--instances {folder}: no instance map named {stem}.*")
    return matches[0]


def _l1(output: Image.Image, target: Image.Image) -> float:
    """Mean |output - target| on the [-1, 1] scale the training L1 uses."""
    a = np.asarray(output.convert("RGB"), dtype=np.float32)
    b = np.asarray(target.convert("RGB").resize(output.size, Image.BICUBIC), dtype=np.float32)
    return float(np.abs(a - b).mean() / 127.5)


def _styles(cluster: int | None, random_styles: int | None) -> list[tuple[str, dict[str, int]]]:
    """(suffix, options) per output of one input: one plain output, a chosen cluster, or N random styles."""
    if cluster is not None and random_styles is not None:
        raise PixforgeError("--cluster and --random-styles: choose one")
    if random_styles is not None:
        if random_styles < 1:
            raise PixforgeError("--random-styles must be at least 1")
        return [(f"_style{k}", {"style_seed": k}) for k in range(random_styles)]
    return [("", {"cluster": cluster})] if cluster is not None else [("", {})]


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the outputs.")
@click.option(
    "--split", default="test", show_default=True, help="Split to read when an input is a dataset root."
)
@click.option("--html", "make_html", is_flag=True, help="Also write index.html: input | output | target.")
@click.option(
    "--instances", type=click.Path(path_type=Path), help="Instance maps matched by stem (pix2pixHD)."
)
@click.option("--cluster", type=int, help="Style: this feature cluster for every instance (pix2pixHD).")
@click.option("--random-styles", type=int, help="Write N outputs per input with random styles (pix2pixHD).")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), help="Which generator (CycleGAN).")
@click.option("--show-region", is_flag=True, help="Also write DRPAN's score map and proposed region.")
@click.option("--show-attention", is_flag=True, help="Also write GuideGAN's attention maps.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def translate(
    run: Path,
    inputs: tuple[Path, ...],
    out: Path,
    split: str,
    make_html: bool,
    instances: Path | None,
    cluster: int | None,
    random_styles: int | None,
    direction: str | None,
    show_region: bool,
    show_attention: bool,
    device: str,
) -> None:
    """Translate images (files, folders, or a dataset's --split) with the model in RUN (or an exported .onnx).

    Under torchrun every process translates its share of the inputs (each image once) and rank 0 writes the
    gallery and the summary.
    """
    from pixforge import api, distributed, pages
    from pixforge.devices import pick_device

    with distributed.session("gloo") as world:
        if run.suffix == ".onnx":
            from pixforge.export import OnnxTranslator

            translator: Any = OnnxTranslator(run)
        else:
            translator = api.load(run, device=str(distributed.local_device(pick_device(device))))
        items = _inputs(inputs, translator, split, instances)
        shown = (REGION_MAPS if show_region else set()) | (ATTENTION_MAPS if show_attention else set())
        out.mkdir(parents=True, exist_ok=True)
        mine = []
        for index, item in distributed.shard(list(enumerate(items))):
            for suffix, options in _styles(cluster, random_styles):
                if direction is not None:
                    options["direction"] = direction
                name = item.name + suffix
                maps = translator.translate(item.source, item.instance, **options)
                maps["output"].save(out / f"{name}.png")
                for key in shown & set(maps):
                    maps[key].save(out / f"{name}_{key}.png")
                mine.append((index, _row(out, name, item, maps["output"], translator.label_nc, make_html)))
        gathered = sorted(
            (x for part in distributed.all_gather_objects(mine) for x in part), key=lambda x: x[0]
        )
        if not world.main:
            return
    rows = [row for _, row in gathered]
    l1s = [r["l1"] for r in rows if r["l1"] is not None]
    mean_l1 = float(np.mean(l1s)) if l1s else None
    if make_html:
        run_dir = run if (run / "checkpoints").is_dir() else None
        gallery = {
            "title": f"{translator.config.method} step {translator.step}: {out.name}",
            "rows": rows,
            "mean_l1": mean_l1,
        }
        click.echo(f"wrote {pages.write_gallery(out, gallery, run_dir)}")
    summary = f"; mean L1 {mean_l1:.4f}" if mean_l1 is not None else ""
    click.echo(f"translated {len(rows)} images into {out}{summary}")


def _row(
    out: Path, name: str, item: Item, output: Image.Image, label_nc: int, make_html: bool
) -> dict[str, Any]:
    """A gallery row; with ``make_html`` the input and target are saved beside the output."""
    row: dict[str, Any] = {"name": name, "output": f"{name}.png", "input": None, "target": None, "l1": None}
    if item.target is not None:
        row["l1"] = _l1(output, item.target)
    if make_html:
        for key, image in (("input", viewable(item.source, label_nc)), ("target", item.target)):
            if image is not None:
                (out / f"{key}s").mkdir(exist_ok=True)
                image.convert("RGB").save(out / f"{key}s" / f"{name}.png")
                row[key] = f"{key}s/{name}.png"
    return row


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
def info(run: Path) -> None:
    """Method, step, config and last losses of a run or checkpoint."""
    from pixforge import checkpoint, pages

    loaded = checkpoint.read(run)
    click.echo(f"method: {loaded.method}\nstep: {loaded.step}\ncheckpoint: {loaded.path}")
    rows = pages.read_metrics(run) if Path(run).is_dir() else []
    if rows:
        click.echo(
            "last losses: " + " ".join(f"{k}={v:.4g}" for k, v in rows[-1].items() if k not in ("time",))
        )
    import yaml

    click.echo("config:\n" + yaml.safe_dump(loaded.config, sort_keys=False))


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
@click.option(
    "--data-format", default="auto", type=click.Choice(["auto", "aligned", "paired", "unaligned", "labeled"])
)
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


@dataclass(frozen=True)
class Scoring:
    """What ``evaluate`` and ``compare`` score with: the checked options, and the segmenter run and feature
    network file that :meth:`load` adds to them."""

    options: ScoreOptions
    segmenter: Path | None
    inception: Path | None

    def load(self) -> ScoreOptions:
        """The options with the segmenter (and its class count) and the feature network loaded."""
        from pixforge.metrics.inception import InceptionFeatures
        from pixforge.metrics.segmenter import load_segmenter

        segmenter = load_segmenter(self.segmenter) if self.segmenter is not None else None
        return replace(
            self.options,
            segmenter=segmenter,
            num_classes=segmenter.label_nc if segmenter is not None else None,
            features=InceptionFeatures(self.inception) if self.options.set_level else None,
        )


def scoring_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the scoring options shared by ``evaluate`` and ``compare``; the command receives them as ``scoring``."""
    from pixforge.metrics.report import ScoreOptions, parse_metrics

    @functools.wraps(command)
    def wrapper(
        *,
        metric_list: str,
        segmenter_run: Path | None,
        inception: Path | None,
        kid_subset_size: int,
        kid_subsets: int,
        color: Color,
        fcn_absent: AbsentClasses,
        **kwargs: Any,
    ) -> None:
        options = ScoreOptions(
            parse_metrics(metric_list),
            kid_subset_size=kid_subset_size,
            kid_subsets=kid_subsets,
            color=color,
            fcn_absent=fcn_absent,
        )
        command(scoring=Scoring(options, segmenter_run, inception), **kwargs)

    help_metrics = (
        "Comma-separated: psnr, ssim, vif, reco, kid, fid, or all (FCN-scores come with --segmenter)."
    )
    options = [
        click.option(
            "--metrics", "metric_list", default="psnr,ssim,vif,reco", show_default=True, help=help_metrics
        ),
        click.option(
            "--segmenter",
            "segmenter_run",
            type=click.Path(path_type=Path),
            help="Segmenter run for FCN-scores.",
        ),
        click.option(
            "--inception", type=click.Path(path_type=Path), help="TF-Inception TorchScript file for KID/FID."
        ),
        click.option("--kid-subset-size", default=1000, show_default=True),
        click.option("--kid-subsets", default=100, show_default=True),
        click.option(
            "--color",
            default="rgb",
            show_default=True,
            type=click.Choice(["rgb", "y"]),
            help="PSNR/SSIM on RGB, or on BT.601 luma Y as MATLAB rgb2ycbcr (the de-raining protocol).",
        ),
        click.option(
            "--fcn-absent",
            default="zero",
            show_default=True,
            type=click.Choice(["zero", "nan"]),
            help="FCN-scores of classes absent from the labels: 0 as the pix2pix script, or NaN (left out).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@cli.command()
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option("--fake", type=click.Path(path_type=Path), help="Folder of generated images (matched by stem).")
@click.option("--real", type=click.Path(path_type=Path), help="Folder of reference images.")
@click.option(
    "--data",
    "data_root",
    type=click.Path(path_type=Path),
    help="With RUN: dataset whose split is translated.",
)
@click.option("--split", default="test", show_default=True, help="With RUN: the split to translate.")
@click.option("--labels", type=click.Path(path_type=Path), help="Class-id maps (by stem) for FCN-scores.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the report as JSON to this file.")
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    help="With RUN: folder for the translations (RUN/evaluation/SPLIT).",
)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]), help="Device for RUN.")
@scoring_options
def evaluate(
    run: Path | None,
    fake: Path | None,
    real: Path | None,
    data_root: Path | None,
    split: str,
    labels: Path | None,
    out: Path | None,
    images: Path | None,
    device: str,
    scoring: Scoring,
) -> None:
    """Score generated images: --fake/--real folders, or RUN after translating --split of --data."""
    from pixforge.evaluation import evaluate_run
    from pixforge.metrics.report import evaluate_dirs

    if run is not None and (fake or real or labels):
        raise PixforgeError("evaluate: give RUN --data DIR, or --fake DIR --real DIR, not both")
    if run is not None and data_root is None:
        raise PixforgeError("evaluate RUN needs --data DIR: the dataset whose --split it translates")
    if run is None and (fake is None or real is None):
        raise PixforgeError("evaluate needs --fake DIR and --real DIR (or RUN --data DIR)")
    if run is None and (labels is None) != (scoring.segmenter is None):
        raise PixforgeError("FCN-scores need --labels DIR and --segmenter RUN together")
    from pixforge import distributed

    options = scoring.load()
    if run is not None:
        with distributed.session("gloo") as world:
            report = evaluate_run(run, data_root, split=split, out=images, scoring=options, device=device)
        if not world.main:
            return
    else:
        report = evaluate_dirs(fake, real, options, labels=labels)
    click.echo(report.to_markdown())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.to_json())
        click.echo(f"wrote {out}")


@cli.command(name="compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Dataset folder.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the comparison.")
@click.option("--split", default="test", show_default=True)
@click.option("--samples", default=8, show_default=True, help="Rows of images shown side by side.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@scoring_options
def compare_cmd(
    runs: tuple[Path, ...],
    data_root: Path,
    out: Path,
    split: str,
    samples: int,
    device: str,
    scoring: Scoring,
) -> None:
    """Evaluate RUNS on the same --split of --data: one table (markdown + HTML with samples and losses)."""
    from pixforge.evaluation import compare_runs

    comparison = compare_runs(
        runs,
        data_root,
        out,
        split=split,
        scoring=scoring.load(),
        device=device,
        samples=samples,
    )
    click.echo(comparison.to_markdown())
    click.echo(f"wrote {out / 'compare.md'}, {out / 'compare.json'} and {out / 'index.html'}")


@cli.group(name="segmenter")
def segmenter_group() -> None:
    """The segmentation network behind FCN-scores."""


@segmenter_group.command(name="train")
@click.option(
    "--data", "data_root", required=True, type=click.Path(path_type=Path), help="Photos with labels."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Segmenter run directory.")
@click.option("--split", default="train", show_default=True)
@click.option("--steps", default=2000, show_default=True)
@click.option("--size", default=256, show_default=True, help="Training crop size in pixels.")
@click.option("--batch-size", default=4, show_default=True)
@click.option("--ngf", default=32, show_default=True, help="Filters of the U-Net's first layer.")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--label-side",
    default="B",
    show_default=True,
    type=click.Choice(["A", "B"]),
    help="Aligned/paired data: the side holding CMP facade colour labels.",
)
@click.option(
    "--score-split", help="Split for the ground-truth FCN-scores (default: val, else test, if any)."
)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def segmenter_train(
    data_root: Path,
    out: Path,
    split: str,
    steps: int,
    size: int,
    batch_size: int,
    ngf: int,
    lr: float,
    seed: int,
    label_side: str,
    score_split: str | None,
    device: str,
) -> None:
    """Train a U-Net segmenter (cross-entropy) on the real photos and labels of --data."""
    from pixforge.data import formats
    from pixforge.metrics.segmenter import load_segmenter, score_segmenter, train_segmenter

    result = train_segmenter(
        data_root,
        out,
        split=split,
        label_side=label_side,
        device=device,
        steps=steps,
        size=size,
        batch_size=batch_size,
        ngf=ngf,
        lr=lr,
        seed=seed,
    )
    click.echo(
        f"trained {result.steps} steps: loss {result.loss:.4f}, training pixel accuracy "
        f"{result.pixel_accuracy:.4f}\nsegmenter: {result.path}"
    )
    splits = formats.available_splits(data_root, formats.resolve_format(data_root, "auto"))
    held_out = score_split or next((s for s in ("val", "test") if s in splits), None)
    if held_out is not None:
        model = load_segmenter(result.path)
        scores = score_segmenter(model, data_root, held_out, model.label_nc, label_side)
        click.echo(
            f"ground truth ({held_out} photos): pixel accuracy {scores['pixel_accuracy']:.4f}, mean class "
            f"accuracy {scores['mean_class_accuracy']:.4f}, mean class IoU {scores['mean_class_iou']:.4f}"
        )


def _error(line: str) -> None:
    """Print a one-line error (under ``--nproc`` the ranks > 0 only record it for the launcher)."""
    from pixforge.distributed import ERROR_DIR_ENV, record_error

    record_error(line)
    if os.environ.get(ERROR_DIR_ENV) is None or os.environ.get("LOCAL_RANK", "0") == "0":
        click.echo(line, err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s" if debug else "%(message)s")
    try:
        cli.main(args=args, prog_name="pixforge", standalone_mode=False)
    except PixforgeError as exc:
        if debug:
            traceback.print_exc()
        _error(f"error: {exc}")
        sys.exit(2)
    except PeerError as exc:
        if debug:
            traceback.print_exc()
        _error(f"error: {exc}")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)


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


@cli.command(name="export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The .onnx file to write.")
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx"]))
@click.option(
    "--test-mode",
    type=click.Choice(["eval", "paper"]),
    help="pix2pix-style batch norm: running statistics (eval) or the paper's batch statistics (default: the run's).",
)
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), help="Which generator (CycleGAN).")
@click.option("--opset", type=int, help="ONNX opset (default: the exporter's).")
@click.option(
    "--fixed-size", help="WxH: a graph for this input size only (default: dynamic sizes and batch)."
)
def export_cmd(
    run: Path,
    out: Path,
    fmt: str,
    test_mode: str | None,
    direction: str | None,
    opset: int | None,
    fixed_size: str | None,
) -> None:
    """Export RUN's generator to ONNX, checked against torch with onnxruntime."""
    from pixforge.export import export_run, parse_size

    size = parse_size(fixed_size) if fixed_size else None
    result = export_run(run, out, test_mode=test_mode, direction=direction, opset=opset, fixed_size=size)
    click.echo(f"wrote {result.path} ({result.method}, inputs {', '.join(result.inputs)}); {result.check}")


@cli.command(name="serve")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--max-batch", default=8, show_default=True, type=int, help="Requests per forward pass.")
@click.option("--max-wait-ms", default=10.0, show_default=True, type=float, help="Wait for a batch to fill.")
@click.option("--token", help="Require 'Authorization: Bearer TOKEN' on every endpoint but /healthz.")
@click.option(
    "--max-pixels", default=4096 * 4096, show_default=True, type=int, help="Largest upload in pixels."
)
@click.option("--max-bytes", default=20 * 2**20, show_default=True, type=int, help="Largest upload in bytes.")
@click.option("--amp", default="none", type=click.Choice(["none", "bf16"]), help="bf16 autocast (CUDA).")
def serve_cmd(
    runs: tuple[Path, ...],
    host: str,
    port: int,
    device: str,
    max_batch: int,
    max_wait_ms: float,
    token: str | None,
    max_pixels: int,
    max_bytes: int,
    amp: str,
) -> None:
    """Serve the models in RUNS over HTTP (API docs at /docs); SIGTERM drains requests and exits 0."""
    from pixforge.serve.app import ServeSettings, create_app
    from pixforge.serve.server import run as run_server

    settings = ServeSettings(list(runs), device, max_batch, max_wait_ms, token, max_pixels, max_bytes, amp)
    app = create_app(settings)
    click.echo(f"serving {', '.join(app.state.registry.names())} on http://{host}:{port} (docs: /docs)")
    run_server(app, host, port)


# studio and studies (the web studio on the serve app; perceptual studies in SQLite) --------------------------


@cli.command(name="studio")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (127.0.0.1: this machine only)."
)
@click.option("--port", default=8000, show_default=True)
@click.option(
    "--study-db", default=Path("studies.sqlite"), show_default=True, type=click.Path(path_type=Path)
)
@click.option("--admin-token", help="Token of the admin pages (default: a random one, printed at start).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def studio_cmd(
    runs: tuple[Path, ...], host: str, port: int, study_db: Path, admin_token: str | None, device: str
) -> None:
    """The web studio for the models in RUNS: translate, paint, and perceptual studies."""
    from pixforge.serve.app import ServeSettings
    from pixforge.serve.server import run as run_server
    from pixforge.studio.app import StudioSettings, create_studio_app

    app = create_studio_app(ServeSettings(list(runs), device), StudioSettings(study_db, admin_token))
    base = f"http://{host}:{port}"
    click.echo(
        f"studio for {', '.join(app.state.registry.names())} on {base}/studio/ (studies in {study_db})"
    )
    click.echo(f"admin: {base}/studio/admin#token={app.state.admin_token}")
    run_server(app, host, port)


@cli.group(name="study")
def study_group() -> None:
    """Perceptual studies (real-vs-fake, A/B) kept in a SQLite file."""


@study_group.command(name="create")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(["real-vs-fake", "ab"]))
@click.option("--real", type=click.Path(path_type=Path), help="Folder of real images.")
@click.option(
    "--fake", "fakes", multiple=True, metavar="[NAME=]DIR", help="Generated images (repeatable; by stem)."
)
@click.option(
    "--exposure-ms", default="1000", show_default=True, help="1000, a range 125-8000, or unlimited."
)
@click.option("--practice", default=10, show_default=True, help="Practice trials (with feedback).")
@click.option("--trials", default=40, show_default=True, help="Trials after the practice.")
@click.option("--seed", default=0, show_default=True, help="Seed of every participant's order.")
@click.option(
    "--db", "study_db", default=Path("studies.sqlite"), show_default=True, type=click.Path(path_type=Path)
)
def study_create(
    name: str,
    kind: str,
    real: Path | None,
    fakes: tuple[str, ...],
    exposure_ms: str,
    practice: int,
    trials: int,
    seed: int,
    study_db: Path,
) -> None:
    """Create study NAME from image folders (or run outputs) matched by file stem."""
    from pixforge.studio.protocol import create_study
    from pixforge.studio.store import StudyStore

    study = create_study(StudyStore(study_db), name, kind, real, fakes, exposure_ms, practice, trials, seed)
    click.echo(
        f"study {study.name}: {study.kind}, conditions {', '.join(study.conditions)}, exposure {study.exposure}, "
        f"{study.practice} practice + {study.trials} trials; open link /study/{study.name} (in {study_db})"
    )


@study_group.command(name="report")
@click.argument("name")
@click.option(
    "--db", "study_db", default=Path("studies.sqlite"), show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Write report.md, report.html and report.json here."
)
def study_report_cmd(name: str, study_db: Path, out: Path | None) -> None:
    """Fooling or preference rates of study NAME with 95% intervals (markdown on stdout)."""
    from pixforge.studio.report import study_report, to_markdown, write_report
    from pixforge.studio.store import StudyStore

    if not study_db.is_file():
        raise PixforgeError(f"--db {study_db}: no such study database")
    report = study_report(StudyStore(study_db), name)
    click.echo(to_markdown(report), nl=False)
    if out is not None:
        for path in write_report(report, out):
            click.echo(f"wrote {path}")


@cli.group(name="scene")
def scene_group() -> None:
    """Scenes painted in the studio (label + instance maps + styles)."""


@scene_group.command(name="render")
@click.argument("scene", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The rendered photo (PNG).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def scene_render(scene: Path, run: Path, out: Path, device: str) -> None:
    """Render SCENE (saved by the studio's paint page) with the model in RUN, as the studio does."""
    from pixforge.studio.paint import render_file

    render_file(scene, run, out, device)
    click.echo(f"wrote {out}")
