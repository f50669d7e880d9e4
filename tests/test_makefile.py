"""The Makefile's setup: a failed Chromium install is said, not marked done, and tried again next time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_failed_chromium_install_is_said_and_retried(tmp_path: Path) -> None:
    command = ["make", "-s", "-C", str(ROOT), "chromium", f"CHROMIUM={tmp_path / 'none'}", "APT_GET=false"]
    for _ in range(2):  # no stamp: the second run tries again
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "could not install chromium" in result.stdout and "tries again" in result.stdout
