"""Checkpoint writes that fail: a full disk (real, on a small tmpfs, and simulated), a permission, a rewrite."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open

import pixforge
from pixforge import checkpoint
from pixforge.cli import main
from pixforge.errors import PixforgeError

FULL = "disk full while writing checkpoint step 10; the last good one is step 5"


def tiny(data: Path, out: Path, **kw):
    opts = {"steps": 5, "checkpoint_every": 5, "log_every": 5, "device": "cpu", **kw}
    return pixforge.train("pix2pix", data, out, preset="tiny", **opts)


def train_cli(data: Path, run: Path) -> None:
    """``pixforge train ... --resume --steps 10``, which must end with exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "pix2pix", "--data", str(data), "--out", str(run), "--preset", "tiny", "--steps", "10",
              "--resume", "--device", "cpu"])  # fmt: skip
    assert exit_info.value.code == 2


def assert_left_on_step_5(run: Path) -> None:
    folder = run / "checkpoints"
    assert (folder / "latest").read_text() == "step_00000005"
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step_00000005"], "no temporary files left"
    assert pixforge.load(run).step == 5


@pytest.fixture()
def run5(synth_root: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    tiny(synth_root / "aligned", run)
    return run


def test_safetensors_disk_full_leaves_latest_on_the_last_good_checkpoint(
    run5: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real_save = checkpoint.save_file

    def full_disk(tensors, path, metadata=None):
        real_save(tensors, path, metadata=metadata)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    train_cli(synth_root / "aligned", run5)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {FULL} (in ") and "\n" not in err
    assert_left_on_step_5(run5)


def test_torch_save_disk_full_is_a_runtime_error(
    run5: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save reports a full disk as a RuntimeError ("unexpected pos ..."); the free space tells."""

    def full_disk(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    monkeypatch.setattr(
        checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 4096)
    )
    with pytest.raises(PixforgeError, match=FULL):
        tiny(synth_root / "aligned", run5, steps=10, resume=True)
    assert_left_on_step_5(run5)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(
        PixforgeError, match=r"cannot write \(\[enforce fail.*step 10; the last good one is step 5"
    ):
        tiny(synth_root / "aligned", run5, steps=10, resume=True)
    assert_left_on_step_5(run5)


def test_a_permission_error_names_the_file(
    run5: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(tensors, path, metadata=None):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(checkpoint, "save_file", refused)
    with pytest.raises(PixforgeError, match=r"cannot write \(Permission denied: .*model.safetensors\) while"):
        tiny(synth_root / "aligned", run5, steps=10, resume=True)
    assert_left_on_step_5(run5)


def test_a_failed_rewrite_of_the_same_step_puts_the_old_one_back(
    run5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pixforge pix2pixhd cluster` rewrites the latest step in place: a failure must not lose it."""
    translator = pixforge.load(run5, device="cpu")
    before = checkpoint.read(run5).weights
    state = checkpoint.read_state(checkpoint.latest_checkpoint(run5) / checkpoint.WEIGHTS)

    def fails_at_the_pointer(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", fails_at_the_pointer)
    with pytest.raises(
        PixforgeError, match="disk full while writing checkpoint step 5; the last good one is step 5"
    ):
        checkpoint.save_checkpoint(run5, translator.method, translator.config.to_yaml(), 5, state, 3)
    monkeypatch.undo()
    assert_left_on_step_5(run5)
    after = checkpoint.read(run5).weights
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.fixture()
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB tmpfs, where the machine lets us mount one (root in a container that allows it)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount here")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False, timeout=30)


def test_a_real_full_disk(small_tmpfs: Path, synth_root: Path, capsys: pytest.CaptureFixture) -> None:
    """Step 5 is written, then the disk is filled to 200 kB short: step 10 (3 MB) cannot be."""
    run = small_tmpfs / "run"
    tiny(synth_root / "aligned", run)
    with open(small_tmpfs / "filler", "wb") as filler:
        filler.write(b"\0" * (shutil.disk_usage(small_tmpfs).free - 200_000))
    capsys.readouterr()
    train_cli(synth_root / "aligned", run)
    assert f"error: {FULL}" in capsys.readouterr().err
    assert_left_on_step_5(run)


@pytest.mark.parametrize(
    ("method", "overrides", "training_keys"),
    [
        ("cyclegan", {"pool_size": 3}, {f"pool_{s}.{k}" for s in "AB" for k in range(3)}),
        (
            "guidegan",
            {"pool_size": 3, "unpaired": True},
            {"attention_AtoB", "attention_BtoA_seen", "pool_A.0"},
        ),
    ],
)
def test_the_weights_file_holds_no_training_state(
    synth_root: Path, tmp_path: Path, method: str, overrides: dict, training_keys: set[str]
) -> None:
    """Pools and attention caches go to state.pt (rank 0's entry), never into model.safetensors."""
    opts = {"steps": 3, "batch_size": 1, "sample_count": 1, "device": "cpu"}
    pixforge.train(method, synth_root / "unaligned", tmp_path, preset="tiny", overrides=overrides, **opts)
    weights = checkpoint.resolve(tmp_path)
    with safe_open(str(weights), framework="pt") as f:
        names = set(f.keys())  # noqa: SIM118 (safe_open is not a mapping)
    assert not {
        n for n in names if "pool_" in n or "attention_" in n or n.startswith(checkpoint.EXTRA_PREFIX)
    }
    state = checkpoint.read_state(weights)
    assert training_keys <= set(checkpoint.training_state(state)) == set(state["ranks"][0]["training"])
    assert pixforge.load(tmp_path).step == 3


def test_each_rank_gets_its_own_training_state_or_rank_zeros() -> None:
    """Ranks keep only what differs from rank 0's; a rank the checkpoint has no entry for starts from rank 0's."""
    a, b, c = torch.zeros(2), torch.ones(2), torch.full((2,), 2.0)
    state = {
        "ranks": [
            {"keys": ["pool", "cache"], "training": {"pool": a, "cache": c}},
            {"keys": ["pool", "cache"], "training": {"pool": b}},
        ]
    }
    assert checkpoint.training_state(state, 0) == {"pool": a, "cache": c}
    assert checkpoint.training_state(state, 1) == {"pool": b, "cache": c}
    assert checkpoint.training_state(state, 2) == {"pool": a, "cache": c}
    assert checkpoint.training_state({"step": 1}) == {}
