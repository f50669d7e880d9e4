"""The study store: one SQLite file (WAL journal) holding studies, their images, participants, trial plans
and answers.

Every answer is one row, committed in its own transaction before the server replies, so a crash of the
server loses nothing that was answered (WAL with ``synchronous=FULL``: the commit is on disk when
:meth:`StudyStore.add_answer` returns). Each call opens its own connection, so the store is safe to use
from the server's worker threads and from the CLI at the same time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixforge.errors import PixforgeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    conditions TEXT NOT NULL,
    exposure TEXT NOT NULL,
    practice INTEGER NOT NULL,
    trials INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    created REAL NOT NULL,
    require_worker INTEGER NOT NULL DEFAULT 0,
    anonymous_per_client INTEGER NOT NULL DEFAULT 0,
    secret TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS images (
    study TEXT NOT NULL REFERENCES studies(name),
    condition TEXT NOT NULL,
    stem TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (study, condition, stem)
);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL REFERENCES studies(name),
    number INTEGER NOT NULL,
    token TEXT NOT NULL UNIQUE,
    worker TEXT,
    condition TEXT,
    seed INTEGER NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    client TEXT,
    UNIQUE (study, number),
    UNIQUE (study, worker)
);
CREATE TABLE IF NOT EXISTS trials (
    participant INTEGER NOT NULL REFERENCES participants(id),
    idx INTEGER NOT NULL,
    phase TEXT NOT NULL,
    stem TEXT NOT NULL,
    left_condition TEXT NOT NULL,
    right_condition TEXT NOT NULL,
    exposure_ms INTEGER NOT NULL,
    left_image TEXT NOT NULL UNIQUE,
    right_image TEXT NOT NULL UNIQUE,
    views INTEGER NOT NULL DEFAULT 0,
    served_left REAL,
    served_right REAL,
    PRIMARY KEY (participant, idx)
);
CREATE TABLE IF NOT EXISTS answers (
    participant INTEGER NOT NULL REFERENCES participants(id),
    idx INTEGER NOT NULL,
    study TEXT NOT NULL,
    phase TEXT NOT NULL,
    stem TEXT NOT NULL,
    left_condition TEXT NOT NULL,
    right_condition TEXT NOT NULL,
    exposure_ms INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    chosen_condition TEXT NOT NULL,
    response_ms REAL NOT NULL,
    views INTEGER NOT NULL,
    answered REAL NOT NULL,
    server_ms REAL,
    flag TEXT,
    PRIMARY KEY (participant, idx)
);
"""
ADDED_COLUMNS = {
    "studies": (
        ("require_worker", "INTEGER NOT NULL DEFAULT 0"),
        ("anonymous_per_client", "INTEGER NOT NULL DEFAULT 0"),
        ("secret", "TEXT NOT NULL DEFAULT ''"),
    ),
    "participants": (("client", "TEXT"),),
    "trials": (("served_left", "REAL"), ("served_right", "REAL")),
    "answers": (("server_ms", "REAL"), ("flag", "TEXT")),
}
"""Columns added since the first schema: a database made before them gets them on opening."""
MIN_RESPONSE_MS = 100.0
"""The floor under which an answer is flagged "too fast" and left out of the report: the time from the later
of the trial's two images leaving the server to the answer reaching it (it includes the network and image
decoding, so it is longer than the participant's own response time). Human choice reaction times to two
pictures are above 200 ms; 100 ms is below any real answer."""
TOO_FAST = "too fast"
AFTER_OUTAGE = "after an outage"
"""The flag of an answer the page had to send again because the server did not answer (a restart): its
response time is the click's, but the participant waited through the outage, so it is left out too."""


class SessionRefused(PixforgeError):
    """A second session for a participant who already has one."""


class OutOfTurn(PixforgeError):
    """An answer to a trial that is not the session's current one (answered already, or not yet reached)."""


class TooManySessions(PixforgeError):
    """An anonymous session beyond the study's bound for one client address."""


class NotShown(PixforgeError):
    """An answer to a trial whose images were never served."""


@dataclass(frozen=True)
class StudyRow:
    """A study: its kind (``real-vs-fake`` or ``ab``), compared conditions, exposure spec and trial counts."""

    name: str
    kind: str
    conditions: tuple[str, ...]
    exposure: str
    practice: int
    trials: int
    seed: int
    require_worker: bool = False
    """One session per worker id, and only through a signed link (:func:`pixforge.studio.protocol.signed_link`)."""
    anonymous_per_client: int = 0
    """Sessions without a worker id one client address may open (0: no bound)."""
    secret: str = field(default="", repr=False)
    """The key that signs this study's worker links."""

    @property
    def total(self) -> int:
        return self.practice + self.trials


@dataclass(frozen=True)
class Trial:
    """One planned trial of a participant: which stem, which condition on each side, for how long."""

    idx: int
    phase: str
    stem: str
    left_condition: str
    right_condition: str
    exposure_ms: int
    left_image: str
    right_image: str
    views: int = 0


@dataclass(frozen=True)
class Participant:
    id: int
    study: str
    number: int
    token: str
    worker: str | None
    condition: str | None
    seed: int
    finished: float | None


class StudyStore:
    """Studies in one SQLite file (created on first use, WAL journal)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                _add_columns(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise PixforgeError(f"{self.path}: not a usable study database ({exc})") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose ``with`` block is one transaction (committed on success, rolled back on error)."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise PixforgeError(f"{self.path}: cannot open the study database ({exc})") from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # studies -----------------------------------------------------------------------------------------------

    def create_study(self, study: StudyRow, images: Sequence[tuple[str, str, str]]) -> None:
        """Store a new study and its images as (condition, stem, path) rows."""
        with self._connect() as db:
            if db.execute("SELECT 1 FROM studies WHERE name = ?", (study.name,)).fetchone():
                raise PixforgeError(f"study {study.name!r} already exists in {self.path}")
            db.execute(
                "INSERT INTO studies (name, kind, conditions, exposure, practice, trials, seed, created, "
                "require_worker, anonymous_per_client, secret) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    study.name,
                    study.kind,
                    json.dumps(list(study.conditions)),
                    study.exposure,
                    study.practice,
                    study.trials,
                    study.seed,
                    time.time(),
                    int(study.require_worker),
                    study.anonymous_per_client,
                    study.secret,
                ),
            )
            db.executemany(
                "INSERT INTO images VALUES (?, ?, ?, ?)", [(study.name, c, s, p) for c, s, p in images]
            )

    def study(self, name: str) -> StudyRow:
        found = self.study_or_none(name)
        if found is None:
            raise PixforgeError(f"no study named {name!r} in {self.path}")
        return found

    def study_or_none(self, name: str) -> StudyRow | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return StudyRow(
            row["name"],
            row["kind"],
            tuple(json.loads(row["conditions"])),
            row["exposure"],
            row["practice"],
            row["trials"],
            row["seed"],
            bool(row["require_worker"]),
            row["anonymous_per_client"],
            row["secret"],
        )

    def study_names(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT name FROM studies ORDER BY created")]

    def stems(self, study: str) -> dict[str, set[str]]:
        """The stems of each condition's images."""
        out: dict[str, set[str]] = {}
        with self._connect() as db:
            for row in db.execute("SELECT condition, stem FROM images WHERE study = ?", (study,)):
                out.setdefault(row[0], set()).add(row[1])
        return out

    # participants and plans --------------------------------------------------------------------------------

    def add_participant(
        self,
        study: str,
        token: str,
        worker: str | None,
        plan: Callable[[int, int], tuple[str | None, list[Trial]]],
        seed_of: Callable[[int], int],
        client: str | None = None,
    ) -> Participant:
        """Register the next participant of ``study`` with the trials ``plan(number, seed)`` returns.

        ``seed_of(number)`` gives the participant's seed; ``plan`` returns (condition, trials). A worker id
        (compared case-insensitively) that already has a session is refused, and so is an anonymous session
        from a ``client`` address that has opened the study's ``anonymous_per_client`` ones already.
        """
        worker = None if worker is None else worker.lower()
        with self._connect() as db:
            if (
                worker is not None
                and db.execute(
                    "SELECT 1 FROM participants WHERE study = ? AND worker = ?", (study, worker)
                ).fetchone()
            ):
                raise SessionRefused("this participant already has a session in this study")
            if worker is None and client is not None:
                self._check_anonymous(db, study, client)
            number = db.execute("SELECT COUNT(*) FROM participants WHERE study = ?", (study,)).fetchone()[0]
            seed = seed_of(number)
            condition, trials = plan(number, seed)
            cur = db.execute(
                "INSERT INTO participants (study, number, token, worker, condition, seed, created, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (study, number, token, worker, condition, seed, time.time(), client),
            )
            pid = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO trials (participant, idx, phase, stem, left_condition, right_condition, "
                "exposure_ms, left_image, right_image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        pid,
                        t.idx,
                        t.phase,
                        t.stem,
                        t.left_condition,
                        t.right_condition,
                        t.exposure_ms,
                        t.left_image,
                        t.right_image,
                    )
                    for t in trials
                ],
            )
        return Participant(pid, study, number, token, worker, condition, seed, None)

    @staticmethod
    def _check_anonymous(db: sqlite3.Connection, study: str, client: str) -> None:
        bound = db.execute("SELECT anonymous_per_client FROM studies WHERE name = ?", (study,)).fetchone()[0]
        opened = db.execute(
            "SELECT COUNT(*) FROM participants WHERE study = ? AND client = ? AND worker IS NULL",
            (study, client),
        ).fetchone()[0]
        if bound and opened >= bound:
            raise TooManySessions(
                f"this address has opened {opened} sessions of this study, the most it may open"
            )

    def participant(self, token: str) -> Participant | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM participants WHERE token = ?", (token,)).fetchone()
        return None if row is None else _participant(row)

    def participants(self, study: str) -> list[Participant]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM participants WHERE study = ? ORDER BY number", (study,))
            return [_participant(r) for r in rows]

    def trials(self, participant: int) -> list[Trial]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM trials WHERE participant = ? ORDER BY idx", (participant,))
            return [_trial(r) for r in rows]

    def answered(self, participant: int) -> int:
        with self._connect() as db:
            return int(
                db.execute("SELECT COUNT(*) FROM answers WHERE participant = ?", (participant,)).fetchone()[0]
            )

    def show_trial(self, participant: int, idx: int) -> Trial:
        """Count one more showing of trial ``idx`` and return it. ``views`` (copied into the answer) is above 1
        when the participant reloaded the page during the trial and so saw its images again."""
        with self._connect() as db:
            db.execute(
                "UPDATE trials SET views = views + 1 WHERE participant = ? AND idx = ?", (participant, idx)
            )
            row = db.execute(
                "SELECT * FROM trials WHERE participant = ? AND idx = ?", (participant, idx)
            ).fetchone()
        return _trial(row)

    def serve_image(self, image_id: str) -> str | None:
        """The file behind an opaque image id, once: the first request for an image of a trial that has not
        been answered records when it was served and gets the path; any later one gets None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT t.participant, t.idx, t.stem, p.study, t.left_image = ? AS is_left, "
                "CASE WHEN t.left_image = ? THEN t.left_condition ELSE t.right_condition END AS condition, "
                "CASE WHEN t.left_image = ? THEN t.served_left ELSE t.served_right END AS served "
                "FROM trials t JOIN participants p ON p.id = t.participant "
                "WHERE t.left_image = ? OR t.right_image = ?",
                (image_id,) * 5,
            ).fetchone()
            if row is None or row["served"] is not None:
                return None
            done = db.execute(
                "SELECT 1 FROM answers WHERE participant = ? AND idx = ?", (row["participant"], row["idx"])
            ).fetchone()
            if done:
                return None
            found = db.execute(
                "SELECT path FROM images WHERE study = ? AND condition = ? AND stem = ?",
                (row["study"], row["condition"], row["stem"]),
            ).fetchone()
            column = "served_left" if row["is_left"] else "served_right"
            db.execute(
                f"UPDATE trials SET {column} = ? WHERE participant = ? AND idx = ?",
                (time.time(), row["participant"], row["idx"]),
            )
        return None if found is None else str(found[0])

    # answers -----------------------------------------------------------------------------------------------

    def add_answer(
        self, participant: int, idx: int, choice: str, response_ms: float, retried: bool = False
    ) -> tuple[Trial, bool]:
        """Record the answer to trial ``idx``, which must be the participant's next unanswered trial and
        whose two images must have been served (:meth:`serve_image`).

        One committed row per answer; an answer that reached the server less than :data:`MIN_RESPONSE_MS`
        after the trial's images left it is kept, flagged :data:`TOO_FAST`; one the page sent again after an
        outage (``retried``) is kept, flagged :data:`AFTER_OUTAGE`. Returns the trial and whether the
        session is now finished.
        """
        if choice not in ("left", "right"):
            raise PixforgeError("the answer must be 'left' or 'right'")
        if not 0 <= response_ms < 86_400_000:
            raise PixforgeError("the response time must be between 0 and one day in milliseconds")
        with self._connect() as db:
            p = db.execute("SELECT * FROM participants WHERE id = ?", (participant,)).fetchone()
            if p is None or p["finished"] is not None:
                raise OutOfTurn("this session is finished; it takes no more answers")
            done = db.execute(
                "SELECT COUNT(*) FROM answers WHERE participant = ?", (participant,)
            ).fetchone()[0]
            if idx != done:
                raise OutOfTurn(f"trial {idx} is not the current trial (the current one is {done})")
            row = db.execute(
                "SELECT * FROM trials WHERE participant = ? AND idx = ?", (participant, idx)
            ).fetchone()
            if row["served_left"] is None or row["served_right"] is None:
                raise NotShown(f"trial {idx} was never shown: its images were not fetched")
            now = time.time()
            server_ms = (now - max(row["served_left"], row["served_right"])) * 1000
            trial = _trial(row)
            chosen = trial.left_condition if choice == "left" else trial.right_condition
            db.execute(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    participant,
                    idx,
                    p["study"],
                    trial.phase,
                    trial.stem,
                    trial.left_condition,
                    trial.right_condition,
                    trial.exposure_ms,
                    choice,
                    chosen,
                    float(response_ms),
                    trial.views,
                    now,
                    server_ms,
                    TOO_FAST if server_ms < MIN_RESPONSE_MS else AFTER_OUTAGE if retried else None,
                ),
            )
            total = db.execute(
                "SELECT COUNT(*) FROM trials WHERE participant = ?", (participant,)
            ).fetchone()[0]
            finished = idx + 1 == total
            if finished:
                db.execute("UPDATE participants SET finished = ? WHERE id = ?", (time.time(), participant))
        return trial, finished

    def answers(self, study: str) -> list[dict[str, Any]]:
        """Every answer of a study, with the participant's number, in answer order."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT p.number AS participant_number, a.* FROM answers a JOIN participants p "
                "ON p.id = a.participant WHERE a.study = ? ORDER BY p.number, a.idx",
                (study,),
            )
            return [dict(r) for r in rows]


def _add_columns(db: sqlite3.Connection) -> None:
    """Bring a database made by an earlier version up to :data:`SCHEMA` (:data:`ADDED_COLUMNS`)."""
    for table, columns in ADDED_COLUMNS.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def _participant(row: sqlite3.Row) -> Participant:
    return Participant(
        row["id"],
        row["study"],
        row["number"],
        row["token"],
        row["worker"],
        row["condition"],
        row["seed"],
        row["finished"],
    )


def _trial(row: sqlite3.Row) -> Trial:
    return Trial(
        row["idx"],
        row["phase"],
        row["stem"],
        row["left_condition"],
        row["right_condition"],
        row["exposure_ms"],
        row["left_image"],
        row["right_image"],
        row["views"],
    )
