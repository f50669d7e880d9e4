"""Run a table: hold out a split, train a segmenter if the metric needs one, train the arms, compare, write.

Everything goes under one output folder, so that a run interrupted anywhere continues where it stopped:

    OUT/DATA-split/{train,test}/   the held-out split (links to the dataset's files), when ``holdout`` > 0
    OUT/segmenter/                 the segmenter trained on the training photos (FCN-scores), unless given
    OUT/runs/TRAINING-sSEED/       one training run per arm and seed (resumed from its latest checkpoint),
                                   named by what it trains, so tables sharing OUT share identical arms
    OUT/compare-TABLE/             ``pixforge compare`` of the table's runs on the held-out split
    OUT/TABLE.md, OUT/TABLE.json   ours (mean ± seed spread) beside the paper's numbers

Arms train in parallel, ``jobs`` at a time, each in its own process with one thread; the parent prints one
progress line per arm whenever it passes a tenth of its schedule.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pixforge import checkpoint
from pixforge.errors import PixforgeError
from pixforge.evaluation import TRUTH_ROW, Comparison, Spread, compare_runs, run_names
from pixforge.metrics.report import ScoreOptions, parse_metrics
from pixforge.reproduce.tables import Table, paper_number

Progress = Callable[[str], None]
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Budget:
    """How long each arm trains: ``steps`` in all (the last half decaying, as pix2pix's schedule), at
    ``size`` px (``None``: the preset's), ``seeds`` seeds, on ``device``."""

    steps: int = 2000
    size: int | None = None
    seeds: int = 1
    device: str = "auto"

    def flags(self, seed: int) -> dict[str, Any]:
        """The trainer's options for one seed: schedule, logging and checkpoints for resuming."""
        return {
            "steps": self.steps,
            "steps_decay": self.steps // 2,
            "seed": seed,
            "device": self.device,
            "log_every": max(1, min(50, self.steps)),
            "checkpoint_every": max(1, min(250, self.steps)),
        }

    def text(self) -> str:
        size = f"{self.size} px" if self.size else "the preset's size"
        return f"{self.steps} steps (the last {self.steps // 2} decaying), {size}, {self.seeds} seed(s)"


@dataclass
class RunOptions:
    """What :func:`run_table` needs besides the table and the data."""

    budget: Budget = field(default_factory=Budget)
    #: held-out pairs (by name: the last ``holdout`` in natural order) when the data has no test split
    holdout: int = 0
    #: a segmenter run for FCN-scores; None trains one on the training photos first
    segmenter: Path | None = None
    segmenter_steps: int = 2000
    #: scores besides FCN-scores (``pixforge compare --metrics``)
    metrics: str = "psnr,ssim,kid,fid"
    jobs: int = 0
    progress: Progress = print
    #: score the runs at this step of their schedule instead of training them (0: train, then score the end)
    at_step: int = 0


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``2`` before ``10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _stems(folder: Path) -> list[str]:
    """The sample names of a split folder: its files' stems, or those of its first subfolder."""
    files = [p for p in folder.iterdir() if p.is_file()]
    if not files:
        sub = sorted(p for p in folder.iterdir() if p.is_dir())
        files = [p for p in sub[0].iterdir() if p.is_file()] if sub else []
    return sorted({p.stem for p in files}, key=natural_key)


def _link_split(source: Path, target: Path, stems: set[str]) -> None:
    """Link the files of ``stems`` from ``source`` (files, or subfolders of files) into ``target``."""
    for path in source.rglob("*"):
        if path.is_file() and path.stem in stems:
            link = target / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(path.resolve())


def holdout_split(data: Path, out: Path, count: int) -> tuple[Path, list[str]]:
    """A dataset at ``out`` whose ``test`` split is the last ``count`` samples of ``data``'s ``train`` split
    by name (natural order) and whose ``train`` split is the rest, as links; returns it and the held-out
    names. The same names are held out every time; an existing split is kept."""
    source = data / "train"
    if not source.is_dir():
        raise PixforgeError(f"--holdout: {data} has no train split to hold samples out of")
    stems = _stems(source)
    if not 0 < count < len(stems):
        raise PixforgeError(f"--holdout {count}: {source} holds {len(stems)} samples; hold out fewer")
    held = stems[-count:]
    _link_split(source, out / "train", set(stems[:-count]))
    _link_split(source, out / "test", set(held))
    return out, held


def _test_split(data: Path) -> str:
    for split in ("test", "val"):
        if (data / split).is_dir():
            return split
    raise PixforgeError(f"{data} has no test or val split: hold some training samples out with --holdout N")


@dataclass(frozen=True)
class ArmRun:
    """One training run of a table: an arm at one seed, in ``folder``."""

    arm: str
    method: str
    preset: str | None
    overrides: dict[str, Any]
    seed: int
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"


def plan(table: Table, runs_dir: Path, budget: Budget) -> list[ArmRun]:
    """The runs of a table at a budget: every arm at seeds 0 .. seeds - 1, seed-major (seed 0 of every arm
    first, so that one full set of arms is done before any second seed). A run's folder is named by what it
    trains (:attr:`Arm.training`), so tables that share ``runs_dir`` train an identical arm once."""
    return [
        ArmRun(arm.name, arm.method, arm.preset, arm.overrides, seed, runs_dir / f"{arm.training}-s{seed}")
        for seed in range(budget.seeds)
        for arm in table.arms
    ]


def finished_step(folder: Path) -> int:
    """The step of a run's latest checkpoint (0 when it has none)."""
    return checkpoint.read(folder).step if checkpoint.latest_checkpoint(folder) is not None else 0


def train_arm(run: ArmRun, data: Path, budget: Budget) -> int:
    """Train (or resume) one arm with one thread; returns its final step. Runs in a worker process."""
    import torch

    from pixforge.api import train

    torch.set_num_threads(1)
    resume = checkpoint.latest_checkpoint(run.folder) is not None
    result = train(
        run.method,
        data,
        run.folder,
        preset=run.preset,
        size=budget.size,
        resume=resume,
        overrides=run.overrides,
        **budget.flags(run.seed),
    )
    return result.step


def _logged_step(folder: Path) -> int:
    """The last step a run logged in its metrics.jsonl (0 before the first)."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return int(json.loads(lines[-1])["step"]) if lines else 0


def train_arms(runs: Sequence[ArmRun], data: Path, budget: Budget, jobs: int, progress: Progress) -> None:
    """Train the unfinished runs, ``jobs`` at a time in one-thread processes, printing one progress line
    per arm at each tenth of its schedule; a failed arm fails the table with its error."""
    todo = [r for r in runs if finished_step(r.folder) < budget.steps]
    for run in runs:
        if run not in todo:
            progress(f"{run.label}: done ({budget.steps} steps, {run.folder})")
    if not todo:
        return
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(train_arm, r, data, budget): r for r in todo}
            _watch(futures, budget.steps, progress)
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _watch(futures: dict[Future[int], ArmRun], steps: int, progress: Progress) -> None:
    """Print each arm's progress at every tenth of ``steps`` until all are done; re-raise a failure."""
    shown = {run.folder: -1 for run in futures.values()}
    pending = set(futures)
    while pending:
        time.sleep(0.5)
        for future, run in futures.items():
            tenth = min(10, _logged_step(run.folder) * 10 // max(1, steps))
            if future in pending and future.done():
                pending.discard(future)
                error = future.exception()
                if error is not None:
                    raise PixforgeError(f"arm {run.label} failed: {error}") from error
                progress(f"{run.label}: done ({future.result()} steps, {run.folder})")
            elif future in pending and tenth > shown[run.folder]:
                shown[run.folder] = tenth
                progress(f"{run.label}: step {_logged_step(run.folder)}/{steps}")


def segmenter_stage(data: Path, out: Path, options: RunOptions) -> Path:
    """A segmenter for FCN-scores: the one given, else one trained on ``data``'s training photos (kept)."""
    if options.segmenter is not None:
        return options.segmenter
    from pixforge.metrics.segmenter import FILE_NAME, train_segmenter

    folder = out / "segmenter"
    if not (folder / FILE_NAME).is_file():
        size = options.budget.size or 256
        options.progress(
            f"segmenter: training {options.segmenter_steps} steps on the training photos of {data}"
        )
        train_segmenter(
            data,
            folder,
            split="train",
            device=options.budget.device,
            steps=options.segmenter_steps,
            size=size,
        )
    return folder


def scoring(segmenter: Path | None, metrics: str) -> ScoreOptions:
    """The scores of a table: ``metrics``, plus FCN-scores with the segmenter when there is one."""
    from pixforge.metrics.inception import InceptionFeatures
    from pixforge.metrics.segmenter import load_segmenter

    options = ScoreOptions(parse_metrics(metrics))
    if options.set_level:
        options = replace(options, features=InceptionFeatures())
    if segmenter is None:
        return options
    model = load_segmenter(segmenter)
    return replace(options, segmenter=model, num_classes=model.label_nc)


@dataclass
class TableResult:
    """A table's outcome: the comparison of its runs and our numbers per arm (mean ± seed spread)."""

    table: Table
    comparison: Comparison
    rows: dict[str, dict[str, Spread]]
    #: the budget the numbers were measured at, in words
    budget: str
    data: str
    segmenter: str

    def columns(self) -> list[str]:
        names: list[str] = []
        for values in self.rows.values():
            names += [k for k in values if k not in names]
        return names

    def to_markdown(self) -> str:
        """Ours beside the paper's: one row per arm, then what each side is."""
        t = self.table
        ours = self.columns()
        paper = [f"paper: {c}" for c in t.paper_columns]
        lines = [f"## {t.name}: {t.title}", ""]
        lines += [f"| arm | {' | '.join([*ours, *paper])} |", "|" + " --- |" * (len(ours) + len(paper) + 1)]
        for arm in t.arms:
            values = self.rows.get(arm.name, {})
            cells = [values[c].text() if c in values else "-" for c in ours]
            theirs = [paper_number(v) for v in arm.paper] or ["-"] * len(paper)
            lines.append(f"| {arm.name} | {' | '.join([*cells, *theirs])} |")
        truth = self.comparison.reports.get(TRUTH_ROW)
        if truth is not None and (t.truth or any(c in truth.values for c in ours)):
            cells = [f"{truth.values[c]:.4f}" if c in truth.values else "-" for c in ours]
            theirs = [paper_number(v) for v in t.truth] or ["-"] * len(paper)
            lines.append(f"| ground truth | {' | '.join([*cells, *theirs])} |")
        fcn = f"by {self.segmenter}" if self.segmenter else "not computed"
        lines += [
            "",
            f"- ours: {self.data}; {self.budget}; mean ± sample std over the seeds of each arm (no ± with "
            f"one seed); FCN-scores {fcn}",
            f"- paper (theirs): {t.source}; {t.setting}",
        ]
        if truth is not None:
            lines.append(
                "- ground truth: the real photos scored as outputs (FCN-scores: the segmenter's own accuracy)"
            )
        if t.note:
            lines.append(f"- {t.note}")
        lines.append(f"- per-run scores, samples and loss curves: {self.comparison.out / 'index.html'}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        rows = {arm: {c: asdict(v) for c, v in values.items()} for arm, values in self.rows.items()}
        paper = {a.name: dict(zip(self.table.paper_columns, a.paper, strict=False)) for a in self.table.arms}
        return json.dumps(
            {
                "table": self.table.name,
                "source": self.table.source,
                "budget": self.budget,
                "data": self.data,
                "ours": rows,
                "paper": paper,
            },
            indent=2,
            default=str,
        )


def arm_rows(comparison: Comparison, runs: Sequence[ArmRun]) -> dict[str, dict[str, Spread]]:
    """Our numbers per arm over its seeds, from the comparison's seed rows (runs named as compare names them)."""
    by_folder = dict(zip(run_names([run.folder for run in runs]), (run.arm for run in runs), strict=True))
    rows: dict[str, dict[str, Spread]] = {}
    for row, members in comparison.seed_groups().items():
        arm = by_folder[members[0]]
        rows[arm] = comparison.seed_rows()[row]
    return rows


def weights_at(run: ArmRun, step: int, out: Path) -> Path | None:
    """The weights of ``run`` at ``step``: its checkpoint, or a copy kept in ``OUT/snapshots/RUN-atSTEP/``
    (a run keeps only its newest checkpoints); None if neither exists."""
    for path in (
        checkpoint.checkpoints_dir(run.folder) / f"step_{step:08d}" / checkpoint.WEIGHTS,
        out / "snapshots" / f"{run.folder.name}-at{step}" / checkpoint.WEIGHTS,
    ):
        if path.is_file():
            return path
    return None


def snapshot_runs(runs: Sequence[ArmRun], step: int, out: Path, progress: Progress) -> list[ArmRun]:
    """The runs that reached ``step``, as runs whose folder ``OUT/at-step-STEP/RUN`` holds (a link to) the
    weights of that step; the others are named and left out."""
    reached = []
    for run in runs:
        weights = weights_at(run, step, out)
        if weights is None:
            progress(f"{run.label}: no checkpoint at step {step} yet; left out")
            continue
        folder = out / f"at-step-{step}" / run.folder.name
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / checkpoint.WEIGHTS
        link.unlink(missing_ok=True)
        link.symlink_to(weights.resolve())
        reached.append(replace(run, folder=link))
    return reached


def output_stem(table: Table, at_step: int = 0) -> str:
    """The name of a table's outputs in OUT (``TABLE.md``, ``compare-TABLE/``): the table's name, and the
    step when scored partway, so that tables sharing OUT never overwrite each other's."""
    return f"{table.name}-at-{at_step}" if at_step else table.name


def run_table(
    table: Table,
    data: str | Path,
    out: str | Path,
    options: RunOptions,
    runs: Sequence[ArmRun] | None = None,
) -> TableResult:
    """Train, translate, score and tabulate ``table`` on ``data`` into ``out`` (resumable; see the module).

    ``runs`` replaces the table's plan (:func:`plan`: every arm at every seed), e.g. to order the runs or to
    give one arm more seeds. With ``options.at_step`` nothing trains: the runs are scored at that step of
    their schedule (:func:`snapshot_runs`), into ``compare-TABLE-at-STEP/`` and ``TABLE-at-STEP.md``.
    """
    data, out = Path(data).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if options.holdout:
        data, held = holdout_split(data, out / f"{data.name}-split", options.holdout)
        options.progress(
            f"held out {len(held)} samples by name ({held[0]} .. {held[-1]}) into {data / 'test'}"
        )
    split = _test_split(data)
    segmenter = segmenter_stage(data, out, options) if table.needs_segmenter else options.segmenter
    runs = list(runs) if runs is not None else plan(table, out / "runs", options.budget)
    stem = output_stem(table, options.at_step)
    if options.at_step:
        runs = snapshot_runs(runs, options.at_step, out, options.progress)
    else:
        train_arms(runs, data, options.budget, options.jobs or os.cpu_count() or 1, options.progress)
    if not runs:
        raise PixforgeError(f"no run of {table.name} has a checkpoint at step {options.at_step} yet")
    options.progress(f"scoring {len(runs)} runs on {data} ({split})")
    comparison = compare_runs(
        [r.folder for r in runs],
        data,
        out / f"compare-{stem}",
        split=split,
        scoring=scoring(segmenter, options.metrics),
        device=options.budget.device,
        merge_seeds=True,
    )
    segmenter_text = ""
    if segmenter is not None:
        trained = options.segmenter is None
        segmenter_text = (
            f"a segmenter trained on the training photos ({segmenter})" if trained else str(segmenter)
        )
    budget = options.budget.text()
    if options.at_step:
        budget = f"step {options.at_step} of a schedule of {budget}"
    result = TableResult(
        table, comparison, arm_rows(comparison, runs), budget, f"{data} ({split})", segmenter_text
    )
    (out / f"{stem}.md").write_text(result.to_markdown())
    (out / f"{stem}.json").write_text(result.to_json())
    return result
