"""The HTTP API against a live server: models, translation per method, explain maps, metrics, the client."""

from __future__ import annotations

import json
from pathlib import Path
from urllib import request

import numpy as np
import pytest
from PIL import Image

import pixforge
from pixforge.client import Client, ServerError, upload_bytes
from pixforge.serve.app import create_app
from pixforge.serve.server import background


def arrays_equal(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_models_lists_what_a_front_end_needs(server: str):
    models = {m["name"]: m for m in Client(server).models()}
    assert list(models) == ["p2p", "hd", "drpan", "cycle", "guide"]
    hd = models["hd"]
    assert hd["method"] == "pix2pixhd" and hd["input"] == "labels" and hd["label_nc"] == 13
    assert hd["classes"][2] == "facade" and hd["palette"][2] == [0, 48, 255] and hd["instances"]
    assert hd["styles"] and set(hd["options"]) == {"cluster", "style_seed"} and hd["clusters"]
    assert models["cycle"]["directions"] == ["AtoB", "BtoA"] and models["drpan"]["explain"] == ["region"]
    assert models["p2p"]["input"] == "image" and models["p2p"]["options"] == []
    with request.urlopen(server + "/openapi.json") as resp:
        assert "/v1/models/{name}/translate" in json.loads(resp.read())["paths"]
    with request.urlopen(server + "/docs") as resp:
        assert resp.status == 200 and b"swagger" in resp.read().lower()


def test_translate_answers_a_png_equal_to_local_translation(server: str, serve_runs: dict[str, Path], photo):
    image = photo((40, 24))
    out = Client(server).translate(image, model="p2p")
    assert out.size == (40, 24)
    assert arrays_equal(out, pixforge.load(serve_runs["p2p"], device="cpu")(image))


def test_pix2pixhd_labels_instances_and_cluster(server: str, serve_runs: dict[str, Path], label_map):
    label = label_map()
    instance = Image.fromarray(np.asarray(label).astype(np.int32) * 1000 + 7)
    local = pixforge.load(serve_runs["hd"], device="cpu")
    client = Client(server)
    outs = [client.translate(label=label, instance=instance, model="hd", cluster=k) for k in (0, 1)]
    for k, out in enumerate(outs):
        assert arrays_equal(out, local(label, instance, cluster=k))
    assert not arrays_equal(outs[0], outs[1])
    seeded = client.translate(label=label, model="hd", style_seed=3)
    assert arrays_equal(seeded, local(label, style_seed=3))


def test_cyclegan_direction_picks_the_generator(server: str, serve_runs: dict[str, Path], photo):
    image = photo()
    local = pixforge.load(serve_runs["cycle"], device="cpu")
    client = Client(server)
    for direction in ("AtoB", "BtoA"):
        assert arrays_equal(
            client.translate(image, model="cycle", direction=direction), local(image, direction=direction)
        )


def test_explain_region_returns_json_with_maps(server: str, serve_runs: dict[str, Path], photo):
    image = photo()
    maps = Client(server).translate(image, model="drpan", explain="region")
    assert set(maps) == {"output", "score", "region"} and all(m.size == (32, 32) for m in maps.values())
    local = pixforge.load(serve_runs["drpan"], device="cpu").translate(image)
    assert all(arrays_equal(maps[k], local[k]) for k in maps)


def test_explain_attention_returns_guidegan_maps(server: str, photo):
    maps = Client(server).translate(photo(), model="guide", explain="attention")
    assert set(maps) == {"output", "attention", "attention_output"}
    assert np.asarray(maps["attention"]).min() == 255  # the test-time all-ones map


def test_metrics_count_requests_latency_batches_and_errors(server: str, photo):
    client = Client(server)
    client.translate(photo(), model="p2p")
    with pytest.raises(ServerError):
        client.translate(photo(), model="nope")
    text = client.metrics()
    assert 'pixforge_requests_total{path="/v1/models/{name}/translate",status="200"}' in text
    assert 'pixforge_errors_total{status="404"}' in text
    assert 'pixforge_request_seconds_bucket{le="0.5",path="/v1/models/{name}/translate"}' in text
    assert 'pixforge_batch_size_count{model="p2p"}' in text


def test_token_guards_every_endpoint_but_health_and_docs(serve_runs: dict[str, Path], settings, photo):
    app = create_app(settings([serve_runs["p2p"]], token="s3cret"))
    with background(app) as url:
        assert Client(url).health()["status"] == "ok"
        for path in ("/v1/models", "/metrics", "/v1/models/p2p"):
            with pytest.raises(ServerError) as err:
                Client(url, token="wrong")._request("GET", path)
            assert err.value.status == 401
        with pytest.raises(ServerError) as err:
            Client(url).translate(photo(), model="p2p")
        assert err.value.status == 401 and "token" in err.value.message
        assert Client(url, token="s3cret").translate(photo()).size == (32, 32)


def test_runs_with_the_same_directory_name_get_distinct_names(
    serve_runs: dict[str, Path], tmp_path: Path, settings
):
    import shutil

    twin = tmp_path / "p2p"
    shutil.copytree(serve_runs["p2p"], twin)
    app = create_app(settings([serve_runs["p2p"], twin]))
    assert app.state.registry.names() == ["p2p", "p2p-2"]
    assert app.state.registry.get("p2p-2").info()["name"] == "p2p-2"


def test_a_request_names_no_file(server: str, photo):
    body = upload_bytes(photo())
    for name in ("..%2F..%2Fetc%2Fpasswd", "%2Ftmp", "p2p%2F..%2Fhd"):
        req = request.Request(f"{server}/v1/models/{name}/translate", data=body, method="POST")
        with pytest.raises(Exception) as err:
            request.urlopen(req)
        assert getattr(err.value, "code", None) in (404, 422)
