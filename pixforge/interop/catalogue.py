"""The authors' published generators by name (``pixforge pretrained list`` / ``get``).

The URLs are those of the upstream download scripts, read at (search-index commits):
junyanz/pytorch-CycleGAN-and-pix2pix ``scripts/download_pix2pix_model.sh`` (pix2pix:
``http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/NAME.pth``; models edges2shoes, sat2map, map2sat,
facades_label2photo, day2night) and ``pretrained_models/download_cyclegan_model.sh`` @2dca893a (CycleGAN:
``http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/NAME.pth``), each saved as
``latest_net_G.pth``; NVIDIA/pix2pixHD's README (label2city_1024p: a Google Drive page, tested with
``--netG local --ngf 32 --resize_or_crop none``).

``sha256`` and ``size`` are ``None`` for every entry: the upstream scripts publish neither, and the
files could not be fetched from this machine (no internet) to measure them. ``get`` then says that it could
not check the file, and prints its sha256 so that it can be pinned here.

Import options follow the upstream test commands: pix2pix models are unet_256 with batch norm (shapes
tell), facades_label2photo and map2sat are trained ``--direction BtoA`` on their datasets; CycleGAN
models are one resnet_9blocks generator with instance norm (``--model test --no_dropout``).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pixforge.errors import PixforgeError
from pixforge.interop.junyanz import import_junyanz
from pixforge.interop.nvidia import import_nvidia
from pixforge.interop.runs import ImportOptions

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{}.pth"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{}.pth"
JUNYANZ_LICENCE = "BSD (junyanz/pytorch-CycleGAN-and-pix2pix LICENSE)"
NVIDIA_LICENCE = "BSD (NVIDIA/pix2pixHD, as its PyPI package states)"
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Published:
    """One published generator: where it is, what it does, how it imports, what its paper reports."""

    name: str
    method: str
    source: str
    url: str
    does: str
    licence: str
    direction: str = "AtoB"
    sha256: str | None = None
    size: int | None = None
    paper: str | None = None
    direct: bool = True
    """Whether ``url`` is the file itself (False: a page to download it from by hand)."""
    options: dict[str, str] = field(default_factory=dict)

    def import_command(self, file: str = "FILE.pth", out: str = "RUN") -> str:
        """The ``pixforge import`` command line for a copy of the file fetched elsewhere."""
        extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in self.options.items())
        direction = f" --direction {self.direction}" if self.direction != "AtoB" else ""
        return f"pixforge import {self.source} {file} --method {self.method}{direction}{extra} --out {out}"


def _pix2pix(name: str, does: str, direction: str = "AtoB", paper: str | None = None) -> Published:
    return Published(
        name, "pix2pix", "junyanz", PIX2PIX_URL.format(name), does, JUNYANZ_LICENCE, direction, paper=paper
    )


def _cyclegan(name: str, does: str) -> Published:
    return Published(name, "cyclegan", "junyanz", CYCLEGAN_URL.format(name), does, JUNYANZ_LICENCE)


CATALOGUE: tuple[Published, ...] = (
    _pix2pix("facades_label2photo", "CMP facade label maps (colour-coded) to photos", "BtoA"),
    _pix2pix(
        "map2sat",
        "Google Maps tiles to aerial photos",
        "BtoA",
        "pix2pix Table 4: 18.9% ± 2.5% of AMT turkers labelled outputs real (map → photo, L1+cGAN)",
    ),
    _pix2pix(
        "sat2map",
        "aerial photos to Google Maps tiles",
        "AtoB",
        "pix2pix Table 4: 6.1% ± 1.3% of AMT turkers labelled outputs real (photo → map, L1+cGAN)",
    ),
    _pix2pix("edges2shoes", "edge drawings to shoe photos"),
    _pix2pix("day2night", "daytime to night-time outdoor scenes"),
    _cyclegan("horse2zebra", "horses to zebras"),
    _cyclegan("zebra2horse", "zebras to horses"),
    _cyclegan("apple2orange", "apples to oranges"),
    _cyclegan("orange2apple", "oranges to apples"),
    _cyclegan("summer2winter_yosemite", "Yosemite in summer to winter"),
    _cyclegan("winter2summer_yosemite", "Yosemite in winter to summer"),
    _cyclegan("monet2photo", "Monet paintings to photos"),
    _cyclegan("style_monet", "photos in the style of Monet"),
    _cyclegan("style_cezanne", "photos in the style of Cézanne"),
    _cyclegan("style_ukiyoe", "photos in the style of ukiyo-e"),
    _cyclegan("style_vangogh", "photos in the style of Van Gogh"),
    _cyclegan("sat2map", "aerial photos to maps (unpaired)"),
    _cyclegan("map2sat", "maps to aerial photos (unpaired)"),
    _cyclegan("cityscapes_photo2label", "Cityscapes photos to label maps (colour-coded)"),
    _cyclegan("cityscapes_label2photo", "Cityscapes label maps (colour-coded) to photos"),
    _cyclegan("facades_photo2label", "facade photos to label maps (colour-coded)"),
    _cyclegan("facades_label2photo", "facade label maps (colour-coded) to photos"),
    _cyclegan("iphone2dslr_flower", "iPhone flower photos to DSLR shallow depth of field"),
    Published(
        "label2city_1024p",
        "pix2pixhd",
        "nvidia",
        "https://drive.google.com/file/d/1h9SykUnuZul7J3Nbms2QGH1wa85nbN2-/view?usp=sharing",
        "Cityscapes label ids (35 classes) and instance maps to 2048x1024 street photos",
        NVIDIA_LICENCE,
        paper="pix2pixHD Table 1 (Cityscapes, PSPNet): pixel accuracy 83.78, mean IoU 0.6389",
        direct=False,
        options={"label_nc": "35"},
    ),
)


def names() -> list[str]:
    """The catalogue's names; a name published by both pix2pix and CycleGAN is ``method/name``."""
    return [entry_key(e) for e in CATALOGUE]


def entry_key(entry: Published) -> str:
    clash = sum(e.name == entry.name for e in CATALOGUE) > 1
    return f"{entry.method}/{entry.name}" if clash else entry.name


def find(name: str) -> Published:
    """The entry ``name`` (or ``method/name``); a name two methods publish must say which."""
    matches = [e for e in CATALOGUE if name in (e.name, f"{e.method}/{e.name}")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        keys = ", ".join(entry_key(e) for e in matches)
        raise PixforgeError(f"pretrained model '{name}' is published twice: choose {keys}")
    raise PixforgeError(f"unknown pretrained model '{name}' (see pixforge pretrained list)")


def fetch(url: str, target: Path) -> None:
    """Download ``url`` into ``target``."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as f:
        shutil.copyfileobj(response, f)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def get(name: str, out: Path, download: Callable[[str, Path], None] = fetch) -> tuple[Published, str]:
    """Download the published model ``name``, check it, import it into the run ``out``.

    Returns the entry and the file's sha256. Any failure to download is a one-line error naming the URL
    and the ``pixforge import`` command for a copy fetched elsewhere.
    """
    entry = find(name)
    fallback = f"fetch it elsewhere and run: {entry.import_command(out=str(out))}"
    if not entry.direct:
        raise PixforgeError(
            f"{entry.name} is published on a page, not as a file: download it from {entry.url}; {fallback}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "latest_net_G.pth"
        try:
            download(entry.url, file)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise PixforgeError(f"cannot download {entry.url} ({reason}); {fallback}") from None
        digest = sha256(file)
        if entry.sha256 is not None and digest != entry.sha256:
            raise PixforgeError(
                f"{entry.url}: sha256 {digest} is not the published {entry.sha256}; {fallback}"
            )
        options = ImportOptions(
            entry.method, direction=entry.direction, label_nc=_int(entry.options.get("label_nc"))
        )
        if entry.source == "nvidia":
            import_nvidia([file], out, options)
        else:
            import_junyanz([file], out, options)
    return entry, digest


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)
