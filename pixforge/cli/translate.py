"""``pixforge translate``, ``info`` and ``export``: using a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image

from pixforge.api import Item, dataset_items, viewable
from pixforge.cli._base import ATTENTION_MAPS, REGION_MAPS, cli
from pixforge.errors import PixforgeError


def _inputs(paths: tuple[Path, ...], translator: Any, split: str, instances: Path | None) -> list[Item]:
    """Every input file, plain folder of images, or dataset root (read at ``split``, with targets)."""
    from pixforge.data import formats

    items: list[Item] = []
    for path in paths:
        if not path.exists():
            raise PixforgeError(f"input not found: {path}")
        if path.is_dir() and formats.is_dataset_root(path):
            items.extend(dataset_items(path, translator, split))
            continue
        files = formats.list_images(path) if path.is_dir() else [path]
        if not files:
            raise PixforgeError(f"{path}: no images to translate")
        items.extend(Item(f.stem, formats.read_image(f, mode=""), path=f) for f in files)
    if instances is not None:
        for item in items:
            item.instance = formats.read_image(_match_stem(instances, item.name), mode="")
    return items


def _match_stem(folder: Path, stem: str) -> Path:
    from pixforge.data import formats

    if folder.is_file():
        return folder
    matches = [f for f in formats.list_images(folder) if f.stem == stem]
    if not matches:
        raise PixforgeError(f"--instances {folder}: no instance map named {stem}.*")
    return matches[0]


def _l1(output: Image.Image, target: Image.Image) -> float:
    """Mean |output - target| on the [-1, 1] scale the training L1 uses."""
    a = np.asarray(output.convert("RGB"), dtype=np.float32)
    b = np.asarray(target.convert("RGB").resize(output.size, Image.BICUBIC), dtype=np.float32)
    return float(np.abs(a - b).mean() / 127.5)


def _styles(cluster: int | None, random_styles: int | None) -> list[tuple[str, dict[str, int]]]:
    """(suffix, options) per output of one input: one plain output, a chosen cluster, or N random styles."""
    if cluster is not None and random_styles is not None:
        raise PixforgeError("--cluster and --random-styles: choose one")
    if random_styles is not None:
        if random_styles < 1:
            raise PixforgeError("--random-styles must be at least 1")
        return [(f"_style{k}", {"style_seed": k}) for k in range(random_styles)]
    return [("", {"cluster": cluster})] if cluster is not None else [("", {})]


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the outputs.")
@click.option(
    "--split", default="test", show_default=True, help="Split to read when an input is a dataset root."
)
@click.option("--html", "make_html", is_flag=True, help="Also write index.html: input | output | target.")
@click.option(
    "--instances", type=click.Path(path_type=Path), help="Instance maps matched by stem (pix2pixHD)."
)
@click.option("--cluster", type=int, help="Style: this feature cluster for every instance (pix2pixHD).")
@click.option("--random-styles", type=int, help="Write N outputs per input with random styles (pix2pixHD).")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), help="Which generator (CycleGAN).")
@click.option("--show-region", is_flag=True, help="Also write DRPAN's score map and proposed region.")
@click.option("--show-attention", is_flag=True, help="Also write GuideGAN's attention maps.")
@click.option(
    "--size",
    "size_mode",
    default="native",
    show_default=True,
    help="Where the model runs: native (the input's size), crop (the training crop) or N (short side N px).",
)
@click.option("--tile", type=int, help="Translate in overlapping tiles of this many pixels (large images).")
@click.option(
    "--overlap", default=64, show_default=True, help="With --tile: pixels shared by neighbouring tiles."
)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def translate(
    run: Path,
    inputs: tuple[Path, ...],
    out: Path,
    split: str,
    make_html: bool,
    instances: Path | None,
    cluster: int | None,
    random_styles: int | None,
    direction: str | None,
    show_region: bool,
    show_attention: bool,
    size_mode: str,
    tile: int | None,
    overlap: int,
    device: str,
) -> None:
    """Translate images (files, folders, or a dataset's --split) with the model in RUN (or an exported .onnx).

    Under torchrun every process translates its share of the inputs (each image once) and rank 0 writes the
    gallery and the summary.
    """
    from pixforge import api, distributed, pages
    from pixforge.devices import pick_device

    sizing = {"size": api.size_choice(size_mode), "tile": tile, "overlap": overlap}
    with distributed.session("gloo") as world:
        if run.suffix == ".onnx":
            from pixforge.export import OnnxTranslator

            _onnx_refuses_maps(run, show_region, show_attention)
            translator: Any = OnnxTranslator(run)
        else:
            translator = api.load(run, device=str(distributed.local_device(pick_device(device))))
        items = _inputs(inputs, translator, split, instances)
        shown = (REGION_MAPS if show_region else set()) | (ATTENTION_MAPS if show_attention else set())
        out.mkdir(parents=True, exist_ok=True)
        mine = []
        for index, item in distributed.shard(list(enumerate(items))):
            for suffix, options in _styles(cluster, random_styles):
                if direction is not None:
                    options["direction"] = direction
                name = item.name + suffix
                try:
                    maps = translator.translate(item.source, item.instance, **sizing, **options)
                except PixforgeError as exc:
                    raise PixforgeError(f"{item.path or item.name}: {exc}") from exc
                maps["output"].save(out / f"{name}.png")
                for key in shown & set(maps):
                    maps[key].save(out / f"{name}_{key}.png")
                row = _row(out, name, item, maps["output"], translator, make_html)
                mine.append((index, row))
        gathered = sorted(
            (x for part in distributed.all_gather_objects(mine) for x in part), key=lambda x: x[0]
        )
        if not world.main:
            return
    rows = [row for _, row in gathered]
    l1s = [r["l1"] for r in rows if r["l1"] is not None]
    mean_l1 = float(np.mean(l1s)) if l1s else None
    if make_html:
        run_dir = run if (run / "checkpoints").is_dir() else None
        gallery = {
            "title": f"{translator.config.method} step {translator.step}: {out.name}",
            "rows": rows,
            "mean_l1": mean_l1,
        }
        click.echo(f"wrote {pages.write_gallery(out, gallery, run_dir)}")
    summary = f"; mean L1 {mean_l1:.4f}" if mean_l1 is not None else ""
    click.echo(f"translated {len(rows)} images into {out}{summary}")


def _onnx_refuses_maps(run: Path, show_region: bool, show_attention: bool) -> None:
    """An ONNX export holds the generator alone: the discriminator's region and attention maps need the run."""
    for flag, given in (("--show-region", show_region), ("--show-attention", show_attention)):
        if given:
            raise PixforgeError(
                f"option {flag}: {run} holds the generator only; translate with the run directory to see its maps"
            )


def _row(
    out: Path, name: str, item: Item, output: Image.Image, translator: Any, make_html: bool
) -> dict[str, Any]:
    """A gallery row; with ``make_html`` the input and target are saved beside the output."""
    row: dict[str, Any] = {"name": name, "output": f"{name}.png", "input": None, "target": None, "l1": None}
    if item.target is not None:
        row["l1"] = _l1(output, item.target)
    if make_html:
        shown = viewable(item.source, translator.label_nc, translator.colorization)
        for key, image in (("input", shown), ("target", item.target)):
            if image is not None:
                (out / f"{key}s").mkdir(exist_ok=True)
                image.convert("RGB").save(out / f"{key}s" / f"{name}.png")
                row[key] = f"{key}s/{name}.png"
    return row


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
def info(run: Path) -> None:
    """Method, step, config and last losses of a run or checkpoint."""
    from pixforge import checkpoint, pages

    loaded = checkpoint.read(run)
    click.echo(f"method: {loaded.method}\nstep: {loaded.step}\ncheckpoint: {loaded.path}")
    rows = pages.read_metrics(run) if Path(run).is_dir() else []
    if rows:
        click.echo(
            "last losses: " + " ".join(f"{k}={v:.4g}" for k, v in rows[-1].items() if k not in ("time",))
        )
    import yaml

    click.echo("config:\n" + yaml.safe_dump(loaded.config, sort_keys=False))


@cli.command(name="export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The .onnx file to write.")
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx"]))
@click.option(
    "--test-mode",
    type=click.Choice(["eval", "paper"]),
    help="pix2pix-style batch norm: running statistics (eval) or the paper's batch statistics (default: the run's).",
)
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), help="Which generator (CycleGAN).")
@click.option("--opset", type=int, help="ONNX opset (default: the exporter's).")
@click.option(
    "--fixed-size", help="WxH: a graph for this input size only (default: dynamic sizes and batch)."
)
def export_cmd(
    run: Path,
    out: Path,
    fmt: str,
    test_mode: str | None,
    direction: str | None,
    opset: int | None,
    fixed_size: str | None,
) -> None:
    """Export RUN's generator to ONNX, checked against torch with onnxruntime."""
    from pixforge.export import export_run, parse_size

    size = parse_size(fixed_size) if fixed_size else None
    result = export_run(run, out, test_mode=test_mode, direction=direction, opset=opset, fixed_size=size)
    click.echo(f"wrote {result.path} ({result.method}, inputs {', '.join(result.inputs)}); {result.check}")
