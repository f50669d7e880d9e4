from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixforge.data import synth
from pixforge.data.palette import FACADE_COLORS, colors_to_ids
from pixforge.errors import PixforgeError

SIZE = 32


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.synthesize(out, count=10, size=SIZE, seed=3)
    return out


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    synth.synthesize(tmp_path / "a", count=4, size=SIZE, seed=7)
    synth.synthesize(tmp_path / "b", count=4, size=SIZE, seed=7)
    synth.synthesize(tmp_path / "c", count=4, size=SIZE, seed=8)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert len(a) > 0 and a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("aligned/"))


def test_scene_does_not_depend_on_count(tmp_path):
    synth.synthesize(tmp_path / "few", count=3, size=SIZE, seed=2)
    synth.synthesize(tmp_path / "many", count=6, size=SIZE, seed=2)
    name = "aligned/train/00000.png"
    assert (tmp_path / "few" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()


def test_counts_per_split_in_every_layout(dataset):
    expected = {"train": 8, "val": 1, "test": 1}
    for split, n in expected.items():
        assert len(list((dataset / "aligned" / split).glob("*.png"))) == n
        assert len(list((dataset / "derain" / split).glob("*.png"))) == n
        for sub in ("images", "labels", "instances"):
            assert len(list((dataset / "labeled" / split / sub).glob("*.png"))) == n
    unaligned = {d: len(list((dataset / "unaligned" / d).glob("*.png"))) for d in ("trainA", "trainB")}
    assert unaligned == {"trainA": 4, "trainB": 4}
    assert sum(len(list((dataset / "unaligned" / d).glob("*.png"))) for d in ("testA", "testB")) == 2


def test_summary_and_small_counts(tmp_path):
    summary = synth.synthesize(tmp_path, count=3, size=16, seed=0)
    assert summary["aligned/train"] == summary["aligned/val"] == summary["aligned/test"] == 1
    assert summary["labeled/val"] == summary["derain/test"] == 1
    assert synth.split_names(1) == ["train"]
    assert synth.split_names(200).count("val") == synth.split_names(200).count("test") == 20


@pytest.mark.parametrize(("kwargs", "option"), [({"count": 0}, "--count"), ({"size": 8}, "--size")])
def test_bad_options_are_rejected(tmp_path, kwargs, option):
    with pytest.raises(PixforgeError, match=option):
        synth.synthesize(tmp_path, **kwargs)


def test_labels_in_range_and_all_classes_present_over_40_scenes():
    seen = set()
    for i in range(40):
        labels = synth.render_scene(0, i, 64).labels
        assert labels.min() >= 1 and labels.max() <= 12
        seen |= set(np.unique(labels).tolist())
    assert seen == set(range(1, 13))


def test_aligned_b_is_exact_palette_and_decodes_to_labeled_ids(dataset):
    palette = {tuple(c) for c in FACADE_COLORS.tolist()}
    for path in sorted((dataset / "aligned" / "train").glob("*.png"))[:4]:
        pair = _read(path)
        assert pair.shape == (SIZE, 2 * SIZE, 3)
        photo, colours = pair[:, :SIZE], pair[:, SIZE:]
        assert {tuple(c) for c in colours.reshape(-1, 3).tolist()} <= palette
        labels = _read(dataset / "labeled" / "train" / "labels" / path.name)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(colors_to_ids(colours), labels)
        np.testing.assert_array_equal(photo, _read(dataset / "labeled" / "train" / "images" / path.name))


def test_instance_maps_are_consistent_with_labels(dataset):
    for path in sorted((dataset / "labeled" / "train" / "instances").glob("*.png")):
        instances = _read(path).astype(np.int64)
        labels = _read(dataset / "labeled" / "train" / "labels" / path.name)
        things = 0
        for inst in np.unique(instances):
            cls = np.unique(labels[instances == inst])
            assert len(cls) == 1
            if inst >= 1000:
                things += 1
                assert inst // 1000 == cls[0] and cls[0] not in synth.STUFF_CLASSES
            else:
                assert inst == cls[0] and cls[0] in synth.STUFF_CLASSES
        assert things >= 2


def test_instances_of_one_class_get_different_materials():
    scene_seen = 0
    for i in range(4):
        rng = np.random.default_rng([0, i])
        parts = synth.layout(rng)
        part_map, _ = synth.rasterize(parts, 64)
        base = synth.albedo(parts, part_map, rng)
        scene = synth.render_scene(0, i, 64)
        windows = [k for k in np.unique(scene.instances) if k // 1000 == synth.WINDOW]
        if len(windows) < 2:
            continue
        scene_seen += 1
        unlit = np.array([base[scene.instances == k].mean(axis=0) * 255 for k in windows])
        lit = np.array([scene.photo[scene.instances == k].mean(axis=0) for k in windows])
        assert np.ptp(unlit, axis=0).max() > 10
        assert np.ptp(lit, axis=0).max() > 10
    assert scene_seen >= 3


def test_derain_pairs_rainy_over_the_clean_aligned_photo(dataset):
    for path in sorted((dataset / "derain" / "train").glob("*.png"))[:3]:
        pair = _read(path).astype(int)
        rainy, clean = pair[:, :SIZE], pair[:, SIZE:]
        np.testing.assert_array_equal(clean, _read(dataset / "aligned" / "train" / path.name)[:, :SIZE])
        assert np.abs(rainy - clean).mean() > 2


def test_unaligned_domains_hold_different_scenes_and_differ_in_brightness(dataset):
    day = sorted((dataset / "unaligned" / "trainA").glob("*.png"))
    dusk = sorted((dataset / "unaligned" / "trainB").glob("*.png"))
    assert not {p.name for p in day} & {p.name for p in dusk}
    for p in day:
        np.testing.assert_array_equal(_read(p), _read(dataset / "labeled" / "train" / "images" / p.name))
    mean_day = np.mean([_read(p).mean() for p in day])
    mean_dusk = np.mean([_read(p).mean() for p in dusk])
    assert mean_day > mean_dusk + 30


def test_renders_at_256_pixels():
    scene = synth.render_scene(1, 0, 256)
    assert scene.photo.shape == scene.dusk.shape == scene.rainy.shape == (256, 256, 3)
    assert scene.labels.shape == scene.instances.shape == (256, 256)
    assert set(np.unique(scene.labels).tolist()) >= {synth.BACKGROUND, synth.FACADE, synth.WINDOW}
