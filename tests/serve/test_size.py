"""The ``size`` form field of the translate endpoint: where the model runs, checked before it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pixforge
from pixforge.client import Client, ServerError

from .conftest import MAX_PIXELS


def test_size_field_matches_local_translation(server: str, serve_runs: dict[str, Path], photo) -> None:
    image = photo((48, 32))
    local = pixforge.load(serve_runs["p2p"], device="cpu")
    for size in ("native", "crop", "64"):
        out = Client(server).translate(image, model="p2p", size=size)
        assert out.size == (48, 32)
        want = local.translate(image, size=pixforge.api.size_choice(size))["output"]
        assert np.array_equal(np.asarray(out), np.asarray(want))


def test_bad_or_oversized_size_is_refused_before_the_model_runs(server: str, photo) -> None:
    with pytest.raises(ServerError) as err:
        Client(server).translate(photo((32, 32)), model="p2p", size="huge")
    assert err.value.status == 422 and "Option size: 'huge'" in str(err.value)
    side = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(ServerError) as err:
        Client(server).translate(photo((32, 32)), model="p2p", size=str(side))
    assert err.value.status == 413 and f"over the limit of {MAX_PIXELS}" in str(err.value)
