"""What a production model server has, against live servers on 127.0.0.1: readiness apart from liveness,
request ids and access logs, a YAML serve config with per-model batching, CORS, RFC 7235 auth, an OpenAPI
document that lists every error, and exported ONNX files served through onnxruntime."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pixforge.cli import main
from pixforge.client import Client, upload_bytes
from pixforge.errors import PixforgeError
from pixforge.export import export_run
from pixforge.serve.app import create_app
from pixforge.serve.server import background, make_server
from pixforge.serve.settings import load_config


def test_readyz_is_false_while_loading_and_draining_while_healthz_stays_live(
    serve_runs: dict[str, Path], settings, gate, live
):
    app = create_app(settings([serve_runs["p2p"]]))
    held = gate(app, "p2p")  # holds the start-up run of the model
    with background(app) as url:
        assert held.entered.wait(30)
        status, _, body = live.http(url, "GET", "/readyz")
        assert status == 503 and json.loads(body)["status"] == "loading"
        assert live.http(url, "GET", "/healthz")[0] == 200
        held.open()
        live.wait_ready(url)
        assert json.loads(live.http(url, "GET", "/readyz")[2]) == {"ready": True, "status": "ready"}
        make_server(app, "127.0.0.1", 0).handle_exit(signal.SIGTERM, None)  # what SIGTERM does to the server
        status, _, body = live.http(url, "GET", "/readyz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        assert live.http(url, "GET", "/healthz")[0] == 200


def test_every_answer_has_a_request_id_and_an_access_log_line(
    server: str, live, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level("INFO", logger="pixforge.serve.access"):
        status, headers, _ = live.http(server, "GET", "/v1/models", headers={"X-Request-ID": "abc-123"})
        assert status == 200 and headers["x-request-id"] == "abc-123"
        status, headers, _ = live.http(server, "GET", "/v1/models/nope")
        assert status == 404 and len(headers["x-request-id"]) == 32  # made up when none was sent
        made = headers["x-request-id"]
        _, headers, _ = live.http(server, "GET", "/healthz", headers={"X-Request-ID": "no spaces allowed"})
        assert headers["x-request-id"] != "no spaces allowed"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pixforge.serve.access"]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["abc-123"]["path"] == "/v1/models" and by_id["abc-123"]["status"] == 200
    assert by_id[made]["status"] == 404 and by_id[made]["method"] == "GET" and by_id[made]["ms"] >= 0


def test_a_serve_config_file_sets_batching_per_model(serve_runs: dict[str, Path], tmp_path: Path, live):
    config = tmp_path / "serve.yaml"
    models = [{"run": str(serve_runs["p2p"]), "max_batch": 1, "max_wait_ms": 0}, str(serve_runs["hd"])]
    config.write_text(yaml.safe_dump({"device": "cpu", "max_batch": 4, "max_queue": 7, "models": models}))
    settings = load_config(config, max_wait_ms=25.0)
    with background(create_app(settings)) as url:
        info = {m["name"]: m["batching"] for m in Client(url).models()}
    assert info["p2p"] == {"max_batch": 1, "max_wait_ms": 0, "max_queue": 7}
    assert info["hd"] == {"max_batch": 4, "max_wait_ms": 25.0, "max_queue": 7}


def test_a_bad_serve_config_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    config = tmp_path / "serve.yaml"
    config.write_text("max_batch: 4\nmax_batchez: 2\n")
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and str(config) in err and "max_batchez" in err and "\n" not in err
    config.write_text("models:\n  - run: x\n    max_batch: 0\n")
    with pytest.raises(PixforgeError, match="max_batch"):
        load_config(config).validate()


def test_cors_origin_and_rfc7235_auth(serve_runs: dict[str, Path], settings, photo, live):
    app = create_app(settings([serve_runs["p2p"]], token="s3cret", cors_origins=["https://app.example"]))
    with background(app) as url:
        preflight = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        status, headers, _ = live.http(url, "OPTIONS", "/v1/models/p2p/translate", headers=preflight)
        assert status == 200 and headers["access-control-allow-origin"] == "https://app.example"
        status, headers, _ = live.http(
            url, "OPTIONS", "/v1/models", headers={**preflight, "Origin": "https://evil"}
        )
        assert "access-control-allow-origin" not in headers
        status, headers, _ = live.http(url, "GET", "/v1/models", headers={"Origin": "https://app.example"})
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert headers["access-control-allow-origin"] == "https://app.example"
        for scheme in ("bearer", "BEARER", "Bearer"):
            assert (
                live.http(url, "GET", "/v1/models", headers={"Authorization": f"{scheme} s3cret"})[0] == 200
            )
        status, headers, _ = live.http(url, "GET", "/v1/models", headers={"Authorization": "Basic s3cret"})
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
        assert live.http(url, "GET", "/docs")[0] == 200  # docs stay open; the API needs the token
        schema = json.loads(live.http(url, "GET", "/openapi.json")[2])
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert schema["paths"]["/v1/models"]["get"]["security"] == [{"bearer": []}]
        status, _, _ = live.post_upload(
            url, "p2p", {"image": upload_bytes(photo())}, Authorization="bearer s3cret"
        )
        assert status == 200


def test_openapi_lists_every_error_status_of_each_endpoint(server: str, live):
    paths = json.loads(live.http(server, "GET", "/openapi.json")[2])["paths"]
    expected = {
        ("/healthz", "get"): {"500"},
        ("/readyz", "get"): {"500", "503"},
        ("/v1/models", "get"): {"401", "500"},
        ("/v1/models/{name}", "get"): {"401", "404", "422", "500"},
        ("/metrics", "get"): {"401", "500"},
        ("/v1/models/{name}/translate", "post"): {
            "400",
            "401",
            "404",
            "408",
            "413",
            "415",
            "422",
            "500",
            "503",
            "504",
        },
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        errors = {s for s in responses if s >= "400"}
        assert errors == statuses, (path, errors)
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    form = paths["/v1/models/{name}/translate"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"image", "label", "instance", "style_seed"} <= set(form["schema"]["properties"])


def test_an_exported_onnx_file_is_served_through_onnxruntime(
    serve_runs: dict[str, Path], tmp_path: Path, settings, photo
):
    """The same picture as the torch-served run, up to one 8-bit level: the two runtimes' float results differ
    by about 1e-6, which moves a value across a rounding boundary at most by one level."""
    onnx_file = tmp_path / "p2p-graph.onnx"
    export_run(serve_runs["p2p"], onnx_file)
    app = create_app(settings([serve_runs["p2p"], onnx_file]))
    with background(app) as url:
        client = Client(url)
        models = {m["name"]: m for m in client.models()}
        assert models["p2p-graph"]["backend"] == "onnxruntime" and models["p2p"]["backend"] == "torch"
        for size in ((32, 32), (40, 24)):
            image = photo(size)
            by_onnx = np.asarray(client.translate(image, model="p2p-graph"), dtype=np.int16)
            by_torch = np.asarray(client.translate(image, model="p2p"), dtype=np.int16)
            assert by_onnx.shape == by_torch.shape and np.abs(by_onnx - by_torch).max() <= 1
        bad = Image.fromarray(np.zeros((32, 32), dtype=np.uint8))
        with pytest.raises(Exception, match="422"):
            client.translate(label=bad, model="p2p-graph")
