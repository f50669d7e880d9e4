"""Micro-batching: concurrent requests share forward passes without changing any answer; inference runs off
the event loop."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import pixforge
from pixforge.client import Client
from pixforge.errors import PixforgeError
from pixforge.serve.app import create_app
from pixforge.serve.registry import ModelRegistry
from pixforge.serve.server import background


def batch_stats(url: str, model: str) -> tuple[float, float]:
    """(forward passes, samples) of ``model`` from /metrics."""
    values = {}
    for line in Client(url).metrics().splitlines():
        for key in ("count", "sum"):
            if line.startswith(f'pixforge_batch_size_{key}{{model="{model}"}}'):
                values[key] = float(line.split()[-1])
    return values.get("count", 0.0), values.get("sum", 0.0)


def close(a, b) -> bool:
    """Equal up to one 8-bit level (a batched convolution may round its last float bit differently)."""
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max()) <= 1


def concurrent(url: str, jobs: list[dict]) -> list:
    client = Client(url)
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda kw: client.translate(**kw), jobs))


def test_concurrent_requests_are_stacked_and_answers_do_not_change(
    serve_runs: dict[str, Path], settings, photo, label_map
):
    local_p2p = pixforge.load(serve_runs["p2p"], device="cpu")
    local_hd = pixforge.load(serve_runs["hd"], device="cpu")
    images = [photo(seed=i) for i in range(8)]
    labels = [label_map(seed=i) for i in range(6)]
    app = create_app(settings([serve_runs["p2p"], serve_runs["hd"]], max_batch=4, max_wait_ms=400))
    with background(app) as url:
        outs = concurrent(url, [{"image": im, "model": "p2p"} for im in images])
        passes, samples = batch_stats(url, "p2p")
        assert samples == 8 and passes <= 4  # at most 4 per pass, and they did share passes
        for image, out in zip(images, outs, strict=True):
            assert close(out, local_p2p(image))
        # different options never share a pass: each answer is its own cluster's
        jobs = [{"label": lab, "model": "hd", "cluster": i % 2} for i, lab in enumerate(labels)]
        for job, out in zip(jobs, concurrent(url, jobs), strict=True):
            expected = local_hd(job["label"], cluster=job["cluster"])
            assert close(out, expected)
        passes, samples = batch_stats(url, "hd")
        assert samples == 6 and passes >= 2


def test_max_batch_one_runs_every_request_alone(serve_runs: dict[str, Path], settings, photo):
    app = create_app(settings([serve_runs["p2p"]], max_batch=1, max_wait_ms=50))
    with background(app) as url:
        concurrent(url, [{"image": photo(seed=i)} for i in range(6)])
        assert batch_stats(url, "p2p") == (6.0, 6.0)


def test_server_answers_while_a_batch_is_waiting(serve_runs: dict[str, Path], settings, photo):
    app = create_app(settings([serve_runs["p2p"]], max_batch=8, max_wait_ms=2000))
    with background(app) as url:
        result = {}
        worker = threading.Thread(target=lambda: result.update(out=Client(url).translate(photo())))
        worker.start()
        health = Client(url, timeout=1.5).health()
        assert health["status"] == "ok" and worker.is_alive()  # the translation still waits for company
        worker.join(10)
        assert result["out"].size == (32, 32)


def test_paper_mode_models_are_served_per_sample(synth_root: Path, tmp_path: Path, photo):
    """Batch norm with batch statistics (pix2pix's paper test mode) would mix the samples of a batch; the
    served model normalises each sample alone, so a stacked pass gives the single answers."""
    run = tmp_path / "paper"
    pixforge.train("pix2pix", synth_root / "aligned", run, preset="tiny", steps=1, overrides={"dropout": 0.0})
    translator = ModelRegistry.load([run], device="cpu").get("paper").translator
    assert translator.config.model.test_mode == "paper"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    together = translator.translate_batch({"A": x})["output"]
    alone = torch.cat([translator.translate_batch({"A": x[i : i + 1]})["output"] for i in range(2)])
    assert (together - alone).abs().max() < 1e-5
    plain = pixforge.load(run, device="cpu")
    mixed = plain.translate_batch({"A": x})["output"]
    assert (mixed - alone).abs().max() > 1e-3  # what batching would do without per-sample norms


def test_amp_needs_cuda(serve_runs: dict[str, Path], settings):
    with pytest.raises(PixforgeError, match="CUDA only"):
        create_app(settings([serve_runs["p2p"]], amp="bf16"))
