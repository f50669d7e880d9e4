"""The studio's HTTP API against a live studio: paint renders, study integrity, admin access."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixforge.cli import main
from pixforge.studio.paint import scene_from_json, scene_to_json


def call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def error_of(result: tuple[int, bytes]) -> tuple[int, str]:
    return result[0], json.loads(result[1])["error"]


def test_scene_render_checks_its_input(live_studio) -> None:
    base = f"{live_studio.url}/studio/api/models"
    status, body = call(f"{base}/hd/samples/0")
    scene = json.loads(body)
    status, png = call(f"{base}/hd/render?seq=7", scene)
    assert status == 200 and Image.open(io.BytesIO(png)).size == (32, 32)
    bad_label = scene_from_json(scene)
    bad_label.label[0, 0] = 40
    assert error_of(call(f"{base}/hd/render", scene_to_json(bad_label)))[0] == 422
    some_thing = int(next(i for i in np.unique(bad_label.instance) if i >= 1000))
    assert error_of(call(f"{base}/hd/render", {**scene, "clusters": {str(some_thing): 99}}))[0] == 422
    assert error_of(call(f"{base}/hd/render", {**scene, "width": 16}))[0] == 422
    assert error_of(call(f"{base}/hd/render", b"not json"))[0] == 422
    assert error_of(call(f"{base}/nope/render", scene))[0] == 404
    assert error_of(call(f"{base}/hd/samples/99"))[0] == 404


def test_a_saved_scene_renders_the_same_from_the_cli(live_studio, studio_runs, tmp_path: Path) -> None:
    status, body = call(f"{live_studio.url}/studio/api/models/hd/samples/1")
    scene = {**json.loads(body), "clusters": {}, "style_seed": 5}
    thing = int(next(i for i in np.unique(scene_from_json(scene).instance) if i >= 1000))
    scene["clusters"] = {str(thing): 2}
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(scene))
    main(
        [
            "scene",
            "render",
            str(path),
            str(studio_runs["hd"]),
            "--out",
            str(tmp_path / "out.png"),
            "--device",
            "cpu",
        ]
    )
    served = np.asarray(
        Image.open(io.BytesIO(call(f"{live_studio.url}/studio/api/models/hd/render", scene)[1]))
    )
    assert np.abs(np.asarray(Image.open(tmp_path / "out.png"), dtype=int) - served).max() <= 1


def test_study_answers_are_guarded(live_studio, study_images) -> None:
    main(
        [
            "study",
            "create",
            "guarded",
            "--db",
            str(live_studio.db),
            "--kind",
            "ab",
            "--fake",
            str(study_images["blur"]),
        ]
        + ["--fake", str(study_images["poster"]), "--practice", "0", "--trials", "2"]
    )
    url = live_studio.url
    token = json.loads(call(f"{url}/study/api/guarded/join", {})[1])["token"]
    state = json.loads(call(f"{url}/study/api/session/{token}")[1])
    assert state["trial"]["index"] == 0 and set(state["trial"]) == {"index", "phase", "exposure_ms", "images"}
    image = state["trial"]["images"][0]
    assert call(url + image)[0] == 200 and call(url + state["trial"]["images"][1])[0] == 200
    answer = f"{url}/study/api/session/{token}/answer"
    assert error_of(call(answer, {"trial": 1, "choice": "left", "response_ms": 5}))[0] == 409
    assert call(answer, {"trial": 0, "choice": "left", "response_ms": 5})[0] == 200
    assert error_of(call(answer, {"trial": 0, "choice": "right", "response_ms": 5}))[0] == 409
    assert error_of(call(answer, {"trial": 1, "choice": "up", "response_ms": 5}))[0] == 422
    assert error_of(call(url + image))[0] == 404
    assert error_of(call(f"{url}/study/api/session/not-a-token"))[0] == 404
    assert error_of(call(f"{url}/study/api/nostudy/join", {}))[0] == 404


def test_admin_needs_the_token(live_studio, study_images) -> None:
    main(
        ["study", "create", "audited", "--db", str(live_studio.db), "--kind", "real-vs-fake"]
        + ["--real", str(study_images["real"]), "--fake", str(study_images["poster"]), "--trials", "3"]
    )
    base = f"{live_studio.url}/studio/api/admin"
    assert error_of(call(f"{base}/studies"))[0] == 401
    assert error_of(call(f"{base}/studies", headers={"x-admin-token": "wrong"}))[0] == 401
    admin = {"x-admin-token": live_studio.admin_token}
    names = [s["name"] for s in json.loads(call(f"{base}/studies", headers=admin)[1])["studies"]]
    assert "audited" in names
    links = json.loads(call(f"{base}/studies/audited/links", {"count": 2}, admin)[1])["links"]
    assert len(links) == 2 and call(live_studio.url + links[0])[0] == 200
    token = links[0].rsplit("/", 1)[1]
    state = json.loads(call(f"{live_studio.url}/study/api/session/{token}")[1])
    assert state["answered"] == 0
    for image in state["trial"]["images"]:
        call(live_studio.url + image)
    call(
        f"{live_studio.url}/study/api/session/{token}/answer",
        {"trial": 0, "choice": "left", "response_ms": 9},
    )
    report = json.loads(call(f"{base}/studies/audited/report", headers=admin)[1])
    assert report["report"]["participants"]["total"] == 2 and "<table>" in report["html"]
    status, csv = call(f"{base}/studies/audited/answers.csv", headers=admin)
    lines = csv.decode().splitlines()
    assert status == 200 and lines[0].startswith("participant_number,idx,study") and len(lines) == 2
    assert error_of(call(f"{base}/studies/audited/report"))[0] == 401
    assert error_of(call(f"{base}/studies/audited/answers.csv"))[0] == 401


def test_the_studio_command_serves_and_stops_on_sigterm(studio_runs, tmp_path: Path) -> None:
    """``pixforge studio RUN``: prints the admin link, serves the pages on 127.0.0.1, SIGTERM exits 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "pixforge", "studio", str(studio_runs["facades"]), "--port", str(port)]
    argv += ["--study-db", str(tmp_path / "s.sqlite"), "--device", "cpu"]
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not _up(url):
            assert proc.poll() is None and time.monotonic() < deadline, "the studio did not start"
            time.sleep(0.2)
        assert call(f"{url}/studio/")[0] == 200 and call(f"{url}/studio/paint")[0] == 200
        assert error_of(call(f"{url}/studio/api/admin/studies"))[0] == 401
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    token = out.split("#token=", 1)[1].split()[0]
    assert f"http://127.0.0.1:{port}/studio/admin#token=" in out and len(token) >= 16


def _up(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
        return True
    except OSError:
        return False


def test_a_scene_painted_for_another_model_renders_with_a_warning(
    live_studio, studio_runs, tmp_path: Path, caplog
) -> None:
    """The scene file names its model; rendering it with another one says so (and still renders)."""
    scene = json.loads(call(f"{live_studio.url}/studio/api/models/hd/samples/0")[1])
    assert scene["model"] == "hd"
    path = tmp_path / "scene.json"
    path.write_text(json.dumps({**scene, "model": "hd-yesterday"}))
    out = tmp_path / "out.png"
    main(["scene", "render", str(path), str(studio_runs["hd"]), "--out", str(out), "--device", "cpu"])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("hd-yesterday" in w and str(path) in w for w in warnings), warnings
    assert out.is_file()


def test_every_page_has_a_favicon(live_studio) -> None:
    """Browsers ask for /favicon.ico on every page: no 404 (a console error on each load)."""
    with urllib.request.urlopen(f"{live_studio.url}/favicon.ico") as response:
        assert response.status == 200 and response.headers["content-type"].startswith("image/")
        assert len(response.read()) > 0


def test_a_run_moved_without_its_data_still_translates_and_says_why(synth_root: Path, tmp_path: Path) -> None:
    """The paint page is told that the data folder is missing (no samples), instead of a wrong guess."""
    import shutil

    import pixforge
    from pixforge.serve.registry import ModelRegistry
    from pixforge.studio.paint import Paintable

    data = tmp_path / "aligned"
    shutil.copytree(synth_root / "aligned", data)
    pixforge.train("pix2pix", data, tmp_path / "run", preset="tiny", steps=1, direction="BtoA")
    shutil.rmtree(data)
    model = next(iter(ModelRegistry.load([tmp_path / "run"], "cpu")))
    described = Paintable(model).describe()
    assert described["samples"] == 0 and str(data) in described["note"]
    assert "colour-coded" in described["note"]
    assert model.translator(Image.new("RGB", (32, 32))).size == (32, 32)


def test_a_trials_images_have_the_same_file_size(live_studio, study_images) -> None:
    """The real photo compresses worse than a blurred fake: the served bytes must not tell them apart."""
    create = ["study", "create", "sizes", "--db", str(live_studio.db), "--kind", "real-vs-fake"]
    folders = ["--real", str(study_images["real"]), "--fake", str(study_images["blur"])]
    main([*create, *folders, "--practice", "0", "--trials", "4"])
    url = live_studio.url
    token = json.loads(call(f"{url}/study/api/sizes/join", {})[1])["token"]
    for index in range(3):
        state = json.loads(call(f"{url}/study/api/session/{token}")[1])
        left, right = (call(url + image)[1] for image in state["trial"]["images"])
        assert len(left) == len(right)
        assert Image.open(io.BytesIO(left)).size[1] == Image.open(io.BytesIO(right)).size[1] == 256
        answer = {"trial": index, "choice": "left", "response_ms": 500}
        assert call(f"{url}/study/api/session/{token}/answer", answer)[0] == 200
