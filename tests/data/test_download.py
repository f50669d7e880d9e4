"""download(): served from a loopback HTTP server built per test; never touches the real network."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import logging
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from pixforge.data.download import ARCHIVES, ENV_BASE_URL, download
from pixforge.errors import PixforgeError


def _jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A tar.gz holding ``members`` (name -> bytes) and symbolic ``links`` (name -> target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@dataclass
class Server:
    """A loopback HTTP server over ``folder``; ``hits`` counts GET requests."""

    base: str
    folder: Path
    hits: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", ENV_BASE_URL):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "served"
    folder.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield Server(base=f"http://127.0.0.1:{httpd.server_address[1]}", folder=folder, hits=hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def facades_tar(server: Server) -> Path:
    return _write_tar(
        server.folder / "facades.tar.gz",
        {"facades/train/1.jpg": _jpeg_bytes((200, 10, 10)), "facades/val/1.jpg": _jpeg_bytes((10, 200, 10))},
    )


def _leftovers(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def test_archives_cover_the_nine_public_datasets() -> None:
    aligned = {"facades", "maps", "edges2shoes", "edges2handbags", "night2day", "cityscapes"}
    unaligned = {"horse2zebra", "apple2orange", "summer2winter_yosemite"}
    assert set(ARCHIVES) == aligned | unaligned
    for name, archive in ARCHIVES.items():
        assert archive.name == name
        assert archive.sha256 is None
        if name in aligned:
            assert archive.layout == "aligned"
            assert archive.url == f"http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
        else:
            assert archive.layout == "unaligned"
            assert archive.url == f"http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"


def test_download_unpacks_aligned_archive_via_env_mirror(
    server: Server, facades_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_BASE_URL, server.base + "/")
    root = tmp_path / "data"
    result = download("facades", root, progress=False)
    assert result == root / "facades"
    assert server.hits == ["/facades.tar.gz"]
    with Image.open(result / "train" / "1.jpg") as image:
        assert image.size == (8, 4)
    assert (result / "val" / "1.jpg").is_file()
    assert [p.name for p in root.iterdir()] == ["facades"]


def test_second_call_is_a_no_op(
    server: Server, facades_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_BASE_URL, server.base)
    root = tmp_path / "data"
    download("facades", root, progress=False)
    assert len(server.hits) == 1
    assert download("facades", root, progress=False) == root / "facades"
    assert len(server.hits) == 1


def test_download_unpacks_unaligned_zip_and_logs_its_sha256(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    members = {
        f"horse2zebra/{split}/{i}.jpg": _jpeg_bytes((i * 40, 0, 0))
        for split in ("trainA", "trainB", "testA", "testB")
        for i in range(2)
    }
    archive = _write_zip(server.folder / "horse2zebra.zip", members)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="pixforge.data.download"):
        result = download("horse2zebra", root, url=f"{server.base}/horse2zebra.zip", progress=False)
    assert sorted(p.name for p in result.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert len(list((result / "trainB").iterdir())) == 2
    assert digest in caplog.text


def test_matching_sha256_is_accepted(server: Server, facades_tar: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(facades_tar.read_bytes()).hexdigest()
    root = tmp_path / "data"
    download("facades", root, url=f"{server.base}/facades.tar.gz", sha256=digest.upper(), progress=False)
    assert (root / "facades" / "train" / "1.jpg").is_file()


def test_wrong_sha256_raises_with_both_hashes_and_leaves_nothing(
    server: Server, facades_tar: Path, tmp_path: Path
) -> None:
    actual = hashlib.sha256(facades_tar.read_bytes()).hexdigest()
    wrong = "0" * 64
    root = tmp_path / "data"
    with pytest.raises(PixforgeError) as info:
        download("facades", root, url=f"{server.base}/facades.tar.gz", sha256=wrong, progress=False)
    assert wrong in str(info.value) and actual in str(info.value)
    assert _leftovers(root) == []


def test_existing_root_keeps_only_its_own_files_after_failure(
    server: Server, facades_tar: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "mine.txt").write_text("keep")
    with pytest.raises(PixforgeError):
        download("facades", root, url=f"{server.base}/facades.tar.gz", sha256="f" * 64, progress=False)
    assert _leftovers(root) == [root / "mine.txt"]


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"facades/train/1.jpg": b"x", "../evil": b"pwned"}, None),
        ({"facades/train/1.jpg": b"x", "facades/../../../evil": b"pwned"}, None),
        ({"facades/train/1.jpg": b"x"}, {"facades/link": "../../.."}),
        ({"facades/link/evil": b"pwned"}, {"facades/link": "../../.."}),
        ({"facades/train/1.jpg": b"x"}, {"facades/link": "/etc/passwd"}),
        ({"facades/train/1.jpg": b"x"}, {"facades/a": "c/../x", "facades/c": ".."}),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "symlink-out",
        "write-through-symlink",
        "absolute-symlink",
        "late-redirect",
    ],
)
def test_malicious_tar_is_refused_and_writes_nothing(
    server: Server,
    tmp_path: Path,
    members: dict[str, bytes],
    links: dict[str, str] | None,
) -> None:
    _write_tar(server.folder / "facades.tar.gz", members, links)
    root = tmp_path / "deep" / "data"
    root.parent.mkdir()
    with pytest.raises(PixforgeError, match="refusing"):
        download("facades", root, url=f"{server.base}/facades.tar.gz", progress=False)
    assert _leftovers(root) == []
    assert [p for p in tmp_path.rglob("evil")] == []


def test_absolute_member_is_refused(server: Server, tmp_path: Path) -> None:
    outside = tmp_path / "abs_evil"
    _write_tar(server.folder / "facades.tar.gz", {"facades/train/1.jpg": b"x", str(outside): b"pwned"})
    root = tmp_path / "data"
    with pytest.raises(PixforgeError, match="abs_evil"):
        download("facades", root, url=f"{server.base}/facades.tar.gz", progress=False)
    assert not outside.exists()
    assert _leftovers(root) == []


def test_malicious_zip_is_refused(server: Server, tmp_path: Path) -> None:
    _write_zip(server.folder / "horse2zebra.zip", {"horse2zebra/trainA/1.jpg": b"x", "../evil": b"pwned"})
    root = tmp_path / "deep" / "data"
    root.parent.mkdir()
    with pytest.raises(PixforgeError, match=r"\.\./evil"):
        download("horse2zebra", root, url=f"{server.base}/horse2zebra.zip", progress=False)
    assert _leftovers(root) == []
    assert [p for p in tmp_path.rglob("evil")] == []


def test_wrong_layout_is_refused(server: Server, tmp_path: Path) -> None:
    _write_tar(server.folder / "facades.tar.gz", {"facades/images/1.jpg": _jpeg_bytes((0, 0, 0))})
    root = tmp_path / "data"
    with pytest.raises(PixforgeError, match="aligned layout"):
        download("facades", root, url=f"{server.base}/facades.tar.gz", progress=False)
    assert _leftovers(root) == []


def test_corrupt_archive_is_refused(server: Server, facades_tar: Path, tmp_path: Path) -> None:
    facades_tar.write_bytes(facades_tar.read_bytes()[: facades_tar.stat().st_size // 2])
    root = tmp_path / "data"
    with pytest.raises(PixforgeError, match="corrupt"):
        download("facades", root, url=f"{server.base}/facades.tar.gz", progress=False)
    assert _leftovers(root) == []


def test_incomplete_existing_folder_is_not_overwritten(
    server: Server, facades_tar: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "facades").mkdir(parents=True)
    (root / "facades" / "notes.txt").write_text("mine")
    with pytest.raises(PixforgeError, match="does not hold"):
        download("facades", root, url=f"{server.base}/facades.tar.gz", progress=False)
    assert server.hits == []
    assert _leftovers(root) == [root / "facades", root / "facades" / "notes.txt"]


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(PixforgeError) as info:
        download("faces", tmp_path, progress=False)
    message = str(info.value)
    assert "faces" in message
    assert all(name in message for name in ARCHIVES)


def test_closed_port_gives_one_line_error_naming_the_dataset(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = tmp_path / "data"
    with pytest.raises(PixforgeError) as info:
        download("facades", root, url=f"http://127.0.0.1:{port}/facades.tar.gz", timeout=5, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "'facades'" in message
    assert str(root / "facades" / "train") in message
    assert _leftovers(root) == []


def test_http_404_raises(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with pytest.raises(PixforgeError, match="404") as info:
        download("maps", root, url=f"{server.base}/maps.tar.gz", progress=False)
    assert "\n" not in str(info.value)
    assert server.hits == ["/maps.tar.gz"]
    assert _leftovers(root) == []
