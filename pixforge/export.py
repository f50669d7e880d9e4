"""ONNX export of a run's generator (``pixforge export``), and :class:`OnnxTranslator`, which runs an exported
file with onnxruntime behind the same interface as :class:`pixforge.api.Translator` (``pixforge translate
MODEL.onnx``).

The graph takes what a user has and gives the output image in [-1, 1] (NCHW float32), with dynamic batch,
height and width (multiples of the generator's size multiple) unless ``fixed_size`` is given:

- image models (pix2pix, DRPAN, GuideGAN, CycleGAN): ``image`` (N, 3, H, W) float32 in [-1, 1]; models trained
  on label maps take ``label`` (N, 1, H, W) int64 class ids instead, one-hot inside the graph;
- pix2pixHD: ``label`` (N, 1, H, W) int64 class ids, ``instance`` (N, 1, H, W) int64 instance ids (models with
  instance boundaries; pass the label map when there is no instance map), and for models with the feature
  encoder ``cluster`` (N,) int64: every instance of sample n gets centre ``cluster[n] % K_c`` of its class c
  (``generate(cluster=...)``); the one-hot labels, the boundary map and the cluster centres are in the graph.

Padding is left to the caller; the pre-processing spec stored with the model (metadata ``pixforge.inputs``)
says how: pad bottom/right to the multiple (images and label maps by reflection, instance maps by
replication), crop the output back. The metadata (ONNX ``metadata_props``) also holds ``pixforge.method``,
``pixforge.config`` (the run's resolved config, JSON), ``pixforge.step``, ``pixforge.test_mode``,
``pixforge.direction`` and ``pixforge.version``.

What is folded into the graph:

- GuideGAN: the test-time all-ones attention map (§4), so G sees x' = 2x (RHP) or concat(x, 1) (alpha);
- pix2pix's ``test_mode=paper`` (batch norm with the test batch's statistics, dropout on; pix2pix §3.1): at
  batch 1, batch norm with batch statistics *is* instance normalisation with batch norm's affine parameters,
  so the graph normalises each sample over H x W with those parameters (:class:`SampleNorm`), and a batch of N
  gives what N single translations give. Dropout is turned off in the export (with a notice): the graph is
  deterministic, so it equals ``translate`` with the dropout layers at p = 0.

The exporter is torch.onnx's TorchScript-based one (``dynamo=False``): the dynamo exporter specialises every
size that reaches 1 px in the example input (a U-Net's 1 x 1 bottleneck), so it cannot give one graph for all
sizes. Every export is checked with onnxruntime against torch at two sizes (:attr:`ExportResult.max_diff`).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
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
    load,
    model_size,
    resize_inputs,
    size_choice,
    translate_tiled,
)
from pixforge.config import Config, from_dict
from pixforge.data.transforms import pad_to_multiple, to_image, to_tensor
from pixforge.errors import PixforgeError
from pixforge.methods import get_method
from pixforge.methods.base import Method
from pixforge.methods.cyclegan import CycleGAN
from pixforge.methods.pix2pixhd import Pix2PixHD

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
        """Centre ``cluster[n] % K_c`` of class c at every pixel of class c (zeros for classes without centres)."""
        n_classes = self.centres.shape[0]
        k = cluster.view(-1, 1) % self.counts.clamp_min(1).view(1, -1)
        table = self.centres[torch.arange(n_classes, device=k.device).view(1, -1), k]
        table = table * (self.counts > 0).view(1, -1, 1).to(table.dtype)
        onehot = one_hot_ids(label, n_classes)
        return torch.einsum("nchw,ncf->nfhw", onehot, table)


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
    return graph.eval(), meta


def graph_inputs(graph: nn.Module, method: Method) -> list[str]:
    if isinstance(graph, HDGraph):
        return graph.inputs()
    return ["label" if method.info.label_nc else "image"]


def example_inputs(names: list[str], method: Method, n: int, h: int, w: int, seed: int = 0) -> list[Tensor]:
    """Random inputs of the graph: images in [-1, 1], label ids, instance ids, clusters."""
    gen = torch.Generator().manual_seed(seed)
    label_nc = max(method.info.label_nc, 1)
    out = []
    for name in names:
        if name == "image":
            out.append(torch.rand(n, method.info.input_nc, h, w, generator=gen) * 2 - 1)
        elif name == "label":
            out.append(
                torch.randint(0, label_nc, (n, 1, h // 4, w // 4), generator=gen)
                .repeat_interleave(4, 2)
                .repeat_interleave(4, 3)
            )
        elif name == "instance":
            out.append(
                torch.randint(0, 3, (n, 1, h // 8, w // 8), generator=gen)
                .repeat_interleave(8, 2)
                .repeat_interleave(8, 3)
            )
        else:
            out.append(torch.randint(0, 10, (n,), generator=gen))
    return out


def input_spec(
    names: list[str], method: Method, multiple: int, fixed: tuple[int, int] | None
) -> dict[str, Any]:
    """The pre-processing spec stored in the model's metadata (``pixforge.inputs``)."""
    meaning = {
        "image": {
            "dtype": "float32",
            "shape": ["N", method.info.input_nc, "H", "W"],
            "range": [-1, 1],
            "pad": "reflect",
        },
        "label": {
            "dtype": "int64",
            "shape": ["N", 1, "H", "W"],
            "classes": method.info.label_nc,
            "pad": "reflect",
        },
        "instance": {
            "dtype": "int64",
            "shape": ["N", 1, "H", "W"],
            "pad": "replicate",
            "absent": "pass the label map",
        },
        "cluster": {
            "dtype": "int64",
            "shape": ["N"],
            "meaning": "style: centre cluster % K_c of each class c",
        },
    }
    return {
        "inputs": {k: meaning[k] for k in names},
        "output": {"dtype": "float32", "shape": ["N", method.info.output_nc, "H", "W"], "range": [-1, 1]},
        "size_multiple": multiple,
        "fixed_size": list(fixed) if fixed else None,
        "padding": "pad bottom/right to multiples of size_multiple, crop the output back",
    }


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
    graph, meta = export_method(translator, test_mode, direction)
    method = translator.method
    names = graph_inputs(graph, method)
    multiple = method.size_multiple
    if fixed_size is not None and (fixed_size[0] % multiple or fixed_size[1] % multiple):
        raise PixforgeError(f"option --fixed-size: sides must be multiples of {multiple} for this model")
    sizes = [fixed_size] if fixed_size else _check_sizes(translator)
    w, h = sizes[0]
    example = example_inputs(names, method, 1, h, w)
    dynamic = None
    if fixed_size is None:
        dynamic = {
            k: ({0: "batch"} if k == "cluster" else {0: "batch", 2: "height", 3: "width"}) for k in names
        }
        dynamic["output"] = {0: "batch", 2: "height", 3: "width"}
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
    _write_metadata(out, translator, meta, input_spec(names, method, multiple, fixed_size))
    diff = max(_compare(graph, out, names, method, size, n) for size, n in zip(sizes, (1, 2), strict=False))
    if diff > CHECK_TOLERANCE:
        raise PixforgeError(f"export: {out} differs from torch by {diff:.2e} (over {CHECK_TOLERANCE:g})")
    return ExportResult(out, method.name, names, diff, sizes)


def _check_sizes(translator: Translator) -> list[tuple[int, int]]:
    """Two sizes (W, H) for the check: the training crop size rounded up to the multiple, and a larger
    non-square one. pix2pixHD's generator needs sides of at least twice its multiple."""
    multiple = translator.method.size_multiple
    smallest = multiple * (2 if isinstance(translator.method, Pix2PixHD) else 1)
    base = max(smallest, -(-translator.config.data.crop_size // multiple) * multiple)
    return [(base, base), (base + 2 * multiple, base + multiple)]


def _compare(
    graph: nn.Module, path: Path, names: list[str], method: Method, size: tuple[int, int], n: int
) -> float:
    w, h = size
    inputs = example_inputs(names, method, n, h, w, seed=1)
    with torch.no_grad():
        ref = graph(*inputs).numpy()
    got = session(path).run(None, {k: v.numpy() for k, v in zip(names, inputs, strict=True)})[0]
    return float(np.abs(got - ref).max())


def _write_metadata(path: Path, translator: Translator, meta: dict[str, str], spec: dict[str, Any]) -> None:
    model = onnx.load(str(path))
    props = {
        "method": translator.config.method,
        "config": json.dumps(translator.config.to_dict()),
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
        self.multiple = int(self.spec["size_multiple"])

    def _model_size(self, size: tuple[int, int], mode: Size | None = None) -> tuple[int, int]:
        """A fixed-size graph's size, else :func:`pixforge.api.model_size` (``mode``: native, crop or N)."""
        fixed = self.spec.get("fixed_size")
        if fixed:
            return fixed[0], fixed[1]
        return model_size(size, self.config.data, size_choice(mode))

    def _options(self, options: dict[str, Any]) -> int:
        """The cluster choice; other options must match what the graph was exported with."""
        cluster = options.pop("cluster", None)
        direction = options.pop("direction", None)
        if direction and direction != (self.meta.get("direction") or direction):
            raise PixforgeError(
                f"{self.path} translates {self.meta['direction']}; export with --direction {direction}"
            )
        unknown = sorted(k for k, v in options.items() if v is not None)
        if unknown:
            raise PixforgeError(
                f"{self.path}: ONNX models take no option {unknown[0]} (only --cluster, --direction)"
            )
        if cluster is not None and "cluster" not in self.names:
            raise PixforgeError(f"{self.path}: this model has no styles (--cluster)")
        return int(cluster or 0)

    def feeds(
        self, image: Image.Image, instance: Image.Image | None, cluster: int, mode: Size | None = None
    ) -> dict[str, np.ndarray]:
        """The graph's inputs for one image, resized to the model's size and padded per the spec."""
        size = self._model_size(image.size, mode)
        feeds: dict[str, Tensor] = {}
        if self.label_nc:
            ids = np.asarray(image if image.mode in ("L", "P", "I") else image.convert("L"), dtype=np.int64)
            if ids.max() >= self.label_nc:
                raise PixforgeError(f"label id {int(ids.max())} is outside 0..{self.label_nc - 1}")
            label = Image.fromarray(ids.astype(np.int32)).resize(size, Image.NEAREST)
            label_t = torch.from_numpy(np.asarray(label, dtype=np.int64))[None, None]
            feeds["label"] = pad_to_multiple(label_t, self.multiple, "reflect")
            inst = label_t
            if instance is not None:
                inst_img = Image.fromarray(np.asarray(instance, dtype=np.int64).astype(np.int32)).resize(
                    size, Image.NEAREST
                )
                inst = torch.from_numpy(np.asarray(inst_img, dtype=np.int64))[None, None]
            feeds["instance"] = pad_to_multiple(inst, self.multiple, "replicate")
        else:
            x = to_tensor(image.convert("RGB").resize(size, Image.BICUBIC)).unsqueeze(0)
            feeds["image"] = pad_to_multiple(x, self.multiple, "reflect")
        feeds["cluster"] = torch.tensor([cluster], dtype=torch.int64)
        return {k: feeds[k].numpy() for k in self.names}

    def _run(
        self, image: Image.Image, instance: Image.Image | None, cluster: int, mode: Size | None
    ) -> Tensor:
        """The graph's output (1, C, h, w) at the size the model runs at."""
        size = self._model_size(image.size, mode)
        out = torch.from_numpy(self.session.run(None, self.feeds(image, instance, cluster, mode))[0])
        return out[..., : size[1], : size[0]]

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
        """Translate one image into ``output`` at the input's size (like :meth:`Translator.translate`,
        ``size``, ``tile`` and ``overlap`` too; a fixed-size graph is not tiled)."""
        cluster = self._options(dict(options))
        if tile is None:
            out = self._run(image, instance, cluster, size)
        elif self.spec.get("fixed_size"):
            raise PixforgeError(
                f"{self.path}: a --fixed-size graph cannot be tiled; export without --fixed-size"
            )
        else:
            resized, inst = resize_inputs(image, instance, self._model_size(image.size, size), self.label_nc)

            def run_tile(part: Image.Image, part_instance: Image.Image | None) -> dict[str, Tensor]:
                return {"output": self._run(part, part_instance, cluster, "native")}

            out = translate_tiled(run_tile, resized, inst, tile, overlap, self.multiple)["output"]
        return {"output": to_image(at_size("output", out, image.size)[0])}

    def __call__(
        self, image: Image.Image, instance: Image.Image | None = None, **options: Any
    ) -> Image.Image:
        return self.translate(image, instance, **options)["output"]
