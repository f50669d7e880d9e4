"""The perceptual-study protocols of the papers, as seeded per-participant trial plans.

- ``real-vs-fake`` (pix2pix §4.2, "AMT perceptual studies"; DRPAN §4 follows it): each trial shows a real
  photo and a generated one side by side; the participant picks the one they think is real. "Each session
  only tested a single algorithm": a participant's session compares the real images with one condition,
  assigned round-robin over participants (so the conditions get equal numbers of sessions). The first
  ``practice`` trials give feedback, the rest do not; the fooling rate is the share of trials where the
  fake was picked. Practice images come from a pool that no session ever scores
  (:meth:`StudyPlan.practice_pool`), so feedback teaches nothing about a scored picture.
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

import base64
import hashlib
import hmac
import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixforge.errors import PixforgeError
from pixforge.studio.store import Participant, SessionRefused, StudyRow, StudyStore, Trial

KINDS = ("real-vs-fake", "ab")
REAL = "real"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
UNLIMITED = 0
"""Exposure of an unlimited-time trial: shown until answered."""
PRACTICE_STREAM = 0x70726163
"""Second seed word of the practice pool's draw (a stream apart from every participant's)."""
WORKER_ID = r"[A-Za-z0-9_.@-]{1,64}"
ANONYMOUS_PER_CLIENT = 3
"""Default bound on the sessions without a worker id that one client address may open in a study."""


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

    @property
    def pooled(self) -> tuple[str, ...]:
        """The conditions whose images every practice stem must have (all of the study's)."""
        study = self.study
        return study.conditions if study.kind == "ab" else (REAL, *study.conditions)

    def practice_pool(self) -> list[str]:
        """The stems of the practice trials, the same for every session and never in a scored trial.

        The pix2pix protocol gives feedback on practice trials only; were a practice picture scored in another
        session, a participant who opened several sessions would learn from the feedback which picture is
        real. The pool: ``practice`` stems that every condition has, drawn with the study seed.
        """
        shared = sorted(set.intersection(*(self.stems.get(c, set()) for c in self.pooled)))
        order = np.random.default_rng([self.study.seed, PRACTICE_STREAM]).permutation(len(shared))
        return [shared[i] for i in order[: self.study.practice]]

    def scored_pairs(self, condition: str | None) -> list[tuple[str, tuple[str, str]]]:
        """Every (stem, condition pair) a scored trial may show: the practice pool's stems left out."""
        pool = set(self.practice_pool())
        if condition is not None:
            return [(s, (REAL, condition)) for s in sorted(self.stems[REAL] & self.stems[condition] - pool)]
        return [
            (s, pair)
            for pair in itertools.combinations(self.study.conditions, 2)
            for s in sorted(self.stems[pair[0]] & self.stems[pair[1]] - pool)
        ]

    def trials_for(self, number: int, seed: int) -> tuple[str | None, list[Trial]]:
        """The session condition (real-vs-fake) and the trials of participant ``number``: the practice pool
        in a seeded order, then ``trials`` scored pairs drawn from the rest."""
        rng = np.random.default_rng(seed)
        levels = exposures(self.study.exposure)
        condition = None
        if self.study.kind == "real-vs-fake":
            condition = self.study.conditions[number % len(self.study.conditions)]
        pairs_of_pool = list(itertools.combinations(self.study.conditions, 2))
        practice = [
            (s, (REAL, condition) if condition else pairs_of_pool[rng.integers(len(pairs_of_pool))])
            for s in (self.practice_pool()[i] for i in rng.permutation(self.study.practice))
        ]
        scored = self.scored_pairs(condition)
        pairs = practice + [scored[i] for i in rng.permutation(len(scored))[: self.study.trials]]
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
    require_worker: bool = False,
    anonymous_per_client: int = ANONYMOUS_PER_CLIENT,
) -> StudyRow:
    """Create a study from image folders (matched by stem) in ``store``; see the module docstring."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise PixforgeError(f"study name {name!r}: use letters, digits, '.', '_' or '-'")
    if kind not in KINDS:
        raise PixforgeError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    if practice < 0 or trials < 1:
        raise PixforgeError("--practice must be at least 0 and --trials at least 1")
    if anonymous_per_client < 0:
        raise PixforgeError("--anonymous-per-client must be at least 0 (0: no bound)")
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
    row = StudyRow(
        name,
        kind,
        conditions,
        exposure.strip().lower(),
        practice,
        trials,
        seed,
        require_worker,
        anonymous_per_client,
        secrets.token_urlsafe(32),
    )
    plan = StudyPlan(row, {c: set(v) for c, v in images.items()})
    _check_enough(plan, folders)
    store.create_study(row, [(c, s, str(p)) for c, found in images.items() for s, p in found.items()])
    return row


def _check_enough(plan: StudyPlan, folders: dict[str, Path]) -> None:
    """Every session must fill its trials with distinct pairs, practice apart from scored: refuse a study
    whose folders cannot."""
    study = plan.study
    shared = len(set.intersection(*(plan.stems[c] for c in plan.pooled)))
    if shared < study.practice:
        raise PixforgeError(
            f"--practice {study.practice}: only {shared} images are shared by every condition; practice "
            "images are never scored, so the study needs that many shared ones"
        )
    if study.kind == "real-vs-fake":
        for c in study.conditions:
            common = len(plan.stems[REAL] & plan.stems[c])
            if len(plan.scored_pairs(c)) < study.trials:
                raise PixforgeError(
                    f"--fake {folders[c]}: {common} images match --real by stem; the study needs "
                    f"{study.total} (practice + trials)"
                )
        return
    combos = len(plan.scored_pairs(None))
    if combos < study.trials:
        raise PixforgeError(
            f"the conditions share {combos} (image, pair) combinations outside the practice images; "
            f"the study needs {study.trials}"
        )


def load_plan(store: StudyStore, name: str) -> StudyPlan:
    return StudyPlan(store.study(name), store.stems(name))


def signature(study: StudyRow, worker: str) -> str:
    """The signature of a worker id in ``study``'s links: HMAC-SHA256 under the study's secret, of the study
    name and the lower-cased id, base64url, 22 characters (128 bits)."""
    message = f"{study.name}\n{worker.lower()}".encode()
    digest = hmac.new(study.secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def signed_link(study: StudyRow, worker: str) -> str:
    """The open link of one worker: ``/study/NAME?worker=ID&sig=SIGNATURE``."""
    check_worker(worker)
    return f"/study/{study.name}?worker={worker}&sig={signature(study, worker)}"


def check_worker(worker: str) -> None:
    if not re.fullmatch(WORKER_ID, worker):
        raise PixforgeError("the worker id may use letters, digits and _.@- (at most 64)")


def join(
    store: StudyStore,
    name: str,
    worker: str | None = None,
    sig: str | None = None,
    client: str | None = None,
) -> Participant:
    """Start a new participant's session. A worker id gets at most one session per study (ids compared
    case-insensitively); a study made with ``require_worker`` takes only signed worker links (``sig``), so an id
    cannot be claimed by someone else first. ``client`` (the address) bounds the anonymous sessions."""
    plan = load_plan(store, name)
    study = plan.study
    if worker is not None:
        check_worker(worker)
    if study.require_worker and worker is None:
        raise SessionRefused("this study takes part only through a personal worker link")
    if (study.require_worker or sig is not None) and (
        worker is None or sig is None or not hmac.compare_digest(sig, signature(study, worker))
    ):
        raise SessionRefused("this worker link is not signed for this study; use the link you were given")
    return store.add_participant(
        name, secrets.token_urlsafe(18), worker, plan.trials_for, plan.seed_of, client
    )
