"""The standard public pix2pix and CycleGAN archives: download, verify, unpack safely.

The pix2pix paper's datasets (facades, maps, edges2shoes, edges2handbags, night2day, cityscapes) come
in the *aligned* layout, ``NAME/train/*.jpg`` (plus ``val/`` and sometimes ``test/``), each image the
pair A|B side by side. The CycleGAN datasets (horse2zebra, apple2orange, summer2winter_yosemite) come
in the *unaligned* layout, ``NAME/trainA``, ``trainB``, ``testA``, ``testB``.

:func:`download` streams an archive to ``ROOT/.NAME.part``, checks its SHA-256 when one is known or
given, checks that the archive reads completely, unpacks it into a temporary folder inside ``ROOT``
(refusing members that would land outside it), checks the layout and only then renames the result
to ``ROOT/NAME``. On any failure nothing partial is left under ``ROOT``.

No checksums are pinned for the public archives: the SHA-256 of every download is logged so that a
user can pin it with ``sha256=...``.

Mirrors: set the environment variable ``PIXFORGE_DATASETS_URL`` to a base URL and every archive is
fetched from ``BASE/NAME.tar.gz`` (pix2pix datasets) or ``BASE/NAME.zip`` (CycleGAN datasets)
instead of the Berkeley servers. An explicit ``url=`` argument takes precedence over both.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from pixforge.errors import PixforgeError

logger = logging.getLogger(__name__)

PIX2PIX_BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
CYCLEGAN_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
ENV_BASE_URL = "PIXFORGE_DATASETS_URL"

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_CHUNK_BYTES = 1 << 20
_ARCHIVE_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)


@dataclass(frozen=True)
class Archive:
    """A public dataset archive: where it is served and the layout it unpacks to."""

    name: str
    url: str
    layout: str
    sha256: str | None = None


def _pix2pix(name: str) -> Archive:
    return Archive(name=name, url=f"{PIX2PIX_BASE_URL}/{name}.tar.gz", layout="aligned")


def _cyclegan(name: str) -> Archive:
    return Archive(name=name, url=f"{CYCLEGAN_BASE_URL}/{name}.zip", layout="unaligned")


ARCHIVES: dict[str, Archive] = {
    archive.name: archive
    for archive in (
        *(
            _pix2pix(name)
            for name in ("facades", "maps", "edges2shoes", "edges2handbags", "night2day", "cityscapes")
        ),
        *(_cyclegan(name) for name in ("horse2zebra", "apple2orange", "summer2winter_yosemite")),
    )
}


def download(
    name: str,
    root: Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Fetch the public dataset ``name`` into ``root / name`` and return that folder.

    Does nothing if ``root / name`` already holds the expected layout. ``url`` overrides the archive's
    address (see the module docstring for ``PIXFORGE_DATASETS_URL``); ``sha256`` pins the expected
    checksum of the archive file. Every failure raises :class:`PixforgeError` with a one-line message.
    """
    archive = _lookup(name)
    root = Path(root)
    target = root / name
    if _has_layout(target, archive.layout):
        return target
    if target.exists():
        raise PixforgeError(
            f"{target} exists but does not hold the {archive.layout} layout "
            f"({_layout_hint(archive.layout)}); move it away or complete it, then run again"
        )
    source = url or _resolve_url(archive)
    expected = _normalise_sha256(sha256 or archive.sha256)
    created_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    except OSError as err:
        raise PixforgeError(
            f"cannot create a folder under dataset root {root}: {err.strerror or err}"
        ) from err
    part = root / f".{name}.part"
    try:
        digest = _fetch(name, source, part, target, archive.layout, timeout=timeout, progress=progress)
        _verify_sha256(name, part, digest, expected)
        _extract(name, part, staging)
        unpacked = _find_layout(name, staging, archive.layout)
        os.replace(unpacked, target)
    except OSError as err:
        raise PixforgeError(f"cannot write {name} under {root}: {err}") from err
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        if created_root:
            with contextlib.suppress(OSError):
                root.rmdir()
    return target


def _lookup(name: str) -> Archive:
    if name not in ARCHIVES:
        raise PixforgeError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(ARCHIVES))}")
    return ARCHIVES[name]


def _resolve_url(archive: Archive) -> str:
    """The archive's URL, with its base replaced by ``$PIXFORGE_DATASETS_URL`` when that is set."""
    base = os.environ.get(ENV_BASE_URL, "").strip()
    if not base:
        return archive.url
    return f"{base.rstrip('/')}/{archive.url.rsplit('/', 1)[-1]}"


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise PixforgeError(f"sha256={sha256!r} is not a SHA-256 hex digest (64 hex characters)")
    return value


def _layout_hint(layout: str) -> str:
    return "train/ with images" if layout == "aligned" else "trainA/ and trainB/ with images"


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file() for p in folder.iterdir()
    )


def _has_layout(folder: Path, layout: str) -> bool:
    """True when ``folder`` holds the aligned (``train/``) or unaligned (``trainA/``, ``trainB/``) layout."""
    if layout == "aligned":
        return _has_images(folder / "train")
    return _has_images(folder / "trainA") and _has_images(folder / "trainB")


def _network_error(name: str, source: str, target: Path, layout: str, reason: object) -> PixforgeError:
    where = f"{target / 'train'}" if layout == "aligned" else f"{target / 'trainA'} and {target / 'trainB'}"
    detail = " ".join(str(reason).split())
    return PixforgeError(
        f"cannot download {name!r} from {source}: {detail}. Without a network, fetch the archive elsewhere "
        f"and unpack it so that {where} exists (or set {ENV_BASE_URL} to a mirror)."
    )


def _fetch(
    name: str, source: str, part: Path, target: Path, layout: str, *, timeout: float, progress: bool
) -> str:
    """Stream ``source`` to ``part`` and return the SHA-256 hex digest of the bytes received."""
    network_errors = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)
    try:
        response = urllib.request.urlopen(source, timeout=timeout)
    except network_errors as err:
        plain_url_error = isinstance(err, urllib.error.URLError) and not isinstance(
            err, urllib.error.HTTPError
        )
        reason = err.reason if plain_url_error else err
        raise _network_error(name, source, target, layout, reason) from err
    digest = hashlib.sha256()
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    with (
        response,
        part.open("wb") as out,
        tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar,
    ):
        for chunk in _chunks(response, lambda err: _network_error(name, source, target, layout, err)):
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _chunks(response: BinaryIO, on_error: Callable[[Exception], PixforgeError]) -> Iterator[bytes]:
    """Yield the response body in chunks; a read failure becomes ``on_error(err)``."""
    while True:
        try:
            chunk = response.read(_CHUNK_BYTES)
        except (http.client.HTTPException, OSError) as err:
            raise on_error(err) from err
        if not chunk:
            return
        yield chunk


def _verify_sha256(name: str, part: Path, digest: str, expected: str | None) -> None:
    if expected is None:
        logger.warning(
            "%s: no checksum pinned; the archive has sha256=%s (pass sha256= to pin it)", name, digest
        )
        return
    if digest != expected:
        part.unlink(missing_ok=True)
        raise PixforgeError(
            f"checksum mismatch for {name!r}: expected sha256={expected}, got sha256={digest}; "
            "the download was removed, check the URL or the pinned checksum"
        )
    logger.info("%s: archive sha256=%s verified", name, digest)


def _inside(path: str, base: str) -> bool:
    return os.path.commonpath([path, base]) == base


def _safe_destination(member: str, staging: Path) -> Path:
    """Where ``member`` unpacks to, refusing absolute names, ``..`` escapes and writes through links."""
    base = os.path.realpath(staging)
    destination = os.path.realpath(os.path.join(base, member))
    if os.path.isabs(member) or not _inside(destination, base) or destination == base:
        raise PixforgeError(f"archive member {member!r} would unpack outside the target folder; refusing it")
    return Path(destination)


def _extract(name: str, archive: Path, staging: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``staging``, member by member, checking each."""
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        else:
            _extract_tar(archive, staging)
    except _ARCHIVE_READ_ERRORS as err:
        detail = " ".join(str(err).split())
        raise PixforgeError(
            f"the archive downloaded for {name!r} is corrupt or not a tar/zip file: {detail}"
        ) from err
    _check_symlinks(staging)


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            destination = _safe_destination(member.name, staging)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                source = tar.extractfile(member)
                _write(source, destination)
            elif member.issym():
                _check_link(member.name, member.linkname, destination.parent, staging)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, destination)
            elif member.islnk():
                linked = _check_link(member.name, member.linkname, staging, staging)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(linked, destination)
            else:
                raise PixforgeError(f"archive member {member.name!r} is a device or fifo; refusing it")


def _check_link(member: str, linkname: str, relative_to: Path, staging: Path) -> Path:
    """Refuse a link whose target resolves outside ``staging``; return the resolved target."""
    base = os.path.realpath(staging)
    resolved = os.path.realpath(os.path.join(relative_to, linkname))
    if os.path.isabs(linkname) or not _inside(resolved, base):
        raise PixforgeError(
            f"archive member {member!r} links to {linkname!r} outside the target; refusing it"
        )
    return Path(resolved)


def _check_symlinks(staging: Path) -> None:
    """Refuse the unpacked tree if any link ends up resolving outside it (links created later can
    redirect the ``..`` of links created earlier)."""
    base = os.path.realpath(staging)
    for folder, dirs, files in os.walk(staging):
        for entry in (*dirs, *files):
            path = os.path.join(folder, entry)
            if os.path.islink(path) and not _inside(os.path.realpath(path), base):
                member = Path(path).relative_to(staging).as_posix()
                raise PixforgeError(f"archive member {member!r} links outside the target folder; refusing it")


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            destination = _safe_destination(info.filename, staging)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as source:
                    _write(source, destination)


def _write(source: BinaryIO | None, destination: Path) -> None:
    if source is None:
        raise tarfile.ReadError(f"cannot read {destination.name}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with source, destination.open("wb") as out:
        shutil.copyfileobj(source, out, _CHUNK_BYTES)


def _find_layout(name: str, staging: Path, layout: str) -> Path:
    """The unpacked dataset folder: ``staging/NAME`` or, for archives without a top folder, ``staging``."""
    for candidate in (staging / name, staging):
        if _has_layout(candidate, layout):
            return candidate
    raise PixforgeError(
        f"the archive for {name!r} does not hold the {layout} layout ({name}/{_layout_hint(layout)}); "
        "check the URL or the mirror"
    )
