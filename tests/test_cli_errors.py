"""Bad input on the command line: one line naming the file or option, exit code 2, no traceback, no lost data."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import pixforge
from pixforge import checkpoint
from pixforge.cli import main
from pixforge.methods import METHODS

TINY = ["--preset", "tiny", "--steps", "2"]


def fails(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI in-process; check exit code 2 and a single error line without traceback; return it."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def train_args(data: Path, out: Path, *extra: str, method: str = "pix2pix") -> list[str]:
    return ["train", method, "--data", str(data), "--out", str(out), *TINY, *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> Path:
    """A finished 2-step tiny pix2pix run on the synthetic aligned data."""
    out = tmp_path_factory.mktemp("runs") / "base"
    pixforge.train("pix2pix", synth_root / "aligned", out, preset="tiny", steps=2)
    return out


@pytest.fixture()
def run_copy(base_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def test_missing_data_folder(capsys, tmp_path):
    line = fails(capsys, train_args(tmp_path / "nope", tmp_path / "run"))
    assert str(tmp_path / "nope") in line and "not found" in line


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    line = fails(capsys, train_args(tmp_path / "empty", tmp_path / "run"))
    assert str(tmp_path / "empty") in line and "empty" in line


def test_layout_matching_no_format(capsys, tmp_path):
    data = tmp_path / "docs"
    (data / "misc").mkdir(parents=True)
    (data / "notes.txt").write_text("no images here")
    line = fails(capsys, train_args(data, tmp_path / "run"))
    assert str(data) in line and "no format" in line


def test_forced_format_that_does_not_fit(capsys, tmp_path, synth_root):
    line = fails(capsys, train_args(synth_root / "aligned", tmp_path / "run", "--data-format", "paired"))
    assert str(synth_root / "aligned") in line


def test_inspect_missing_folder(capsys, tmp_path):
    line = fails(capsys, ["data", "inspect", str(tmp_path / "nope")])
    assert str(tmp_path / "nope") in line


def test_corrupt_image_majority(capsys, tmp_path, synth_root):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for name in ("00000.png", "00001.png", "00002.png"):
        shutil.copy(synth_root / "aligned" / "train" / name, data / "train" / name)
    for i in range(5):
        (data / "train" / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    line = fails(capsys, train_args(data, tmp_path / "run"))
    assert str(data / "train") in line and "5 of 8" in line and "unreadable" in line


def test_pairs_of_different_sizes(capsys, tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for stem, (bw, bh) in (("a", (32, 32)), ("b", (40, 36))):
        for side, size in (("A", (32, 32)), ("B", (bw, bh))):
            (data / "train" / side).mkdir(parents=True, exist_ok=True)
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(data / "train" / side / f"{stem}.png")
    line = fails(capsys, train_args(data, tmp_path / "run"))
    assert str(data / "train" / "A" / "b.png") in line and str(data / "train" / "B" / "b.png") in line


def test_label_id_outside_the_class_range(capsys, tmp_path, synth_root):
    data = tmp_path / "labeled"
    for sub in ("images", "labels", "instances"):
        (data / "train" / sub).mkdir(parents=True)
        for name in ("00000.png", "00001.png"):
            shutil.copy(synth_root / "labeled" / "train" / sub / name, data / "train" / sub / name)
    shutil.copy(synth_root / "labeled" / "classes.txt", data / "classes.txt")
    bad = data / "train" / "labels" / "00001.png"
    ids = np.asarray(Image.open(bad)).copy()
    ids[5, 5] = 40
    Image.fromarray(ids).save(bad)
    line = fails(capsys, train_args(data, tmp_path / "run", "--batch-size", "2"))
    assert str(bad) in line and "40" in line


def test_label_id_outside_the_class_range_is_found_before_training(capsys, tmp_path, bad_label):
    """A bad label map that sampling might not reach for hours still stops the run before its first step."""
    data, bad = bad_label("train", "00007")
    line = fails(capsys, train_args(data, tmp_path / "run"))
    assert str(bad) in line and "40" in line


def test_a_truncated_image_is_skipped_during_training(caplog, tmp_path, synth_root):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for name in ("00000.png", "00001.png", "00002.png"):
        shutil.copy(synth_root / "aligned" / "train" / name, data / "train" / name)
    broken = data / "train" / "00001.png"
    broken.write_bytes(broken.read_bytes()[:200])
    args = ["train", "pix2pix", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    main([*args, "--steps", "1", "--batch-size", "3", "--set", "max_broken=0.5"])
    assert str(broken) in caplog.text
    assert pixforge.load(tmp_path / "run").step == 1


def test_unknown_method(capsys, tmp_path, synth_root):
    line = fails(capsys, train_args(synth_root / "aligned", tmp_path / "run", method="pix2pxi"))
    assert "pix2pxi" in line and "did you mean pix2pix" in line


def test_unknown_set_key(capsys, tmp_path, synth_root):
    line = fails(capsys, train_args(synth_root / "aligned", tmp_path / "run", "--set", "lambda_L1=10"))
    assert "lambda_L1" in line and "did you mean lambda_l1" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_set_value(capsys, tmp_path, synth_root):
    line = fails(capsys, train_args(synth_root / "aligned", tmp_path / "run", "--set", "ngf=wide"))
    assert "ngf" in line and "wide" in line


def test_unknown_preset(capsys, tmp_path, synth_root):
    args = ["train", "pix2pix", "--data", str(synth_root / "aligned"), "--out", str(tmp_path / "r")]
    line = fails(capsys, [*args, "--preset", "tinyy"])
    assert "tinyy" in line and "tiny" in line and "facades" in line


@pytest.mark.parametrize("kind", ["image", "folder", "missing", "foreign_safetensors"])
def test_translate_a_path_that_is_not_a_checkpoint(capsys, tmp_path, synth_root, kind):
    image = synth_root / "aligned" / "test" / "00022.png"
    if kind == "image":
        path = image
    elif kind == "folder":
        path = synth_root / "aligned" / "test"
    elif kind == "missing":
        path = tmp_path / "no_run"
    else:
        path = tmp_path / "model.safetensors"
        save_file({"w": torch.zeros(1)}, str(path))
    line = fails(capsys, ["translate", str(path), str(image), "--out", str(tmp_path / "out")])
    assert str(path) in line
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_a_newer_format(capsys, tmp_path, base_run, synth_root):
    weights = checkpoint.resolve(base_run)
    with safe_open(str(weights), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    assert meta["version"] == str(checkpoint.FORMAT_VERSION)
    newer = tmp_path / "newer" / checkpoint.WEIGHTS
    newer.parent.mkdir()
    save_file(tensors, str(newer), metadata={**meta, "version": "999"})
    image = synth_root / "aligned" / "test" / "00022.png"
    line = fails(capsys, ["translate", str(newer.parent), str(image), "--out", str(tmp_path / "out")])
    assert str(newer) in line and "999" in line and "newer" in line
    line = fails(capsys, ["info", str(newer)])
    assert "999" in line


def test_resume_with_an_incompatible_config(capsys, run_copy, synth_root):
    before = snapshot(run_copy)
    line = fails(capsys, train_args(synth_root / "aligned", run_copy, "--resume", "--set", "ngf=16"))
    assert "--resume" in line and "ngf" in line and "16" in line
    assert snapshot(run_copy) == before


def test_resume_as_another_method_is_refused(capsys, monkeypatch, run_copy, synth_root):
    monkeypatch.setitem(METHODS, "pix2pix_twin", METHODS["pix2pix"])
    before = snapshot(run_copy)
    line = fails(capsys, train_args(synth_root / "aligned", run_copy, "--resume", method="pix2pix_twin"))
    assert str(run_copy) in line and "pix2pix run" in line and "pix2pix_twin" in line
    assert snapshot(run_copy) == before


def test_resume_without_a_checkpoint(capsys, tmp_path, synth_root):
    line = fails(capsys, train_args(synth_root / "aligned", tmp_path / "fresh", "--resume"))
    assert str(tmp_path / "fresh") in line and "no checkpoint" in line


def test_existing_run_without_resume_is_refused(capsys, run_copy, synth_root):
    before = snapshot(run_copy)
    assert any(name.endswith(checkpoint.WEIGHTS) for name in before)
    line = fails(capsys, train_args(synth_root / "aligned", run_copy))
    assert str(run_copy) in line and "--resume" in line
    assert snapshot(run_copy) == before
    assert pixforge.load(run_copy).step == 2


def test_debug_shows_the_traceback(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--debug", *train_args(tmp_path / "nope", tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "PixforgeError" in err
    assert err.strip().splitlines()[-1].startswith("error: ") and str(tmp_path / "nope") in err


def test_subprocess_exit_code_and_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pixforge", *train_args(tmp_path / "nope", tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tmp_path / "nope") in lines[0]


def test_options_of_an_unknown_method_or_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown method 'pix2pixHD'" in fails(capsys, ["options", "pix2pixHD"])
    assert "unknown preset 'facade' for pix2pix" in fails(
        capsys, ["options", "pix2pix", "--preset", "facade"]
    )


@pytest.mark.parametrize("command", ["serve", "studio"])
def test_a_port_in_use_is_refused_before_anything_is_printed(capsys, tmp_path, command):
    """No URL or admin link pointing at the other server: one line naming the port and --port, exit 2."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            main([command, str(tmp_path / "run"), "--port", str(port), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.count("\n") == 1 and f"port {port}" in err and "--port" in err


def test_a_label_id_out_of_range_names_the_input_file(capsys, tmp_path, train_tiny, synth_root):
    """pix2pixHD takes class ids 0..12 (or the palette's colours): an id map with id 211 gets its file named."""
    run = train_tiny("hd-ids", {"hd": ("pix2pixhd", "labeled", {})})["hd"]
    ids = tmp_path / "ids.png"
    Image.fromarray(np.full((32, 32), 211, dtype=np.uint8), mode="L").save(ids)
    line = fails(capsys, ["translate", str(run), str(ids), "--out", str(tmp_path / "out")])
    assert str(ids) in line and "211" in line and "0..12" in line
