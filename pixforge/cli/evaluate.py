"""``pixforge evaluate``, ``compare`` and ``segmenter``: the papers' metrics."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pixforge.cli._base import cli
from pixforge.errors import PixforgeError

if TYPE_CHECKING:
    from pixforge.metrics.image import Color
    from pixforge.metrics.report import ScoreOptions
    from pixforge.metrics.segmentation import AbsentClasses


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
        "Comma-separated: psnr, ssim, vif, reco, colorfulness (of fakes and reals), kid, fid, or all "
        "(FCN-scores come with --segmenter)."
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
@click.option(
    "--merge-seeds",
    is_flag=True,
    help="Also one row per experiment: runs differing only in their seed, as mean ± spread over seeds.",
)
@scoring_options
def compare_cmd(
    runs: tuple[Path, ...],
    data_root: Path,
    out: Path,
    split: str,
    samples: int,
    device: str,
    merge_seeds: bool,
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
        merge_seeds=merge_seeds,
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
