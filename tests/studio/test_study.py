"""Study protocol, store and report, without a browser."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pixforge.errors import PixforgeError
from pixforge.studio import protocol
from pixforge.studio import store as store_module
from pixforge.studio.report import bootstrap, study_report, to_markdown, wilson
from pixforge.studio.store import StudyStore


@pytest.fixture()
def store(tmp_path: Path) -> StudyStore:
    return StudyStore(tmp_path / "studies.sqlite")


def shown(store: StudyStore, participant: int, idx: int) -> None:
    """Serve trial ``idx``'s two images, as the page fetches them before the participant can answer."""
    trial = store.trials(participant)[idx]
    assert store.serve_image(trial.left_image) and store.serve_image(trial.right_image)


def make(store: StudyStore, study_images: dict[str, Path], name: str = "s", **kwargs) -> None:
    options = {"practice": 2, "trials": 6, "exposure": "1000", "seed": 0, **kwargs}
    fakes = [f"blur={study_images['blur']}", f"poster={study_images['poster']}"]
    protocol.create_study(
        store, name, options.pop("kind", "real-vs-fake"), study_images["real"], fakes, **options
    )


def test_exposure_specs() -> None:
    assert protocol.exposures("1000") == (1000,)
    assert protocol.exposures("125-8000") == (125, 250, 500, 1000, 2000, 4000, 8000)
    assert protocol.exposures("100-300") == (100, 200, 300)
    assert protocol.exposures("unlimited") == (protocol.UNLIMITED,)
    for bad in ("0", "800-100", "fast", "1-2-3"):
        with pytest.raises(PixforgeError, match="exposure"):
            protocol.exposures(bad)


def test_create_refuses_what_cannot_run(store: StudyStore, study_images, tmp_path: Path) -> None:
    with pytest.raises(PixforgeError, match="needs 50"):
        make(store, study_images, practice=10, trials=40)
    with pytest.raises(PixforgeError, match="not a folder"):
        protocol.create_study(store, "x", "real-vs-fake", tmp_path / "nowhere", [str(study_images["blur"])])
    with pytest.raises(PixforgeError, match="two conditions"):
        protocol.create_study(store, "x", "ab", None, [str(study_images["blur"])])
    make(store, study_images)
    with pytest.raises(PixforgeError, match="already exists"):
        make(store, study_images)


def test_plans_are_seeded_balanced_and_one_condition_per_session(store: StudyStore, study_images) -> None:
    make(store, study_images)
    people = [protocol.join(store, "s") for _ in range(4)]
    assert [p.condition for p in people] == ["blur", "poster", "blur", "poster"]
    plan = protocol.load_plan(store, "s")
    sides = []
    for p in people:
        trials = store.trials(p.id)
        assert len(trials) == 8 and len({t.stem for t in trials}) == 8
        assert all({t.left_condition, t.right_condition} == {"real", p.condition} for t in trials)
        assert [t.phase for t in trials] == ["practice"] * 2 + ["trial"] * 6
        replay = plan.trials_for(p.number, p.seed)[1]
        assert [(t.stem, t.left_condition) for t in replay] == [(t.stem, t.left_condition) for t in trials]
        sides += [t.left_condition == "real" for t in trials]
    assert 0 < sum(sides) < len(sides)


def test_answers_in_order_once_and_from_the_current_trial(store: StudyStore, study_images) -> None:
    make(store, study_images, practice=0, trials=2)
    p = protocol.join(store, "s", worker="w1")
    first, second = store.trials(p.id)
    with pytest.raises(PixforgeError, match="not the current trial"):
        store.add_answer(p.id, 1, "left", 300)
    with pytest.raises(PixforgeError, match="never shown"):
        store.add_answer(p.id, 0, "left", 300)
    shown(store, p.id, 0)
    assert store.serve_image(first.left_image) is None  # once only
    store.add_answer(p.id, 0, "left", 300)
    assert store.serve_image(second.right_image)
    assert store.serve_image(second.left_image)
    with pytest.raises(PixforgeError, match="not the current trial"):
        store.add_answer(p.id, 0, "right", 300)
    with pytest.raises(PixforgeError, match="'left' or 'right'"):
        store.add_answer(p.id, 1, "both", 300)
    assert store.add_answer(p.id, 1, "right", 300)[1] is True
    with pytest.raises(PixforgeError, match="finished"):
        store.add_answer(p.id, 1, "right", 300)
    with pytest.raises(PixforgeError, match="already has a session"):
        protocol.join(store, "s", worker="w1")
    assert [a["choice"] for a in store.answers("s")] == ["left", "right"]


ANSWER_AND_DIE = """
import os, signal, sys
from pixforge.studio import store as store_module
from pixforge.studio.store import StudyStore
store = StudyStore(sys.argv[1])
trial = store.trials(int(sys.argv[2]))[0]
store.serve_image(trial.left_image), store.serve_image(trial.right_image)
store.add_answer(int(sys.argv[2]), 0, "left", 250.0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_answer_survives_a_killed_server(store: StudyStore, study_images) -> None:
    """The answer is committed before add_answer returns: a process killed right after keeps it."""
    make(store, study_images)
    p = protocol.join(store, "s")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", ANSWER_AND_DIE, str(store.path), str(p.id)], env=env, check=False
    )
    assert done.returncode == -signal.SIGKILL
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT idx, choice, response_ms FROM answers").fetchall() == [(0, "left", 250.0)]


def test_wilson_and_bootstrap() -> None:
    low, high = wilson(8, 10)  # the textbook example: 0.490 .. 0.943
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson(0, 10)[0] == 0.0 and math.isnan(wilson(0, 0)[0])
    b_low, b_high = bootstrap([(1, 2), (2, 2), (0, 2), (2, 2)])
    assert 0 <= b_low < 5 / 8 < b_high <= 1
    assert bootstrap([(3, 4)] * 5) == (0.75, 0.75)


def test_report_counts_finished_trials_only(store: StudyStore, study_images, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "MIN_RESPONSE_MS", 0.0)  # scripted answers come at once: none too fast
    make(store, study_images, practice=1, trials=3, exposure="100-400", kind="ab")
    people = [protocol.join(store, "s") for _ in range(3)]
    for p in people[:2]:
        for t in store.trials(p.id):
            shown(store, p.id, t.idx)
            store.add_answer(p.id, t.idx, "left", 500)
    shown(store, people[2].id, 0)
    store.add_answer(people[2].id, 0, "left", 500)
    report = study_report(store, "s")
    counted = [a for a in store.answers("s") if a["phase"] == "trial" and a["participant_number"] < 2]
    assert report["answers_counted"] == len(counted) == 6
    assert report["participants"]["excluded"] == 1
    by_pair = {(r["condition"], r["versus"]): r for r in report["rates"]}
    assert set(by_pair) == {("real", "blur"), ("real", "poster"), ("blur", "poster")}
    for (a, b), r in by_pair.items():
        mine = [x for x in counted if {x["left_condition"], x["right_condition"]} == {a, b}]
        assert (r["k"], r["n"]) == (sum(x["chosen_condition"] == a for x in mine), len(mine))
    assert sum(r["n"] for r in report["per_exposure"]) == 6
    assert "Excluded sessions" in to_markdown(report)


def test_colour_coded_labels_are_told_from_photos(synth_root: Path, facades_root: Path) -> None:
    """The paint page's test for models on colour-coded labels: the real CMP facade labels pass, photos do not."""
    from PIL import Image

    from pixforge.data.palette import FACADE_COLORS
    from pixforge.studio.paint import colour_coded

    for path in [
        *sorted(facades_root.glob("train/*.jpg"))[:5],
        *sorted(synth_root.glob("aligned/train/*.png"))[:3],
    ]:
        pair = Image.open(path)
        w, h = pair.size
        assert not colour_coded(pair.crop((0, 0, w // 2, h)), FACADE_COLORS), path
        assert colour_coded(pair.crop((w // 2, 0, w, h)), FACADE_COLORS), path


def test_study_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, study_images, capsys) -> None:
    from pixforge.cli import main

    db = str(tmp_path / "s.sqlite")
    cases = [
        (
            [
                "study",
                "create",
                "a",
                "--db",
                db,
                "--kind",
                "ab",
                "--fake",
                str(tmp_path / "none"),
                "--fake",
                str(study_images["blur"]),
            ],
            "not a folder",
        ),
        (
            ["study", "create", "a b", "--db", db, "--kind", "ab", "--fake", str(study_images["blur"])],
            "study name",
        ),
        (["study", "report", "a", "--db", str(tmp_path / "missing.sqlite")], "no such study database"),
        (
            ["scene", "render", str(study_images["real"] / "00000.png"), str(tmp_path), "--out", "x.png"],
            "not a scene file",
        ),
    ]
    main(
        ["study", "create", "ok", "--db", db, "--kind", "ab", "--fake", str(study_images["blur"])]
        + ["--fake", str(study_images["poster"]), "--trials", "3", "--practice", "0"]
    )
    cases.append((["study", "report", "nope", "--db", db], "no study named 'nope'"))
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1, (argv, err)
    main(["study", "report", "ok", "--db", db, "--out", str(tmp_path / "r")])
    assert "0 finished" in capsys.readouterr().out and (tmp_path / "r" / "report.json").is_file()


def test_the_default_study_database_is_a_user_data_file(
    tmp_path: Path, study_images, capsys, monkeypatch
) -> None:
    """Without --db no studies.sqlite lands in the working folder (a checkout); create and report agree."""
    from pixforge.cli import main

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    fakes = ["--fake", str(study_images["blur"]), "--fake", str(study_images["poster"])]
    main(["study", "create", "ok", "--kind", "ab", *fakes, "--trials", "3", "--practice", "0"])
    main(["study", "report", "ok"])
    assert "0 finished" in capsys.readouterr().out
    assert list(checkout.iterdir()) == []
    assert (tmp_path / "data" / "pixforge" / "studies.sqlite").is_file()


def test_study_images_are_shown_upright(tmp_path: Path):
    """A phone photo (stored turned, EXIF orientation 6) is shown as a portrait, at the display height."""
    import io

    import numpy as np
    from PIL import Image

    from pixforge.studio.app import DISPLAY_SIDE, _display_png

    exif = Image.Exif()
    exif[0x0112] = 6
    portrait = Image.fromarray(np.zeros((40, 24, 3), dtype=np.uint8))
    path = tmp_path / "phone.png"
    portrait.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    shown = Image.open(io.BytesIO(_display_png(str(path), path.stat().st_mtime)))
    assert shown.size == (round(24 * DISPLAY_SIDE / 40), DISPLAY_SIDE)
