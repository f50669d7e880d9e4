"""ONNX export of a run's generator (``pixforge export``), and :class:`OnnxTranslator`, which runs an exported
file with onnxruntime behind the same interface as :class:`pixforge.api.Translator` (``pixforge translate
MODEL.onnx``).

The graph takes what a user has and gives the output image in [-1, 1] (NCHW float32), with dynamic batch,
height and width (any H x W) unless ``fixed_size`` is given:

- image models (pix2pix, DRPAN, GuideGAN, CycleGAN): ``image`` (N, 3, H, W) float32 in [-1, 1]; models trained
  on label maps take ``label`` (N, 1, H, W) int64 class ids instead, one-hot inside the graph;
- colorization models (``format=colorization``): ``image`` (N, 3, H, W), any photo in [-1, 1], and the output
  is the colour photo (N, 3, H, W), not ab: the graph takes the photo's lightness L (CIE Lab, in the graph),
  resizes the photo to the training size itself when the model was trained on resized crops (so its spec has
  no resize rule), predicts ab, upsamples it and joins it with the input's own L (:class:`ColorizationGraph`);
- pix2pixHD: ``label`` (N, 1, H, W) int64 class ids, ``instance`` (N, 1, H, W) int64 instance ids (models with
  instance boundaries; pass the label map when there is no instance map), and for models with the feature
  encoder ``cluster`` (N, 1, H, W) int64: each pixel of class c gets centre ``cluster % K_c`` of its class
  (one value everywhere: ``generate(cluster=...)``; one value per instance: per-instance styles, which is how
  :class:`OnnxTranslator` gives ``style_seed``'s styles, drawn outside the graph as ``generate`` draws them);
  the one-hot labels, the boundary map and the cluster centres are in the graph.

Padding is inside the graph (:class:`Padded`): every spatial input is padded at the bottom/right to the
generator's multiple by the one rule ``translate_batch`` uses (:func:`pixforge.data.transforms.pad_to_multiple`:
reflection, replication where the padding is not shorter than a side), and the output is cropped back, so any
H x W gives H x W. The metadata (ONNX ``metadata_props``) holds what a deployer needs: ``pixforge.inputs``
(each input's meaning; the resize rule: models trained with ``resize_and_crop`` run at their crop size, as
``translate`` runs them; class names and palette; clusters per class), ``pixforge.method``,
``pixforge.config`` (the run's resolved config, JSON, without machine paths: ``data.root`` and every absolute
path are emptied), ``pixforge.step``, ``pixforge.test_mode``, ``pixforge.direction`` and ``pixforge.version``.
README.md "Deploy without pixforge" runs a file with onnxruntime, numpy and PIL alone.

What is folded into the graph:

- GuideGAN: the test-time all-ones attention map (§4), so G sees x' = 2x (RHP) or concat(x, 1) (alpha);
- pix2pix's ``test_mode=paper`` (batch norm with the test batch's statistics, dropout on; pix2pix §3.1): at
  batch 1, batch norm with batch statistics *is* instance normalisation with batch norm's affine parameters,
  so the graph normalises each sample over H x W with those parameters (:class:`SampleNorm`), and a batch of N
  gives what N single translations give. Dropout is turned off in the export (with a notice): the graph is
  deterministic, so it equals ``translate`` with the dropout layers at p = 0.

The exporter is torch.onnx's TorchScript-based one (``dynamo=False``): the dynamo exporter specialises every
size that reaches 1 px in the example input (a U-Net's 1 x 1 bottleneck), so it cannot give one graph for all
sizes. Every export is checked with onnxruntime against torch at two sizes, one of them off the multiple
(:attr:`ExportResult.max_diff`).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

import pixforge
from pixforge.api import (
    DEFAULT_OVERLAP,
    Size,
    Translator,
    at_size,
    join_lightness,
    label_map_ids,
    load,
    model_size,
    resize_inputs,
    size_choice,
    translate_tiled,
)
from pixforge.config import Config, from_dict
from pixforge.data import color
from pixforge.data.images import decode, upright
from pixforge.data.palette import dataset_classes
from pixforge.data.transforms import to_image, to_tensor
from pixforge.errors import PixforgeError
from pixforge.methods import get_method
from pixforge.methods.base import Method
from pixforge.methods.cyclegan import CycleGAN
from pixforge.methods.pix2pixhd import Pix2PixHD, style_clusters

log = logging.getLogger("pixforge")

#: the largest difference an export may show against torch on the [-1, 1] scale
CHECK_TOLERANCE = 1e-4
META = "pixforge."


class SampleNorm(nn.InstanceNorm2d):
    """Batch norm with batch statistics, computed as if each sample ran alone (pix2pix's paper test mode).

    At batch 1, batch norm with the batch's statistics normalises each channel over H x W, which is instance
    normalisation with batch norm's affine parameters; this module is that, for any batch size.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__(bn.num_features, eps=bn.eps, affine=True, track_running_stats=False)
        self.weight.data.copy_(bn.weight.data)
        self.bias.data.copy_(bn.bias.data)
        self.to(bn.weight.device)


def per_sample_norms(method: nn.Module) -> int:
    """In a method that runs in the paper's test mode (networks in train mode at inference), replace every
    batch norm by :class:`SampleNorm`, so that a batch of N translates each sample as it would alone.
    Returns the number of layers replaced (0 when the method normalises with running statistics)."""
    if not getattr(method, "inference_train_mode", lambda: False)():
        return 0
    return _swap_batch_norms(method)


def _swap_batch_norms(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, SampleNorm(child))
            count += 1
        else:
            count += _swap_batch_norms(child)
    return count


def one_hot_ids(label: Tensor, label_nc: int) -> Tensor:
    """Class ids (N, 1, H, W) as float one-hot channels (N, label_nc, H, W), in ONNX-friendly ops."""
    classes = torch.arange(label_nc, device=label.device).view(1, label_nc, 1, 1)
    return (label == classes).float()


def boundaries(instance: Tensor) -> Tensor:
    """pix2pixHD's boundary map (:func:`pixforge.methods.pix2pixhd.boundary_map`: 1 where an id differs from a
    4-neighbour) without in-place updates, which the ONNX exporter cannot take."""
    vertical = (instance[..., 1:, :] != instance[..., :-1, :]).float()
    horizontal = (instance[..., :, 1:] != instance[..., :, :-1]).float()
    edges = (
        F.pad(vertical, (0, 0, 1, 0))
        + F.pad(vertical, (0, 0, 0, 1))
        + F.pad(horizontal, (1, 0, 0, 0))
        + F.pad(horizontal, (0, 1, 0, 0))
    )
    return (edges > 0).float()


def pad_indices(size: Tensor, target: Tensor, reflect: Tensor) -> Tensor:
    """Source rows (or columns) of a side of ``size`` padded at its end to ``target``: mirrored without the
    edge (reflection) when ``reflect``, else the edge repeated (replication). All sizes are 0-d tensors, so
    that the ONNX graph computes them from its input's shape."""
    index = torch.arange(target)
    mirrored = torch.where(index < size, index, 2 * (size - 1) - index)
    return torch.where(reflect, mirrored, torch.minimum(index, size - 1))


def pad_like_translate(maps: list[Tensor], multiple: int) -> tuple[list[Tensor], Tensor, Tensor]:
    """Pad (N, C, H, W) maps at the bottom/right to multiples of ``multiple`` as ``translate`` does
    (:func:`pixforge.data.transforms.pad_to_multiple`: reflection, or replication where the padding is not
    shorter than a side), with gathers whose sizes follow the input's shape. Returns the maps, H and W."""
    shape = torch._shape_as_tensor(maps[0])
    height, width = shape[2], shape[3]
    pad_h, pad_w = (multiple - height % multiple) % multiple, (multiple - width % multiple) % multiple
    reflect = (pad_h < height) & (pad_w < width)
    rows = pad_indices(height, height + pad_h, reflect)
    cols = pad_indices(width, width + pad_w, reflect)
    return [m.index_select(2, rows).index_select(3, cols) for m in maps], height, width


class Padded(nn.Module):
    """A graph that takes any H x W: its spatial inputs are padded inside to the generator's multiple (as
    ``translate_batch`` pads them) and the output is cropped back to H x W."""

    def __init__(self, graph: nn.Module, multiple: int) -> None:
        super().__init__()
        self.graph = graph
        self.multiple = multiple

    def forward(self, *inputs: Tensor) -> Tensor:
        padded, height, width = pad_like_translate(list(inputs), self.multiple)
        out = self.graph(*padded)
        return out.index_select(2, torch.arange(height)).index_select(3, torch.arange(width))


class ImageGraph(nn.Module):
    """The exported graph of an image method: ``method.generate`` on ``image`` (or one-hot ``label``)."""

    def __init__(self, method: Method, options: dict[str, Any]) -> None:
        super().__init__()
        self.method = method
        self.options = options

    def forward(self, x: Tensor) -> Tensor:
        if self.method.info.label_nc:
            x = one_hot_ids(x, self.method.info.label_nc)
        return self.method.generate({"A": x}, **self.options)


class ColorizationGraph(nn.Module):
    """A colorization model's graph: photo (N, 3, H, W) in [-1, 1] -> colour photo with the photo's own L.

    As :meth:`pixforge.api.Translator.translate`: the photo is resized to ``size`` (H, W) when given (the
    training crop of a resize_and_crop model; bicubic, here torch's rather than PIL's), converted to L for the
    generator (``inner``, padded inside), and the predicted ab is upsampled to the input's size and joined with
    the input's L.
    """

    def __init__(self, inner: nn.Module, size: tuple[int, int] | None) -> None:
        super().__init__()
        self.inner = inner
        self.size = size

    def forward(self, image: Tensor) -> Tensor:
        light = color.lightness(image)
        if self.size is None:
            return join_lightness(light, self.inner(light))
        small = F.interpolate(image, size=self.size, mode="bicubic", align_corners=False)
        ab = self.inner(color.lightness(small.clamp(-1, 1)))
        ab = F.interpolate(ab, size=image.shape[-2:], mode="bicubic", align_corners=False)
        return color.l_ab_to_photo(light, ab)


class HDGraph(nn.Module):
    """The exported graph of pix2pixHD: labels (+ instances) (+ a cluster per sample) -> photo (§3.3-3.4)."""

    def __init__(self, method: Pix2PixHD) -> None:
        super().__init__()
        self.method = method
        self.label_nc = method.info.label_nc
        self.encoder = "E" in method.nets
        if self.encoder:
            if method.centres is None or method.centre_counts is None:
                raise PixforgeError(
                    "export: this pix2pixhd model has no feature clusters yet; run `pixforge pix2pixhd cluster RUN`"
                )
            self.register_buffer("centres", method.centres.float().clone())
            self.register_buffer("counts", method.centre_counts.long().clone())

    def inputs(self) -> list[str]:
        names = ["label" if self.label_nc else "image"]
        if self.method.use_boundary:
            names.append("instance")
        if self.encoder:
            names.append("cluster")
        return names

    def forward(self, *args: Tensor) -> Tensor:
        given = dict(zip(self.inputs(), args, strict=True))
        if self.label_nc:
            label = given["label"]
            batch = {"A": one_hot_ids(label, self.label_nc), "label": label}
        else:
            batch = {"A": given["image"]}
            label = torch.zeros_like(batch["A"][:, :1], dtype=torch.long)
        cond = batch["A"]
        if self.method.use_boundary:
            cond = torch.cat([cond, boundaries(given["instance"]).to(cond.dtype)], dim=1)
        if self.encoder:
            cond = torch.cat([cond, self.cluster_features(label, given["cluster"])], dim=1)
        return self.method.nets["G"](cond)

    def cluster_features(self, label: Tensor, cluster: Tensor) -> Tensor:
        """At each pixel of class c, centre ``cluster % K_c`` of class c (zeros for a class without centres):
        the feature map of §3.4 for a per-pixel cluster choice (one value per instance gives per-instance styles)."""
        n_classes, k_max, feat_num = self.centres.shape
        ids = label[:, 0]
        count = self.counts[ids]
        k = cluster[:, 0] % count.clamp_min(1)
        features = self.centres.reshape(n_classes * k_max, feat_num)[ids * k_max + k]
        features = features * (count > 0).unsqueeze(-1).to(features.dtype)
        return features.permute(0, 3, 1, 2)


@dataclass
class ExportResult:
    """What :func:`export_run` wrote and how it compares with torch."""

    path: Path
    method: str
    inputs: list[str]
    max_diff: float
    sizes: list[tuple[int, int]]

    @property
    def check(self) -> str:
        shown = " and ".join(f"{w}x{h}" for w, h in self.sizes)
        return f"onnxruntime vs torch at {shown}: max |diff| {self.max_diff:.2e}"


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PixforgeError(f"option --fixed-size: '{text}' is not WxH (e.g. 256x256)") from None
    if w < 1 or h < 1:
        raise PixforgeError(f"option --fixed-size: '{text}' must have positive sides")
    return w, h


def export_method(
    translator: Translator, test_mode: str | None = None, direction: str | None = None
) -> tuple[nn.Module, dict[str, str]]:
    """The graph module to export (on the CPU, deterministic) and its descriptive metadata."""
    method: Method = copy.deepcopy(translator.method).cpu()
    run_mode = getattr(translator.config.model, "test_mode", "eval")
    mode = test_mode or run_mode
    options: dict[str, Any] = {}
    if isinstance(method, CycleGAN):
        options["direction"] = direction or "AtoB"
    elif direction is not None:
        raise PixforgeError(f"option --direction: {method.name} has one direction only")
    if mode == "paper" and _swap_batch_norms(method):
        dropouts = [m for m in method.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        if dropouts:
            log.warning(
                "export: test-mode paper keeps batch statistics (as per-sample normalisation) but turns "
                "dropout off: the ONNX graph is deterministic"
            )
    method.eval()
    graph: nn.Module = HDGraph(method) if isinstance(method, Pix2PixHD) else ImageGraph(method, options)
    meta = {"test_mode": mode, "direction": options.get("direction", "")}
    if translator.colorization:
        data = translator.config.data
        size = (data.crop_size,) * 2 if data.preprocess == "resize_and_crop" else None
        graph = ColorizationGraph(Padded(graph, method.size_multiple), size)
        meta["colorization"] = (
            f"photo in, photo out; L and Lab in the graph; ab predicted at {size or 'the input size'}"
        )
    return graph.eval(), meta


def image_channels(graph: nn.Module, method: Method) -> int:
    """Channels of the ``image`` input: RGB for a colorization graph, else the generator's input."""
    return 3 if isinstance(graph, ColorizationGraph) else method.info.input_nc


def graph_inputs(graph: nn.Module, method: Method) -> list[str]:
    if isinstance(graph, HDGraph):
        return graph.inputs()
    return ["label" if method.info.label_nc else "image"]


def example_inputs(
    names: list[str], method: Method, n: int, h: int, w: int, seed: int = 0, image_nc: int | None = None
) -> list[Tensor]:
    """Random inputs of the graph: images (``image_nc`` channels, default the generator's) in [-1, 1], label
    ids, instance ids, cluster maps."""
    gen = torch.Generator().manual_seed(seed)
    label_nc = max(method.info.label_nc, 1)

    def blocks(high: int, side: int) -> Tensor:
        ids = torch.randint(0, high, (n, 1, -(-h // side), -(-w // side)), generator=gen)
        return ids.repeat_interleave(side, 2).repeat_interleave(side, 3)[..., :h, :w]

    out = []
    for name in names:
        if name == "image":
            out.append(torch.rand(n, image_nc or method.info.input_nc, h, w, generator=gen) * 2 - 1)
        elif name == "label":
            out.append(blocks(label_nc, 4))
        elif name == "instance":
            out.append(blocks(3, 8))
        else:
            out.append(blocks(10, 8))
    return out


def resize_rule(config: Config) -> dict[str, Any] | None:
    """How ``translate`` sizes an input for this model: None (the input's own size), or a fixed size."""
    data = config.data
    if data.preprocess != "resize_and_crop":
        return None
    return {
        "size": [data.crop_size, data.crop_size],
        "rule": "resize the input to size (W, H) (bicubic; nearest for label and instance maps), run the graph, "
        "resize the output back to the input's size (bicubic)",
    }


def input_spec(names: list[str], translator: Translator, fixed: tuple[int, int] | None) -> dict[str, Any]:
    """The pre-processing spec stored in the model's metadata (``pixforge.inputs``): what each input holds,
    the resize rule, and for label models the class names and palette, for styles the clusters per class.
    A colorization graph takes and gives RGB photos and resizes inside (no resize rule)."""
    method = translator.method
    photo_nc = 3 if translator.colorization else None
    label_nc = method.info.label_nc
    pad = "inside the graph: reflection (replication where the padding is not shorter than a side)"
    meaning = {
        "image": {
            "dtype": "float32",
            "shape": ["N", photo_nc or method.info.input_nc, "H", "W"],
            "range": [-1, 1],
            "pad": pad,
        },
        "label": {
            "dtype": "int64",
            "shape": ["N", 1, "H", "W"],
            "classes": label_nc,
            "names": dataset_classes(translator.config.data.root, label_nc),
            "palette": translator.palette().tolist() if label_nc else [],
            "pad": pad,
        },
        "instance": {
            "dtype": "int64",
            "shape": ["N", 1, "H", "W"],
            "pad": pad,
            "absent": "pass the label map",
        },
        "cluster": {
            "dtype": "int64",
            "shape": ["N", 1, "H", "W"],
            "meaning": "style: each pixel of class c gets centre cluster % K_c of its class; one value per "
            "instance gives per-instance styles, one value everywhere one style",
            "clusters_per_class": clusters_per_class(method),
            "pad": pad,
        },
    }
    return {
        "inputs": {k: meaning[k] for k in names},
        "output": {
            "dtype": "float32",
            "shape": ["N", photo_nc or method.info.output_nc, "H", "W"],
            "range": [-1, 1],
        },
        "size_multiple": method.size_multiple,
        "fixed_size": list(fixed) if fixed else None,
        "resize": None if translator.colorization else resize_rule(translator.config),
        "padding": "none needed: any H x W is padded inside the graph and the output cropped back to H x W",
    }


def clusters_per_class(method: Method) -> dict[str, int]:
    """K_c, the number of feature clusters of each class that has any (pix2pixHD with the encoder)."""
    counts = getattr(method, "centre_counts", None)
    if counts is None:
        return {}
    return {str(c): int(n) for c, n in enumerate(counts.tolist()) if n}


def portable_config(config: Config) -> dict[str, Any]:
    """The run's config without machine paths: ``data.root`` and every other absolute path become ""."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and (Path(value).is_absolute() or PureWindowsPath(value).is_absolute()):
            return ""
        return value

    out = strip(config.to_dict())
    out["data"]["root"] = ""
    return out


def export_run(
    run: str | Path,
    out: str | Path,
    test_mode: str | None = None,
    direction: str | None = None,
    opset: int | None = None,
    fixed_size: tuple[int, int] | None = None,
) -> ExportResult:
    """Export a run's generator to ``out`` (.onnx) and check it with onnxruntime against torch."""
    translator = load(run, device="cpu")
    return export_translator(translator, out, test_mode, direction, opset, fixed_size)


def export_translator(
    translator: Translator,
    out: str | Path,
    test_mode: str | None = None,
    direction: str | None = None,
    opset: int | None = None,
    fixed_size: tuple[int, int] | None = None,
) -> ExportResult:
    """Export a loaded model (see :func:`export_run`)."""
    out = Path(out)
    inner, meta = export_method(translator, test_mode, direction)
    method = translator.method
    names = graph_inputs(inner, method)
    multiple = method.size_multiple
    image_nc = image_channels(inner, method)
    if fixed_size is not None and (fixed_size[0] % multiple or fixed_size[1] % multiple):
        raise PixforgeError(f"option --fixed-size: sides must be multiples of {multiple} for this model")
    graph = inner if isinstance(inner, ColorizationGraph) else Padded(inner, multiple).eval()
    sizes = [fixed_size] if fixed_size else _check_sizes(translator)
    w, h = sizes[0]
    example = example_inputs(names, method, 1, h, w, image_nc=image_nc)
    dynamic = None
    if fixed_size is None:
        dynamic = {k: {0: "batch", 2: "height", 3: "width"} for k in [*names, "output"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(example),
            str(out),
            dynamo=False,
            input_names=names,
            output_names=["output"],
            dynamic_axes=dynamic,
            opset_version=opset,
        )
    _write_metadata(out, translator, meta, input_spec(names, translator, fixed_size))
    diff = max(
        _compare(graph, out, names, method, size, n, image_nc) for size, n in zip(sizes, (1, 2), strict=False)
    )
    if diff > CHECK_TOLERANCE:
        raise PixforgeError(f"export: {out} differs from torch by {diff:.2e} (over {CHECK_TOLERANCE:g})")
    return ExportResult(out, method.name, names, diff, sizes)


def _check_sizes(translator: Translator) -> list[tuple[int, int]]:
    """Two sizes (W, H) for the check: the training crop size rounded up to the multiple, and a larger
    non-square one off the multiple (padded inside the graph). pix2pixHD's generator needs sides of at least
    twice its multiple."""
    multiple = translator.method.size_multiple
    smallest = multiple * (2 if isinstance(translator.method, Pix2PixHD) else 1)
    base = max(smallest, -(-translator.config.data.crop_size // multiple) * multiple)
    return [(base, base), (base + 2 * multiple - 1, base + multiple + 1)]


def _compare(
    graph: nn.Module,
    path: Path,
    names: list[str],
    method: Method,
    size: tuple[int, int],
    n: int,
    image_nc: int | None = None,
) -> float:
    w, h = size
    inputs = example_inputs(names, method, n, h, w, seed=1, image_nc=image_nc)
    with torch.no_grad():
        ref = graph(*inputs).numpy()
    got = session(path).run(None, {k: v.numpy() for k, v in zip(names, inputs, strict=True)})[0]
    return float(np.abs(got - ref).max())


def _write_metadata(path: Path, translator: Translator, meta: dict[str, str], spec: dict[str, Any]) -> None:
    model = onnx.load(str(path))
    props = {
        "method": translator.config.method,
        "config": json.dumps(portable_config(translator.config)),
        "info": json.dumps(vars(translator.method.info)),
        "step": str(translator.step),
        "version": pixforge.__version__,
        "inputs": json.dumps(spec),
        **meta,
    }
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META + key, value
    model.doc_string = f"pixforge {props['method']} generator (step {props['step']})"
    onnx.save(model, str(path))


def session(path: str | Path) -> Any:
    """An onnxruntime CPU session for an exported file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``pixforge.*`` metadata of an exported file (keys without the prefix)."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META) :]: p.value for p in model.metadata_props if p.key.startswith(META)}


def style_map(label: np.ndarray, instance: np.ndarray, counts: dict[str, int], style_seed: int) -> np.ndarray:
    """The ``cluster`` input that gives ``generate(style_seed=...)``'s styles: per (instance, class), the
    cluster :func:`pixforge.methods.pix2pixhd.style_clusters` draws (0 for classes without clusters)."""
    pairs, inverse = np.unique(np.stack([instance.ravel(), label.ravel()]), axis=1, return_inverse=True)
    pairs = torch.from_numpy(pairs.astype(np.int64))
    per_class = torch.zeros(int(pairs[1].max()) + 1 if pairs.numel() else 1, dtype=torch.int64)
    for c, n in counts.items():
        if int(c) < len(per_class):
            per_class[int(c)] = n
    count = per_class[pairs[1]]
    chosen = style_clusters(style_seed, pairs[0], pairs[1], count).numpy()
    return chosen[inverse.reshape(-1)].reshape(label.shape)


class OnnxTranslator:
    """An exported file run with onnxruntime, with the interface of :class:`pixforge.api.Translator` that
    ``pixforge translate`` uses (``config``, ``step``, ``label_nc``, ``translate``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PixforgeError(f"no such ONNX file: {self.path}")
        try:
            meta = read_metadata(self.path)
            self.session = session(self.path)
        except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise many kinds
            raise PixforgeError(
                f"{self.path}: not a readable ONNX model ({str(exc).splitlines()[0]})"
            ) from None
        if "method" not in meta:
            raise PixforgeError(f"{self.path}: not a pixforge export (no pixforge metadata)")
        self.meta = meta
        self.config: Config = from_dict(json.loads(meta["config"]), get_method(meta["method"]).config_type)
        self.step = int(meta["step"])
        self.spec = json.loads(meta["inputs"])
        self.names = list(self.spec["inputs"])
        self.label_nc = int(json.loads(meta["info"])["label_nc"])

    @property
    def colorization(self) -> bool:
        """Whether the graph is a colorization model's (photo in, colour photo out)."""
        return "colorization" in self.meta

    def _model_size(self, size: tuple[int, int], mode: Size | None = None) -> tuple[int, int]:
        """A fixed-size graph's size; a colorization graph's input's own (it resizes inside); else
        :func:`pixforge.api.model_size` (``mode``: native, the default; crop, the spec's resize rule; or N)."""
        fixed = self.spec.get("fixed_size")
        if fixed:
            return fixed[0], fixed[1]
        if self.colorization:
            return size
        return model_size(size, self.config.data, size_choice(mode))

    def _options(self, options: dict[str, Any]) -> dict[str, int]:
        """The style choice (``cluster`` or ``style_seed``, default ``style_seed=0`` as ``generate``'s); other
        options must match what the graph was exported with."""
        style = {k: int(options.pop(k)) for k in ("cluster", "style_seed") if options.get(k) is not None}
        direction = options.pop("direction", None)
        if direction and direction != (self.meta.get("direction") or direction):
            raise PixforgeError(
                f"{self.path} translates {self.meta['direction']}; export with --direction {direction}"
            )
        unknown = sorted(k for k, v in options.items() if v is not None)
        if unknown:
            raise PixforgeError(
                f"{self.path}: ONNX models take no option {unknown[0]} (only cluster, style_seed, direction)"
            )
        if style and "cluster" not in self.names:
            raise PixforgeError(f"{self.path}: this model has no styles (--cluster, --random-styles)")
        if len(style) > 1:
            raise PixforgeError("choose cluster or style_seed, not both")
        return style or {"style_seed": 0}

    def feeds(
        self,
        image: Image.Image,
        instance: Image.Image | None,
        style: dict[str, int],
        mode: Size | None = None,
    ) -> dict[str, np.ndarray]:
        """The graph's inputs for one image at the model's size (any size: the graph pads inside)."""
        image = upright(image)
        size = self._model_size(image.size, mode)
        feeds: dict[str, np.ndarray] = {}
        label = np.zeros((size[1], size[0]), dtype=np.int64)  # pix2pixHD on photos: one class
        if self.label_nc:
            palette = np.asarray(self.spec["inputs"]["label"]["palette"], dtype=np.int64)
            ids = label_map_ids(image, self.label_nc, palette).astype(np.int32)
            label = np.asarray(Image.fromarray(ids).resize(size, Image.NEAREST), dtype=np.int64)
            feeds["label"] = label[None, None]
        else:
            feeds["image"] = to_tensor(decode(image, "RGB").resize(size, Image.BICUBIC)).unsqueeze(0).numpy()
        inst = label
        if instance is not None:
            inst_ids = np.asarray(upright(instance), dtype=np.int64).astype(np.int32)
            inst = np.asarray(Image.fromarray(inst_ids).resize(size, Image.NEAREST), dtype=np.int64)
        feeds["instance"] = inst[None, None]
        if "cluster" in self.names:
            feeds["cluster"] = self._cluster_map(label, inst, style)[None, None]
        return {k: feeds[k] for k in self.names}

    def _cluster_map(self, label: np.ndarray, instance: np.ndarray, style: dict[str, int]) -> np.ndarray:
        if "cluster" in style:
            return np.full(label.shape, style["cluster"], dtype=np.int64)
        counts = self.spec["inputs"]["cluster"]["clusters_per_class"]
        return style_map(label, instance, counts, style["style_seed"])

    def _run(
        self, image: Image.Image, instance: Image.Image | None, style: dict[str, int], mode: Size | None
    ) -> Tensor:
        """The graph's output (1, C, h, w) for one upright image, at the size the model runs at."""
        return torch.from_numpy(self.session.run(None, self.feeds(image, instance, style, mode))[0])

    def translate(
        self,
        image: Image.Image,
        instance: Image.Image | None = None,
        *,
        size: Size | None = None,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        **options: Any,
    ) -> dict[str, Image.Image]:
        """Translate one image into ``output`` at the input's size (like :meth:`Translator.translate`, with
        ``size``, ``tile`` and ``overlap``; fixed-size and colorization graphs are not tiled)."""
        style = self._options(dict(options))
        image = upright(image)
        if tile is None:
            out = self._run(image, instance, style, size)
        elif self.spec.get("fixed_size") or self.colorization:
            raise PixforgeError(f"{self.path}: a fixed-size or colorization graph cannot be tiled")
        else:
            out = self._tiled(image, instance, style, size, tile, overlap)
        return {"output": to_image(at_size("output", out, image.size)[0])}

    def _tiled(
        self,
        image: Image.Image,
        instance: Image.Image | None,
        style: dict[str, int],
        size: Size | None,
        tile: int,
        overlap: int,
    ) -> Tensor:
        """:func:`pixforge.api.translate_tiled` through the graph."""
        ids = None
        if self.label_nc:
            palette = np.asarray(self.spec["inputs"]["label"]["palette"], dtype=np.int64)
            ids = label_map_ids(image, self.label_nc, palette)
        resized, inst = resize_inputs(image, instance, self._model_size(image.size, size), ids)

        def run_tile(part: Image.Image, part_instance: Image.Image | None) -> dict[str, Tensor]:
            return {"output": self._run(part, part_instance, style, "native")}

        multiple = int(self.spec.get("size_multiple", 1))
        return translate_tiled(run_tile, resized, inst, tile, overlap, multiple)["output"]

    def __call__(
        self, image: Image.Image, instance: Image.Image | None = None, **options: Any
    ) -> Image.Image:
        return self.translate(image, instance, **options)["output"]
