"""Editing a pix2pixHD scene (labels, instances, styles) and clustering a run's instance features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge import checkpoint
from pixforge.cli import main
from pixforge.data.synth import synthesize
from pixforge.editing import edit
from pixforge.errors import PixforgeError


def test_cluster_command_rewrites_the_checkpoint(hd_run: Path, capsys: pytest.CaptureFixture) -> None:
    translator = pixforge.load(hd_run, device="cpu")
    expected = translator.method.centres.clone()
    translator.method.centres = translator.method.centre_counts = None
    latest = checkpoint.latest_checkpoint(hd_run)
    state = checkpoint.read_state(latest / checkpoint.WEIGHTS)
    checkpoint.save_checkpoint(hd_run, translator.method, translator.config.to_yaml(), 2, state, 3)
    assert "centres" not in checkpoint.read(hd_run).extra
    main(["pix2pixhd", "cluster", str(hd_run), "--device", "cpu"])
    assert "clusters over" in capsys.readouterr().out
    loaded = checkpoint.read(hd_run)
    assert loaded.step == 2 and torch.allclose(loaded.extra["centres"], expected, atol=1e-5)
    assert set(checkpoint.read_state(loaded.path)["optimizers"]) == {"D", "G"}


def test_editing_one_instance_changes_that_instance(hd_run: Path, tmp_path: Path) -> None:
    """Two different clusters for one window change its pixels far more than the rest of a 128 px scene."""
    synthesize(tmp_path, count=1, size=128, seed=3)
    folder = next(p for p in (tmp_path / "labeled").iterdir() if (p / "labels").is_dir())
    name = next((folder / "labels").iterdir()).name
    translator = pixforge.load(hd_run, device="cpu")
    scene = edit(translator, Image.open(folder / "labels" / name), Image.open(folder / "instances" / name))
    windows = [i for i, c in scene.instances().items() if c == 3]
    window = max(windows, key=lambda i: int(scene.mask(i).sum()))
    count = int(translator.method.centre_counts[3])
    centres = translator.method.centres[3, :count]
    a, b = divmod(int(torch.cdist(centres, centres).argmax()), count)
    scene.set_style(window, cluster=a)
    first = scene.render()
    scene.set_style(window, cluster=b)
    second = scene.render()
    change = (first - second).abs().mean(1)[0]
    mask = scene.mask(window)
    assert change[mask].mean() > 3 * change[~mask].mean()
    assert first.shape == (1, 3, 128, 128)


def test_editing_classes_and_regions(hd_run: Path, synth_root: Path) -> None:
    folder = synth_root / "labeled" / "train"
    name = sorted((folder / "labels").iterdir())[0].name
    translator = pixforge.load(hd_run, device="cpu")
    scene = edit(translator, Image.open(folder / "labels" / name), Image.open(folder / "instances" / name))
    window = next(i for i, c in scene.instances().items() if c == 3)
    before = scene.image()
    scene.set_class(window, 7)
    assert scene.instances()[window] == 7
    region = np.zeros((32, 32), dtype=bool)
    region[:6, :6] = True
    new_id = scene.paint(region, 12)
    assert scene.instances()[new_id] == 12 and int(scene.label[0, 0, 0, 0]) == 12
    scene.set_style(new_id, features=(0.9, -0.9, 0.9))
    after = scene.image()
    assert before.size == after.size == (32, 32)
    assert np.abs(np.asarray(before, np.float32) - np.asarray(after, np.float32)).mean() > 0.5
    with pytest.raises(PixforgeError, match="no instance 999"):
        scene.set_style(999, cluster=0)
    with pytest.raises(PixforgeError, match="outside"):
        scene.set_class(window, 40)


def test_a_scene_with_explicit_features_renders_without_clusters(hd_run: Path, synth_root: Path) -> None:
    """Every instance has its own feature vector: no centre is needed, so a model without clusters renders."""
    folder = synth_root / "labeled" / "train"
    name = sorted((folder / "labels").iterdir())[0].name
    translator = pixforge.load(hd_run, device="cpu")
    translator.method.centres = translator.method.centre_counts = None
    scene = edit(translator, Image.open(folder / "labels" / name), Image.open(folder / "instances" / name))
    with pytest.raises(PixforgeError, match="no feature clusters"):
        scene.render()
    for k, instance in enumerate(scene.instances()):
        scene.set_style(instance, features=(k / 10, -0.5, 0.5))
    out = scene.render()
    assert out.shape == (1, 3, 32, 32) and bool(out.isfinite().all())


def test_instances_and_their_majority_class_in_one_pass(hd_run: Path) -> None:
    """Scene.instances() against a per-instance count: many ids, mixed classes, ties to the smaller class."""
    translator = pixforge.load(hd_run, device="cpu")
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 4, (1, 1, 48, 48), generator=g)
    instance = torch.randint(0, 300, (1, 1, 48, 48), generator=g) + 1000
    label[..., 0, :2], instance[..., 0, :2] = torch.tensor([2, 1]), 7  # a tie: classes 1 and 2 once each
    scene = edit(translator, Image.fromarray(label[0, 0].numpy().astype(np.uint8)),
                 Image.fromarray(instance[0, 0].numpy().astype(np.int32)))  # fmt: skip
    expected = {
        int(i): int(torch.bincount(scene.label[scene.instance == i]).argmax())
        for i in torch.unique(scene.instance)
    }
    assert scene.instances() == expected and scene.instances()[7] == 1
