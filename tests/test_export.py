"""ONNX export: onnxruntime against pixforge's own translation, per method, at two sizes through one graph."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.data.dataset import one_hot
from pixforge.errors import PixforgeError
from pixforge.export import OnnxTranslator, export_run, read_metadata, session

PARITY = 1e-4

#: name -> (method, data layout, overrides) of the tiny runs exported below
RUNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "unet_eval": ("pix2pix", "aligned", {"test_mode": "eval"}),
    # 64 px: the smallest U-Net with a dropout block (ngf*8 -> ngf*8 outside the innermost)
    "unet_paper": ("pix2pix", "aligned", {"test_mode": "paper", "crop_size": 64, "load_size": 72}),
    "resnet": ("pix2pix", "aligned", {"netG": "resnet_6blocks", "test_mode": "eval"}),
    "resnet_native": (
        "pix2pix",
        "aligned",
        {"netG": "resnet_6blocks", "test_mode": "eval", "preprocess": "none", "flip": "false"},
    ),
    "cyclegan": ("cyclegan", "unaligned", {}),
    "guidegan": ("guidegan", "aligned", {"test_mode": "eval"}),
    "drpan": ("drpan", "aligned", {"test_mode": "eval"}),
    "unet_labels": ("pix2pix", "labeled", {"test_mode": "eval"}),
    "hd_global": ("pix2pixhd", "labeled", {}),
    "hd_enhancer": ("pix2pixhd", "labeled", {"n_local_enhancers": 1}),
}


@pytest.fixture(scope="module")
def runs(train_tiny: Callable[..., dict[str, Path]]) -> dict[str, Path]:
    return train_tiny("export", RUNS)


def image_inputs(multiple: int) -> list[torch.Tensor]:
    """Two sizes, both multiples of the generator's: square at batch 1, and wider than tall at batch 2."""
    gen = torch.Generator().manual_seed(0)
    small, large = max(32, multiple), max(32, multiple) + multiple
    return [
        torch.rand(1, 3, small, small, generator=gen) * 2 - 1,
        torch.rand(2, 3, large, large + multiple, generator=gen) * 2 - 1,
    ]


def reference(translator: pixforge.Translator, batch: dict[str, torch.Tensor], **options: Any) -> np.ndarray:
    """``translate``'s output for every sample alone (pix2pix's paper mode normalises per batch)."""
    n = next(iter(batch.values())).shape[0]
    outs = [
        translator.translate_batch({k: v[i : i + 1] for k, v in batch.items()}, **options)["output"]
        for i in range(n)
    ]
    return torch.cat(outs).numpy()


def no_dropout(translator: pixforge.Translator) -> None:
    """Deterministic translation: dropout layers at p = 0 (the export turns dropout off)."""
    for module in translator.method.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def max_diff(path: Path, feeds: dict[str, torch.Tensor], expected: np.ndarray) -> float:
    got = session(path).run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize("name", ["unet_eval", "unet_paper", "resnet", "guidegan", "drpan"])
def test_image_model_matches_translate_at_two_sizes(runs: dict[str, Path], tmp_path: Path, name: str):
    translator = pixforge.load(runs[name], device="cpu")
    no_dropout(translator)
    result = export_run(runs[name], tmp_path / f"{name}.onnx")
    assert result.inputs == ["image"] and result.max_diff <= PARITY
    for x in image_inputs(translator.method.size_multiple):
        diff = max_diff(result.path, {"image": x}, reference(translator, {"A": x}))
        print(f"parity {name} {tuple(x.shape)}: {diff:.2e}")
        assert diff <= PARITY


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_cyclegan_exports_each_direction(runs: dict[str, Path], tmp_path: Path, direction: str):
    translator = pixforge.load(runs["cyclegan"], device="cpu")
    path = export_run(runs["cyclegan"], tmp_path / "c.onnx", direction=direction).path
    assert read_metadata(path)["direction"] == direction
    for x in image_inputs(translator.method.size_multiple):
        diff = max_diff(path, {"image": x}, reference(translator, {"A": x}, direction=direction))
        print(f"parity cyclegan {direction} {tuple(x.shape)}: {diff:.2e}")
        assert diff <= PARITY
    other = reference(translator, {"A": x}, direction="BtoA" if direction == "AtoB" else "AtoB")
    assert max_diff(path, {"image": x}, other) > 1e-3


def label_inputs(multiple: int, label_nc: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(label, instance) maps at two sizes: blocks of classes and instances that do not follow the classes."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for n, h, w in ((1, 32, 32), (2, 32 + multiple, 32 + 2 * multiple)):
        label = torch.randint(0, label_nc, (n, 1, h // 4, w // 4), generator=gen)
        label = label.repeat_interleave(4, 2).repeat_interleave(4, 3)
        instance = torch.randint(0, 4, (n, 1, h // 8, w // 8), generator=gen)
        out.append((label, instance.repeat_interleave(8, 2).repeat_interleave(8, 3) * 1000 + label))
    return out


@pytest.mark.parametrize("name", ["hd_global", "hd_enhancer"])
def test_pix2pixhd_with_instances_and_clusters_matches_translate(
    runs: dict[str, Path], tmp_path: Path, name: str
):
    translator = pixforge.load(runs[name], device="cpu")
    result = export_run(runs[name], tmp_path / f"{name}.onnx")
    assert result.inputs == ["label", "instance", "cluster"]
    label_nc = translator.label_nc
    for label, instance in label_inputs(translator.method.size_multiple, label_nc):
        batch = {"A": one_hot(label, label_nc), "label": label, "instance": instance}
        for cluster in (0, 3):
            clusters = torch.full_like(label, cluster)
            feeds = {"label": label, "instance": instance, "cluster": clusters}
            diff = max_diff(result.path, feeds, reference(translator, batch, cluster=cluster))
            print(f"parity {name} cluster {cluster} {tuple(label.shape)}: {diff:.2e}")
            assert diff <= PARITY


def test_label_input_is_one_hot_inside_the_graph(runs: dict[str, Path], tmp_path: Path):
    translator = pixforge.load(runs["unet_labels"], device="cpu")
    result = export_run(runs["unet_labels"], tmp_path / "labels.onnx")
    assert result.inputs == ["label"]
    for label, _ in label_inputs(translator.method.size_multiple, translator.label_nc):
        expected = reference(translator, {"A": one_hot(label, translator.label_nc)})
        diff = max_diff(result.path, {"label": label}, expected)
        print(f"parity unet_labels {tuple(label.shape)}: {diff:.2e}")
        assert diff <= PARITY


def test_paper_mode_is_per_sample_norm_without_dropout(runs: dict[str, Path], tmp_path: Path, caplog):
    translator = pixforge.load(runs["unet_paper"], device="cpu")
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        path = export_run(runs["unet_paper"], tmp_path / "p.onnx").path
    assert "dropout off" in caplog.text
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert "InstanceNormalization" in ops and "BatchNormalization" not in ops and "Dropout" not in ops
    x = image_inputs(translator.method.size_multiple)[1]
    no_dropout(translator)
    together = translator.translate_batch({"A": x})["output"].numpy()
    assert max_diff(path, {"image": x}, reference(translator, {"A": x})) <= PARITY
    assert max_diff(path, {"image": x}, together) > 1e-3  # torch at batch 2 mixes the samples' statistics


def test_metadata_and_fixed_size(runs: dict[str, Path], tmp_path: Path):
    path = export_run(runs["resnet"], tmp_path / "fixed.onnx", fixed_size=(48, 32), opset=17).path
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [17]
    meta = read_metadata(path)
    assert meta["method"] == "pix2pix" and meta["version"] == pixforge.__version__
    assert '"netG": "resnet_6blocks"' in meta["config"] and '"fixed_size": [48, 32]' in meta["inputs"]
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 32, 48]
    with pytest.raises(PixforgeError, match="multiples of 4"):
        export_run(runs["resnet"], tmp_path / "bad.onnx", fixed_size=(30, 32))


def test_translate_cli_runs_an_onnx_file_like_the_run(
    runs: dict[str, Path], synth_root: Path, tmp_path: Path
):
    run = runs["hd_global"]
    onnx_file = tmp_path / "hd.onnx"
    main(["export", str(run), "--out", str(onnx_file)])
    data = synth_root / "labeled"
    for source, out in ((run, "torch"), (onnx_file, "onnx")):
        main(
            [
                "translate",
                str(source),
                str(data),
                "--split",
                "test",
                "--cluster",
                "2",
                "--out",
                str(tmp_path / out),
            ]
        )
    names = sorted(p.name for p in (tmp_path / "torch").glob("*.png"))
    assert names and names == sorted(p.name for p in (tmp_path / "onnx").glob("*.png"))
    for name in names:
        a = np.asarray(Image.open(tmp_path / "torch" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "onnx" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1
    with pytest.raises(PixforgeError, match="no option explain"):
        OnnxTranslator(onnx_file).translate(Image.new("L", (32, 32)), explain="region")


def test_onnx_translator_feeds_the_graph_the_input_size(runs: dict[str, Path], tmp_path: Path):
    """A model that runs at the input's own size: the graph takes a size off the multiple as it is."""
    path = export_run(runs["resnet_native"], tmp_path / "native.onnx").path
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (22, 30, 3), dtype=np.uint8))
    translator = pixforge.load(runs["resnet_native"], device="cpu")
    onnx_translator = OnnxTranslator(path)
    assert np.array_equal(onnx_translator.feeds(image, None, {})["image"], translator.prepare(image).numpy())
    ours = np.asarray(onnx_translator(image), dtype=np.int16)
    theirs = np.asarray(translator(image), dtype=np.int16)
    assert ours.shape == (22, 30, 3) and np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--fixed-size", "wide"], "--fixed-size"),
        (["--direction", "BtoA"], "one direction"),
    ],
)
def test_export_cli_bad_options_exit_2_with_one_line(
    runs: dict[str, Path], tmp_path: Path, capsys, args, words
):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(runs["resnet"]), "--out", str(tmp_path / "x.onnx"), *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and words in err and "\n" not in err


def test_translate_refuses_a_file_that_is_not_an_export(tmp_path: Path, capsys):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx at all")
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", str(bogus), str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "not a readable ONNX model" in err and "\n" not in err


def off_multiple_sizes(multiple: int, unet: bool) -> list[tuple[int, int, int]]:
    """(batch, height, width) off the generator's multiple: a wide batch of 2, and one more at batch 1. For a
    U-Net (which takes any padded size) a strip half the multiple high, so that the padding is as long as the
    side and falls back from reflection to replication; for the others (whose reflection-padded layers need a
    few pixels at the bottleneck) a size just past a multiple."""
    side = max(32, 2 * multiple)
    second = (1, multiple // 2, side + 1) if unet else (1, side + 1, side + 2 * multiple - 1)
    return [(2, side + 3, side + multiple + 5), second]


def off_multiple_feeds(
    names: list[str], runs_translator: pixforge.Translator
) -> list[dict[str, torch.Tensor]]:
    """Random graph inputs at :func:`off_multiple_sizes`: images, label blocks, instance blocks, cluster maps."""
    gen = torch.Generator().manual_seed(2)
    label_nc = max(runs_translator.label_nc, 1)
    out = []
    unet = str(getattr(runs_translator.config.model, "netG", "")).startswith("unet")
    for n, h, w in off_multiple_sizes(runs_translator.method.size_multiple, unet):
        label = torch.randint(0, label_nc, (n, 1, h // 4 + 1, w // 4 + 1), generator=gen)
        label = label.repeat_interleave(4, 2).repeat_interleave(4, 3)[..., :h, :w]
        instance = torch.randint(0, 3, (n, 1, h // 8 + 1, w // 8 + 1), generator=gen)
        instance = instance.repeat_interleave(8, 2).repeat_interleave(8, 3)[..., :h, :w] * 1000 + label
        given = {
            "image": torch.rand(n, 3, h, w, generator=gen) * 2 - 1,
            "label": label,
            "instance": instance,
            "cluster": torch.arange(n).view(n, 1, 1, 1).mul(3).expand(n, 1, h, w).contiguous(),
        }
        out.append({k: given[k] for k in names})
    return out


def torch_batch(feeds: dict[str, torch.Tensor], label_nc: int) -> dict[str, torch.Tensor]:
    """What ``translate_batch`` takes for the graph's inputs."""
    if "label" not in feeds:
        return {"A": feeds["image"]}
    batch = {"A": one_hot(feeds["label"], label_nc), "label": feeds["label"]}
    return {**batch, "instance": feeds["instance"]} if "instance" in feeds else batch


OFF_MULTIPLE = {
    "unet_eval": {},
    "unet_paper": {},
    "resnet": {},
    "cyclegan": {"direction": "AtoB"},
    "guidegan": {},
    "drpan": {},
    "unet_labels": {},
    "hd_global": {},
    "hd_enhancer": {},
}


@pytest.mark.parametrize("name", list(OFF_MULTIPLE))
def test_every_graph_takes_any_size_and_matches_translate(runs: dict[str, Path], tmp_path: Path, name: str):
    """The raw graph pads inside to the multiple and crops back: any H x W gives an H x W output equal to
    ``translate_batch`` (which pads the same way), for every method, with instances and clusters."""
    translator = pixforge.load(runs[name], device="cpu")
    no_dropout(translator)
    result = export_run(runs[name], tmp_path / f"{name}.onnx")
    for feeds in off_multiple_feeds(result.inputs, translator):
        batch = torch_batch(feeds, translator.label_nc)
        n = next(iter(feeds.values())).shape[0]
        expected = []
        for i in range(n):
            options = dict(OFF_MULTIPLE[name])
            if "cluster" in feeds:
                options["cluster"] = int(feeds["cluster"][i, 0, 0, 0])
            expected.append(reference(translator, {k: v[i : i + 1] for k, v in batch.items()}, **options))
        diff = max_diff(result.path, feeds, np.concatenate(expected))
        print(f"parity {name} off the multiple {tuple(next(iter(feeds.values())).shape)}: {diff:.2e}")
        assert diff <= PARITY


def grey_levels(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def hd_scene(width: int, height: int, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """A label map (ids 0..12 in 10 px blocks) and an instance map of several instances per class."""
    rng = np.random.default_rng(seed)
    label = (
        rng.integers(0, 13, (height // 10 + 1, width // 10 + 1)).repeat(10, 0).repeat(10, 1)[:height, :width]
    )
    instance = rng.integers(0, 3, label.shape) * 1000 + label
    return Image.fromarray(label.astype(np.uint8)), Image.fromarray(instance.astype(np.int32))


#: onnxruntime and torch agree to PARITY on the [-1, 1] scale; 8-bit levels are 2/255 apart, so a difference
#: of PARITY can move a pixel's rounding by at most one level
ONE_LEVEL = 1


@pytest.fixture(scope="module")
def hd_native(
    hd_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pixforge.Translator, OnnxTranslator]:
    """pix2pixHD trained with ``preprocess=none`` (runs at the input's size), in torch and exported."""
    path = export_run(hd_run, tmp_path_factory.mktemp("hd_native") / "hd.onnx").path
    return pixforge.load(hd_run, device="cpu"), OnnxTranslator(path)


@pytest.mark.parametrize("size", [(70, 50), (100, 60)])
def test_pix2pixhd_onnx_equals_torch_off_the_multiple(hd_native, size: tuple[int, int]):
    torch_model, onnx_model = hd_native
    label, instance = hd_scene(*size)
    for options in ({"cluster": 1}, {"style_seed": 4}):
        ours, theirs = onnx_model(label, instance, **options), torch_model(label, instance, **options)
        print(f"pix2pixhd {size} {options}: {grey_levels(ours, theirs)} grey levels")
        assert ours.size == size and grey_levels(ours, theirs) <= ONE_LEVEL


def test_the_onnx_default_style_is_the_runs(hd_native):
    """No style option: the run draws styles with ``style_seed=0``; the ONNX path draws the same."""
    torch_model, onnx_model = hd_native
    label, instance = hd_scene(64, 48, seed=1)
    assert grey_levels(onnx_model(label, instance), torch_model(label, instance)) <= ONE_LEVEL
    assert grey_levels(onnx_model(label), torch_model(label)) <= ONE_LEVEL


@pytest.mark.parametrize("flag", ["--show-region", "--show-attention"])
def test_explain_maps_from_an_onnx_file_are_refused(runs: dict[str, Path], tmp_path: Path, capsys, flag: str):
    path = export_run(runs["drpan"], tmp_path / "drpan.onnx").path
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", str(path), str(tmp_path / "in.png"), "--out", str(tmp_path / "out"), flag])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and flag in err and "\n" not in err
    assert not (tmp_path / "out" / "in.png").exists()


def absolute_paths(value: Any) -> list[str]:
    """Every string in a JSON value that is an absolute path."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    return [value] if isinstance(value, str) and Path(value).is_absolute() else []


def test_metadata_tells_a_deployer_everything_and_no_machine_path(
    runs: dict[str, Path], hd_run: Path, synth_root: Path, tmp_path: Path
):
    hd = read_metadata(export_run(hd_run, tmp_path / "hd.onnx").path)
    config = json.loads(hd["config"])
    assert config["data"]["root"] == "" and not absolute_paths(config)
    assert not [key for key, value in hd.items() if str(synth_root) in value or str(hd_run) in value]
    spec = json.loads(hd["inputs"])
    label = spec["inputs"]["label"]
    assert label["names"][:3] == ["unlabeled", "background", "facade"] and label["palette"][2] == [0, 48, 255]
    translator = pixforge.load(hd_run, device="cpu")
    counts = {str(c): int(n) for c, n in enumerate(translator.method.centre_counts.tolist()) if n}
    assert spec["inputs"]["cluster"]["clusters_per_class"] == counts
    assert spec["resize"] is None and spec["inputs"]["instance"]["pad"] == label["pad"]
    cropped = json.loads(read_metadata(export_run(runs["resnet"], tmp_path / "r.onnx").path)["inputs"])
    assert cropped["resize"]["size"] == [32, 32] and "bicubic" in cropped["resize"]["rule"]


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deploy_onnx.py"
README = Path(__file__).resolve().parents[1] / "README.md"


def run_without_pixforge(script: Path, *args: str) -> None:
    """Run ``script`` in a fresh interpreter where ``import pixforge`` fails."""
    code = (
        "import runpy, sys; sys.modules['pixforge'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    subprocess.run([sys.executable, "-c", code, str(script), *args], check=True, timeout=120)


def test_the_readme_shows_the_deploy_example_as_it_is():
    text = README.read_text()
    start = text.index("```python\n", text.index("examples/deploy_onnx.py")) + len("```python\n")
    assert text[start : text.index("```", start)] == EXAMPLE.read_text()


def test_the_deploy_example_runs_without_pixforge(runs: dict[str, Path], hd_native, tmp_path: Path):
    """The README's example gives what ``pixforge translate`` gives: an image model at the input's size off the
    multiple, and pix2pixHD from a colour-coded label map with one cluster."""
    photo = Image.fromarray(np.random.default_rng(4).integers(0, 256, (30, 45, 3), dtype=np.uint8))
    photo.save(tmp_path / "photo.png")
    native = export_run(runs["resnet_native"], tmp_path / "native.onnx").path
    run_without_pixforge(EXAMPLE, str(native), str(tmp_path / "photo.png"), str(tmp_path / "out.png"))
    assert grey_levels(Image.open(tmp_path / "out.png"), OnnxTranslator(native)(photo)) <= ONE_LEVEL

    _, onnx_model = hd_native
    label, _ = hd_scene(60, 44, seed=2)
    palette = np.asarray(json.loads(onnx_model.meta["inputs"])["inputs"]["label"]["palette"], dtype=np.uint8)
    Image.fromarray(palette[np.asarray(label)]).save(tmp_path / "scene.png")
    run_without_pixforge(
        EXAMPLE, str(onnx_model.path), str(tmp_path / "scene.png"), str(tmp_path / "hd.png"), "2"
    )
    assert grey_levels(Image.open(tmp_path / "hd.png"), onnx_model(label, cluster=2)) <= ONE_LEVEL


def test_colour_coded_label_maps_in_the_listed_palette_translate_like_ids(hd_native):
    """The palette in the metadata (and ``Translator.palette``) decodes colour-coded label maps, in the library
    and through ONNX."""
    torch_model, onnx_model = hd_native
    label, _ = hd_scene(40, 32, seed=3)
    palette = np.asarray(json.loads(onnx_model.meta["inputs"])["inputs"]["label"]["palette"], dtype=np.uint8)
    assert np.array_equal(palette, torch_model.palette())
    coloured = Image.fromarray(palette[np.asarray(label)])
    for model in (torch_model, onnx_model):
        assert grey_levels(model(coloured, cluster=1), model(label, cluster=1)) == 0
