"""The perceptual-study protocols of the papers, as seeded per-participant trial plans.

- ``real-vs-fake`` (pix2pix §4.2, "AMT perceptual studies"; DRPAN §4 follows it): each trial shows a real
  photo and a generated one side by side; the participant picks the one they think is real. "Each session
  only tested a single algorithm": a participant's session compares the real images with one condition,
  assigned round-robin over participants (so the conditions get equal numbers of sessions). The first
  ``practice`` trials give feedback, the rest do not; the fooling rate is the share of trials where the
  fake was picked.
- ``ab`` (pix2pixHD §4.2, pairwise preference): each trial shows the outputs of two conditions for the same
  input; the participant picks the more realistic one. Every pair of conditions is asked; the real images
  count as a condition when given.

Left/right order is drawn per trial from the participant's seed (``seed_of``: the study seed and the
participant number), and the plan is stored, so a study can be replayed and audited. Exposure: a fixed
time (pix2pix: 1 s), unlimited (``unlimited``), or a range ``LO-HI``: pix2pixHD's limited-time test draws "a
random duration between 1/8 seconds and 8 seconds"; we draw from the durations LO·2^k in the range (125,
250, ..., 8000 ms for ``125-8000``), the points of its Fig. 6, so every duration has enough answers to
report a rate per duration.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixforge.errors import PixforgeError
from pixforge.studio.store import Participant, StudyRow, StudyStore, Trial

KINDS = ("real-vs-fake", "ab")
REAL = "real"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
UNLIMITED = 0
"""Exposure of an unlimited-time trial: shown until answered."""


def exposures(spec: str) -> tuple[int, ...]:
    """The exposure durations (ms) of a spec: ``1000``, ``unlimited`` or ``LO-HI`` (LO·2^k up to HI)."""
    text = spec.strip().lower()
    if text == "unlimited":
        return (UNLIMITED,)
    fixed = re.fullmatch(r"(\d+)", text)
    ranged = re.fullmatch(r"(\d+)-(\d+)", text)
    if fixed and int(fixed[1]) > 0:
        return (int(fixed[1]),)
    if ranged and 0 < int(ranged[1]) < int(ranged[2]):
        low, high = int(ranged[1]), int(ranged[2])
        levels = [low * 2**k for k in range(32) if low * 2**k <= high]
        return tuple(levels if levels[-1] == high else [*levels, high])
    raise PixforgeError(
        f"--exposure-ms {spec!r}: give milliseconds (1000), a range (125-8000) or 'unlimited'"
    )


def images_by_stem(folder: Path) -> dict[str, Path]:
    """The images of a folder by file stem (``pixforge translate --out`` writes ``STEM.png``)."""
    if not folder.is_dir():
        raise PixforgeError(f"{folder}: not a folder of images")
    found = {p.stem: p.resolve() for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not found:
        raise PixforgeError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def condition_name(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder, or its parent for run outputs like runs/x/test)."""
    name, sep, path = spec.partition("=")
    if sep:
        return name, Path(path)
    folder = Path(spec)
    generic = folder.name in ("test", "val", "train", "images", "output", "outputs", "fake")
    return (folder.resolve().parent.name if generic else folder.name) or str(folder), folder


@dataclass(frozen=True)
class StudyPlan:
    """A study's definition, from which each participant's trials are drawn."""

    study: StudyRow
    stems: dict[str, set[str]]

    def seed_of(self, number: int) -> int:
        return int(np.random.SeedSequence([self.study.seed, number]).generate_state(1)[0])

    def trials_for(self, number: int, seed: int) -> tuple[str | None, list[Trial]]:
        """The session condition (real-vs-fake) and the trials of participant ``number``."""
        rng = np.random.default_rng(seed)
        levels = exposures(self.study.exposure)
        if self.study.kind == "real-vs-fake":
            condition = self.study.conditions[number % len(self.study.conditions)]
            common = sorted(self.stems[REAL] & self.stems[condition])
            stems = [common[i] for i in rng.permutation(len(common))[: self.study.total]]
            pairs = [(s, (REAL, condition)) for s in stems]
        else:
            condition = None
            combos = [
                (s, pair)
                for pair in itertools.combinations(self.study.conditions, 2)
                for s in sorted(self.stems[pair[0]] & self.stems[pair[1]])
            ]
            pairs = [combos[i] for i in rng.permutation(len(combos))[: self.study.total]]
        trials = []
        for idx, (stem, (a, b)) in enumerate(pairs):
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
            trials.append(
                Trial(
                    idx,
                    "practice" if idx < self.study.practice else "trial",
                    stem,
                    left,
                    right,
                    int(levels[rng.integers(len(levels))]),
                    secrets.token_urlsafe(16),
                    secrets.token_urlsafe(16),
                )
            )
        return condition, trials


def create_study(
    store: StudyStore,
    name: str,
    kind: str,
    real: Path | None,
    fakes: Sequence[str],
    exposure: str = "1000",
    practice: int = 10,
    trials: int = 40,
    seed: int = 0,
) -> StudyRow:
    """Create a study from image folders (matched by stem) in ``store``; see the module docstring."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise PixforgeError(f"study name {name!r}: use letters, digits, '.', '_' or '-'")
    if kind not in KINDS:
        raise PixforgeError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    if practice < 0 or trials < 1:
        raise PixforgeError("--practice must be at least 0 and --trials at least 1")
    exposures(exposure)
    folders = dict(condition_name(f) for f in fakes)
    if len(folders) != len(fakes) or REAL in folders:
        raise PixforgeError("--fake: every condition needs its own name (NAME=DIR), and not 'real'")
    if kind == "real-vs-fake" and (real is None or not fakes):
        raise PixforgeError("a real-vs-fake study needs --real DIR and at least one --fake DIR")
    if real is not None:
        folders = {REAL: real, **folders}
    if kind == "ab" and len(folders) < 2:
        raise PixforgeError(
            "an ab study needs two conditions: --fake DIR --fake DIR2 (or --real DIR --fake DIR)"
        )
    images = {c: images_by_stem(Path(f)) for c, f in folders.items()}
    conditions = tuple(c for c in folders if kind == "ab" or c != REAL)
    row = StudyRow(name, kind, conditions, exposure.strip().lower(), practice, trials, seed)
    plan = StudyPlan(row, {c: set(v) for c, v in images.items()})
    _check_enough(plan, folders)
    store.create_study(row, [(c, s, str(p)) for c, found in images.items() for s, p in found.items()])
    return row


def _check_enough(plan: StudyPlan, folders: dict[str, Path]) -> None:
    """Every session must fill its trials with distinct pairs: refuse a study whose folders cannot."""
    study = plan.study
    if study.kind == "real-vs-fake":
        for c in study.conditions:
            common = len(plan.stems[REAL] & plan.stems[c])
            if common < study.total:
                raise PixforgeError(
                    f"--fake {folders[c]}: {common} images match --real by stem; the study needs "
                    f"{study.total} (practice + trials)"
                )
        return
    combos = sum(len(plan.stems[a] & plan.stems[b]) for a, b in itertools.combinations(study.conditions, 2))
    if combos < study.total:
        raise PixforgeError(
            f"the conditions share {combos} (image, pair) combinations; the study needs {study.total}"
        )


def load_plan(store: StudyStore, name: str) -> StudyPlan:
    return StudyPlan(store.study(name), store.stems(name))


def join(store: StudyStore, name: str, worker: str | None = None) -> Participant:
    """Start a new participant's session (a worker id gets at most one session per study)."""
    plan = load_plan(store, name)
    if worker is not None and not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", worker):
        raise PixforgeError("the worker id may use letters, digits and _.@- (at most 64)")
    return store.add_participant(name, secrets.token_urlsafe(18), worker, plan.trials_for, plan.seed_of)
