"""ONNX export of a colorization model: photo in, colour photo out, Lab in the graph, checked with onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

import pixforge
from pixforge.data import color
from pixforge.export import OnnxTranslator, export_run, read_metadata, session

#: the export's own check (pixforge.export.CHECK_TOLERANCE) on the [-1, 1] scale
PARITY = 1e-4
#: L on the network scale (/50) after two float32 Lab conversions, each within the 500 * 16 * eps32 Lab units
#: of scikit-image that tests/data/test_color.py derives
L_TOL = 2 * 500 * 16 * float(np.finfo(np.float32).eps) / 50


def test_graph_takes_a_photo_and_returns_the_photo_of_its_lightness(colour_run, tmp_path):
    result = export_run(colour_run, tmp_path / "c.onnx")
    assert result.inputs == ["image"] and result.max_diff <= PARITY
    spec = json.loads(read_metadata(result.path)["inputs"])
    assert spec["inputs"]["image"]["shape"][1] == 3 and spec["output"]["shape"][1] == 3
    photo = torch.rand(2, 3, 24, 40) * 2 - 1
    out = session(result.path).run(None, {"image": photo.numpy()})[0]
    assert out.shape == (2, 3, 24, 40)
    # the graph resizes inside: any size goes in, and the input's L comes out
    assert (color.lightness(torch.from_numpy(out)) - color.lightness(photo)).abs().max() <= L_TOL


def test_onnx_translator_matches_the_torch_translator(colour_run, colour_photos, tmp_path):
    path = export_run(colour_run, tmp_path / "c.onnx").path
    image = Image.open(sorted((colour_photos / "test").glob("*.png"))[0]).convert("RGB").resize((32, 32))
    ours = np.asarray(pixforge.load(colour_run)(image), dtype=int)
    onnx_out = np.asarray(OnnxTranslator(path)(image), dtype=int)
    assert onnx_out.shape == ours.shape
    # at the training size no resize happens: the same numbers up to the 8-bit rounding of near-ties
    assert np.abs(onnx_out - ours).max() <= 1
