"""Evaluate trained runs on a split of a dataset, and compare several runs in one table (orchestration:
the pure metrics are in :mod:`pixforge.metrics`).

:func:`evaluate_run` translates the split with a run's model (:func:`pixforge.load` and the dataset
reading of ``pixforge translate``), writes the outputs, the references, viewable inputs and, for
label inputs, the class-id maps as folders matched by stem, and scores them with
:func:`~pixforge.metrics.report.evaluate_dirs`. :func:`compare_runs` does this for several runs on
the same split and writes ``compare.md``, ``compare.json`` and ``index.html`` (the table, sample rows of
images side by side and each run's loss curves), so that "pix2pix vs DRPAN vs GuideGAN on facades" is
one call. Two baseline rows frame the runs: "input" (the input image itself scored against the target,
when the input is a photo of the target's size, e.g. the rainy photo in de-raining) and "ground truth"
(the target against itself; its FCN-scores are the segmenter on real photos, the papers' upper bound).
With ``merge_seeds`` the runs whose configs differ only in their seed also make one row each, the mean ±
the sample standard deviation over the seeds (:meth:`Comparison.seed_rows`), which sizes the noise of a
single run.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge import checkpoint, distributed, pages
from pixforge.api import dataset_items, load, viewable
from pixforge.data.palette import colors_to_ids
from pixforge.devices import pick_device
from pixforge.errors import PixforgeError
from pixforge.metrics.inception import InceptionFeatures
from pixforge.metrics.report import DEFAULT_SCORING, Report, ScoreOptions, evaluate_dirs

FOLDERS = ("fake", "real", "inputs", "labels")
RUN_KEYS = ("run", "method", "step")
INPUT_ROW = "input"
TRUTH_ROW = "ground truth"
#: a run name's seed suffix (``-s0``, ``_seed1``), left out of the name of its seeds' row
SEED_SUFFIX = re.compile(r"[-_]s(?:eed)?\d+$")
#: options that do not make runs different experiments (where the data lives, the seed)
NOT_COMPARED = {("train", "seed"), ("data", "root"), ("data", "num_workers")}


@dataclass(frozen=True)
class Spread:
    """One metric over the seeds of a row: the mean, the sample standard deviation (0 for one seed), the count."""

    mean: float
    spread: float
    count: int
    #: for one seed, the metric's own spread where it has one (KID's std over subsets)
    subsets: float | None = None

    def text(self) -> str:
        if self.count >= 2:
            return f"{_number(self.mean)} ± {_number(self.spread)}"
        if self.subsets is not None:
            return f"{_number(self.mean)} ± {_number(self.subsets)} (subsets)"
        return _number(self.mean)


def seed_spread(values: Sequence[float]) -> Spread:
    """The mean and sample standard deviation (ddof 1) of one metric over seeds."""
    array = np.asarray(values, dtype=np.float64)
    spread = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return Spread(float(array.mean()), spread, len(array))


def experiment_key(run: Path) -> str:
    """A run's resolved config without the options that do not change the experiment (seed, data place)."""
    config = checkpoint.read(run).config
    kept = {
        section: {k: v for k, v in values.items() if (section, k) not in NOT_COMPARED}
        for section, values in config.items()
        if isinstance(values, dict)
    }
    return json.dumps({"method": config.get("method"), **kept}, sort_keys=True, default=str)


@dataclass
class TranslatedSplit:
    """A split translated by one run: ``folder`` holds fake/, real/, inputs/ (and labels/) by stem."""

    folder: Path
    stems: list[str]
    labels: Path | None
    input_is_image: bool
    settings: dict[str, object]

    @property
    def fake(self) -> Path:
        return self.folder / "fake"

    @property
    def real(self) -> Path:
        return self.folder / "real"

    @property
    def inputs(self) -> Path:
        return self.folder / "inputs"


def translate_split(
    run: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    device: str = "auto",
    decode_labels: bool = False,
    seed: int = 0,
) -> TranslatedSplit:
    """Translate every sample of ``split`` of ``data`` with the model of ``run`` into ``out``.

    Writes ``fake/`` (outputs, at the input's size), ``real/`` (targets), ``inputs/`` (inputs as RGB,
    label maps coloured) and ``labels/`` (single-channel class ids) when the inputs are label maps, or,
    with ``decode_labels``, when they are CMP facade colours (nearest colour, ids 1..12). Those four
    folders are emptied first. Methods that keep their noise at test time (pix2pix's dropout, its
    sec. 3.1) are run with the torch RNG seeded by ``seed`` (the caller's RNG state is left as found), so
    an evaluation is reproducible.

    In a torchrun job (a process group joined, :func:`pixforge.distributed.session`) each rank translates
    every ``world size``-th sample, so each image is written once; all ranks return when all files are
    written. With test-time noise the outputs then depend on the world size (each rank's RNG runs over its
    own share).
    """
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        return _translate_split(Path(run), Path(data), Path(out), split, device, decode_labels, seed)


def _translate_split(
    run: Path, data: Path, out: Path, split: str, device: str, decode_labels: bool, seed: int
) -> TranslatedSplit:

    translator = load(run, device=str(distributed.local_device(pick_device(device))))
    items = dataset_items(data, translator, split)
    if not items:
        raise PixforgeError(f"{data}: split {split} has no samples to evaluate")
    untargeted = [item.name for item in items if item.target is None]
    if untargeted:
        raise PixforgeError(
            f"{data} ({split}) has no paired targets ({len(untargeted)} inputs, e.g. {untargeted[0]}): "
            "evaluate unpaired outputs with `pixforge evaluate --fake DIR --real DIR --metrics kid,fid`"
        )
    label_nc = translator.label_nc
    with_labels = bool(label_nc) or decode_labels
    if distributed.world().main:
        for name in FOLDERS:
            shutil.rmtree(out / name, ignore_errors=True)
            if name != "labels" or with_labels:
                (out / name).mkdir(parents=True)
    distributed.barrier()
    input_is_image = not label_nc and not decode_labels
    for item in distributed.shard(items):
        translator(item.source, item.instance).save(out / "fake" / f"{item.name}.png")
        item.target.convert("RGB").save(out / "real" / f"{item.name}.png")
        viewable(item.source, label_nc, translator.colorization).save(out / "inputs" / f"{item.name}.png")
        input_is_image = input_is_image and item.source.size == item.target.size
        if with_labels:
            Image.fromarray(_label_ids(item.source, label_nc)).save(out / "labels" / f"{item.name}.png")
    input_is_image = all(distributed.all_gather_objects(input_is_image))
    data_cfg = translator.config.data
    settings: dict[str, object] = {
        "run": str(run),
        "method": translator.config.method,
        "step": translator.step,
        "data": f"{data}, split {split}, direction {data_cfg.direction}",
        "translation": _translation_setting(data_cfg.preprocess, data_cfg.crop_size, translator.colorization)
        + f"; torch seed {seed}",
    }
    if with_labels:
        settings["labels"] = (
            "the input label maps"
            if label_nc
            else "the input colours decoded to CMP facade ids 1..12 (nearest palette colour)"
        )
    return TranslatedSplit(
        out,
        sorted(item.name for item in items),
        out / "labels" if with_labels else None,
        input_is_image,
        settings,
    )


def _label_ids(source: Image.Image, label_nc: int) -> np.ndarray:
    """Class ids of an input as an 8-bit (or, for more than 256 classes, 16-bit) array."""
    if label_nc:
        ids = np.asarray(source, dtype=np.int64)
        return ids.astype(np.uint8 if label_nc <= 256 else np.uint16)
    return colors_to_ids(np.asarray(source.convert("RGB")))


def _translation_setting(preprocess: str, crop_size: int, colorization: bool = False) -> str:
    if colorization:
        return (
            "colorization: the input's L (CIE Lab, D65) to the model"
            + (f" at {crop_size}x{crop_size}" if preprocess == "resize_and_crop" else "")
            + "; the predicted ab upsampled (bicubic) to the input size and joined with the input's own L"
        )
    if preprocess == "resize_and_crop":
        return (
            f"inputs resized to {crop_size}x{crop_size} for the model (as in training), outputs resized "
            "back to the input size (bicubic)"
        )
    return "inputs at their own size (padded to the generator's multiple, output cropped back)"


def _with_num_classes(scoring: ScoreOptions) -> ScoreOptions:
    """``scoring`` with its ``num_classes`` defaulting to the segmenter's ``label_nc`` (a pixforge
    segmenter has one)."""
    if scoring.segmenter is None or scoring.num_classes is not None:
        return scoring
    return replace(scoring, num_classes=getattr(scoring.segmenter, "label_nc", None))


def score_split(translated: TranslatedSplit, scoring: ScoreOptions = DEFAULT_SCORING) -> Report:
    """Score a translated split (outputs vs targets; FCN-scores when ``scoring`` has a segmenter)."""
    report = evaluate_dirs(
        translated.fake,
        translated.real,
        _with_num_classes(scoring),
        labels=translated.labels if scoring.segmenter is not None else None,
    )
    report.settings = {**translated.settings, **report.settings}
    return report


def evaluate_run(
    run: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    out: str | Path | None = None,
    scoring: ScoreOptions = DEFAULT_SCORING,
    device: str = "auto",
) -> Report:
    """Translate ``split`` of ``data`` with ``run`` and score the outputs against the targets.

    The images go to ``out`` (default ``RUN/evaluation/SPLIT``), with the report as ``report.json`` beside
    them (what the server shows for a run: :func:`saved_scores`). A segmenter in ``scoring`` adds
    FCN-scores against the input labels (see :func:`translate_split` for colour-coded labels); its
    ``num_classes`` defaults to the segmenter's ``label_nc``. ``scoring`` as in
    :func:`~pixforge.metrics.report.evaluate_dirs`.

    In a torchrun job the split is translated by all ranks (:func:`translate_split`) and scored by rank 0;
    the other ranks return an empty report.
    """
    run = Path(run)
    folder = Path(out) if out is not None else (run if run.is_dir() else run.parent) / "evaluation" / split
    translated = translate_split(
        run, data, folder, split=split, device=device, decode_labels=scoring.segmenter is not None
    )
    if not distributed.world().main:
        return Report({}, {**translated.settings, "scores": "computed by rank 0"}, [])
    report = score_split(translated, scoring)
    (folder / REPORT).write_text(report.to_json())
    return report


#: the report of ``evaluate_run``, beside the images it scored
REPORT = "report.json"


def saved_scores(run: str | Path) -> tuple[str, dict[str, float]] | None:
    """The split and finite set-level values of a run's latest evaluation in its own folder
    (``RUN/evaluation/{test,val}/report.json``, test first), or None when it has none."""
    for split in ("test", "val"):
        path = Path(run) / "evaluation" / split / REPORT
        if path.is_file():
            values = json.loads(path.read_text()).get("values", {})
            finite = {
                k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)
            }
            return split, finite
    return None


@dataclass
class Comparison:
    """Reports of several runs on one split, with the "input" and "ground truth" baseline rows."""

    out: Path
    runs: dict[str, Path]
    reports: dict[str, Report]
    samples: list[str]
    merge_seeds: bool = False

    def seed_groups(self) -> dict[str, list[str]]:
        """Runs whose configs differ only in the seed, as row name -> run names (in the order given).

        A row is named after its first run less a seed suffix (``-s0``, ``_seed1``), numbered if taken.
        """
        groups: dict[str, list[str]] = {}
        for name, run in self.runs.items():
            groups.setdefault(experiment_key(run), []).append(name)
        rows: dict[str, list[str]] = {}
        for members in groups.values():
            base = SEED_SUFFIX.sub("", members[0]) or members[0]
            row, k = base, 2
            while row in rows:
                row, k = f"{base}_{k}", k + 1
            rows[row] = members
        return rows

    def seed_rows(self) -> dict[str, dict[str, Spread]]:
        """Each seed group's metrics over its runs (:func:`seed_spread`); a one-seed row keeps KID's std over
        subsets as its spread, marked so."""
        rows: dict[str, dict[str, Spread]] = {}
        for row, members in self.seed_groups().items():
            values = [self.reports[m].values for m in members]
            rows[row] = {
                column: replace(
                    seed_spread([v[column] for v in values]),
                    subsets=values[0].get(f"{column}_std") if len(values) == 1 else None,
                )
                for column in self.columns()
                if all(column in v for v in values)
            }
        return rows

    def seed_markdown(self) -> list[str]:
        """The seed rows as a markdown table."""
        columns = self.columns()
        lines = [
            "Seeds as one row: mean ± sample standard deviation (ddof 1) over the seeds of runs whose configs "
            "differ only in the seed; a row of one seed shows KID's std over subsets, marked (subsets).",
            "",
            "| row | seeds | " + " | ".join(columns) + " |",
            "|" + " --- |" * (len(columns) + 2),
        ]
        for row, values in self.seed_rows().items():
            count = max((v.count for v in values.values()), default=0)
            cells = " | ".join(values[c].text() if c in values else "-" for c in columns)
            lines.append(f"| {row} | {count} | {cells} |")
        return lines

    @property
    def settings(self) -> dict[str, object]:
        """The settings shared by every row: the first run's, less what names the run."""
        first = self.reports[next(iter(self.runs))]
        return {key: value for key, value in first.settings.items() if key not in RUN_KEYS}

    def columns(self) -> list[str]:
        """Metric columns in first-seen order; a KID standard deviation is shown with its mean."""
        names: list[str] = []
        for report in self.reports.values():
            names += [key for key in report.values if key not in names and not key.endswith("_std")]
        return names

    def cell(self, row: str, column: str) -> str:
        values = self.reports[row].values
        if column not in values:
            return "-"
        text = _number(values[column])
        std = values.get(f"{column}_std")
        return text if std is None else f"{text} ± {_number(std)}"

    def legend(self) -> list[str]:
        """What the baseline rows present in the table are."""
        meaning = {
            INPUT_ROW: "the input image scored in place of an output (the do-nothing baseline)",
            TRUTH_ROW: "the target scored against itself; its FCN-scores are the segmenter on the real photos",
        }
        return [f"{row}: {text}" for row, text in meaning.items() if row in self.reports]

    def to_markdown(self) -> str:
        """The score table (one row per run and baseline), what the baselines are, the shared settings."""
        columns = self.columns()
        lines = ["| row | method | step | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 3)]
        for row, report in self.reports.items():
            method, step = report.settings.get("method", "-"), report.settings.get("step", "-")
            cells = " | ".join(self.cell(row, column) for column in columns)
            lines.append(f"| {row} | {method} | {step} | {cells} |")
        lines += ["", *(f"- {line}" for line in self.legend())]
        if self.merge_seeds:
            lines += ["", *self.seed_markdown()]
        lines += ["", "| setting | value |", "| --- | --- |"]
        lines += [f"| {key} | {value} |" for key, value in self.settings.items()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        rows = {row: json.loads(report.to_json()) for row, report in self.reports.items()}
        data: dict[str, object] = {"runs": {k: str(v) for k, v in self.runs.items()}, "rows": rows}
        if self.merge_seeds:
            data["seed_groups"] = self.seed_groups()
            data["seed_rows"] = {
                row: {c: asdict(v) for c, v in values.items()} for row, values in self.seed_rows().items()
            }
        return json.dumps(_finite(data), indent=2, allow_nan=False)

    def to_html(self) -> str:
        """The table, sample rows (input | each run | target) and each run's loss curves."""
        columns = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["row", "method", "step", *columns])
        body = []
        for row, report in self.reports.items():
            cells = [row, str(report.settings.get("method", "-")), str(report.settings.get("step", "-"))]
            cells += [self.cell(row, column) for column in columns]
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        legend = "".join(f"<li>{html.escape(line)}</li>" for line in self.legend())
        parts = [f"<h2>Scores</h2><table><tr>{head}</tr>{''.join(body)}</table><ul>{legend}</ul>"]
        settings = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.settings.items()
        )
        parts.append(f"<h2>Settings</h2><table>{settings}</table>")
        parts.append(self._samples_html())
        for name, run in self.runs.items():
            rows = pages.read_metrics(run) if run.is_dir() else []
            parts.append(f"<h2>Training losses: {html.escape(name)}</h2><p>{html.escape(str(run))}</p>")
            parts.append(pages.loss_plot(rows))
        title = f"pixforge compare: {', '.join(self.runs)}"
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{pages.STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>"
        )

    def _samples_html(self) -> str:
        first = next(iter(self.runs))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["name", "input", *self.runs, "target"])
        rows = []
        for stem in self.samples:
            sources = [
                f"runs/{first}/inputs",
                *(f"runs/{name}/fake" for name in self.runs),
                f"runs/{first}/real",
            ]
            cells = "".join(f"<td><img src='{html.escape(f'{src}/{stem}.png')}'></td>" for src in sources)
            rows.append(f"<tr><td>{html.escape(stem)}</td>{cells}</tr>")
        return f"<h2>Samples</h2><table><tr>{head}</tr>{''.join(rows)}</table>"

    def write(self) -> dict[str, Path]:
        """Write compare.md, compare.json and index.html into ``out``; returns their paths."""
        files = {"markdown": "compare.md", "json": "compare.json", "html": "index.html"}
        texts = {"markdown": self.to_markdown(), "json": self.to_json(), "html": self.to_html()}
        paths = {}
        for key, name in files.items():
            paths[key] = self.out / name
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(texts[key])
            tmp.replace(paths[key])
        return paths


def _finite(value: object) -> object:
    """``value`` with non-finite floats as strings ("inf", "nan"), for strict JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _number(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) else str(value)


def run_names(runs: Sequence[str | Path]) -> list[str]:
    """A distinct folder-safe name per run: its directory name, numbered when names repeat."""
    names: list[str] = []
    for run in runs:
        path = Path(run)
        base = (path.parent.name if path.suffix == ".safetensors" else path.name) or "run"
        name, k = base, 2
        while name in names or name in (INPUT_ROW, TRUTH_ROW):
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _check_same_references(translated: dict[str, TranslatedSplit], data: Path) -> None:
    """Every run must be scored against the same targets (same split, direction and format)."""
    (first_name, first), *others = translated.items()
    for name, other in others:
        if other.stems != first.stems:
            raise PixforgeError(f"runs {first_name} and {name} read different samples of {data}")
        for stem in first.stems:
            a = np.asarray(Image.open(first.real / f"{stem}.png"))
            b = np.asarray(Image.open(other.real / f"{stem}.png"))
            if not np.array_equal(a, b):
                raise PixforgeError(
                    f"runs {first_name} and {name} have different targets for {stem} in {data}: "
                    "they were trained with another direction or data format; compare like with like"
                )


def compare_runs(
    runs: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    scoring: ScoreOptions = DEFAULT_SCORING,
    device: str = "auto",
    samples: int = 8,
    merge_seeds: bool = False,
) -> Comparison:
    """Evaluate every run on ``split`` of ``data`` and write the comparison into ``out``.

    Each run's images go to ``out/runs/NAME/``; the table has one row per run, then "input" (only when
    the inputs are photos of the targets' size) and "ground truth" (targets against themselves, with
    the segmenter's FCN-scores on the real photos; KID/FID are left out of it, being 0 by construction).
    ``samples`` rows of images are shown side by side in ``index.html``. ``merge_seeds`` adds the seed
    rows (:meth:`Comparison.seed_rows`).
    """
    if not runs:
        raise PixforgeError("compare needs at least one run")
    data, out = Path(data), Path(out)
    names = run_names(runs)
    if scoring.features is None and scoring.set_level:
        scoring = replace(scoring, features=InceptionFeatures())
    scoring = _with_num_classes(scoring)
    fcn = scoring.segmenter is not None
    translated = {
        name: translate_split(run, data, out / "runs" / name, split=split, device=device, decode_labels=fcn)
        for name, run in zip(names, runs, strict=True)
    }
    _check_same_references(translated, data)
    reports = {name: score_split(t, scoring) for name, t in translated.items()}
    first = translated[names[0]]
    if first.input_is_image:
        no_fcn = replace(scoring, segmenter=None, num_classes=None)
        reports[INPUT_ROW] = evaluate_dirs(first.inputs, first.real, no_fcn)
    per_image = [name for name in scoring.metrics if name not in scoring.set_level]
    if per_image or fcn:
        reports[TRUTH_ROW] = evaluate_dirs(
            first.real, first.real, replace(scoring, metrics=per_image), labels=first.labels if fcn else None
        )
    comparison = Comparison(
        out,
        dict(zip(names, map(Path, runs), strict=True)),
        reports,
        first.stems[: max(samples, 0)],
        merge_seeds,
    )
    comparison.write()
    return comparison
