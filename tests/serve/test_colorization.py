"""A colorization model behind the server: any photo in, the colour photo of its lightness out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pixforge
from pixforge.client import Client
from pixforge.serve.app import create_app
from pixforge.serve.server import background


@pytest.fixture(scope="module")
def colour_server(colour_run: Path, settings) -> Iterator[str]:
    with background(create_app(settings([colour_run]))) as url:
        yield url


def test_models_say_colorization(colour_server: str):
    (model,) = Client(colour_server).models()
    assert model["colorization"] is True and model["input"] == "image"


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_translate_answers_the_local_translation_at_the_inputs_size(colour_server, colour_run, photo, mode):
    image = photo((40, 24), seed=3).convert(mode)
    out = Client(colour_server).translate(image, model=Path(colour_run).name)
    assert out.size == image.size and out.mode == "RGB"
    local = pixforge.load(colour_run, device="cpu")(image)
    assert np.array_equal(np.asarray(out), np.asarray(local))
