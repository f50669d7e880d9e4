"""``pixforge serve``, ``studio``, ``study`` and ``scene``: what listens on a port and what it stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from pixforge.cli._base import cli
from pixforge.errors import PixforgeError
from pixforge.serve.settings import DEFAULT_BATCH_PIXELS, DEFAULT_MAX_PIXELS, ServeSettings, load_config

ALLOWED_HOST_HELP = (
    "A Host name the server answers to, besides the bind address and localhost (repeatable; '*': any). "
    "Other Host headers are refused (DNS rebinding)."
)


@cli.command(name="serve")
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML serve config: settings and models with their own batching (flags given override it).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--max-batch", default=8, show_default=True, type=int, help="Requests per forward pass.")
@click.option("--max-wait-ms", default=10.0, show_default=True, type=float, help="Wait for a batch to fill.")
@click.option(
    "--max-batch-pixels",
    default=DEFAULT_BATCH_PIXELS,
    show_default=True,
    type=int,
    help="Pixels in one forward pass (a larger request runs alone).",
)
@click.option(
    "--max-queue", default=64, show_default=True, type=int, help="Requests waiting per model; then 503."
)
@click.option(
    "--timeout-ms",
    default=30_000.0,
    show_default=True,
    type=float,
    help="Longest wait in the queue; then 504.",
)
@click.option(
    "--header-timeout-s",
    default=10.0,
    show_default=True,
    type=float,
    help="Time to send a request's headers.",
)
@click.option("--body-timeout-s", default=30.0, show_default=True, type=float, help="Time to send a body.")
@click.option(
    "--token", help="Require 'Authorization: Bearer TOKEN' on the API (not /healthz, /readyz, /docs)."
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Origin allowed to call the API from a browser (repeatable).",
)
@click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=int,
    help="Largest upload in pixels (the default fits a worker in about 1.5 GB).",
)
@click.option("--max-bytes", default=20 * 2**20, show_default=True, type=int, help="Largest upload in bytes.")
@click.option("--amp", default="none", type=click.Choice(["none", "bf16"]), help="bf16 autocast (CUDA).")
@click.option("--allowed-host", "allowed_host", multiple=True, help=ALLOWED_HOST_HELP)
def serve_cmd(runs: tuple[Path, ...], config_file: Path | None, host: str, port: int, **options: Any) -> None:
    """Serve the models in RUNS (run folders or exported .onnx files) over HTTP (API docs at /docs);
    SIGTERM drains requests and exits 0."""
    from pixforge.serve.app import create_app
    from pixforge.serve.server import listen
    from pixforge.serve.server import run as run_server

    settings = serve_settings(runs, config_file, host, options)
    sock = listen(host, port)
    app = create_app(settings)
    click.echo(f"serving {', '.join(app.state.registry.names())} on http://{host}:{port} (docs: /docs)")
    run_server(app, host, port, sock)


def serve_settings(
    runs: tuple[Path, ...], config_file: Path | None, host: str, options: dict[str, Any]
) -> ServeSettings:
    """Flags over the config file: a flag counts when given on the command line, else the file's value. The
    allowed Host names follow ``--host`` and ``--allowed-host``."""
    from pixforge.serve.security import allowed_hosts

    hosts = allowed_hosts(host, options.pop("allowed_host"))
    options["cors_origins"] = list(options["cors_origins"])
    if config_file is None:
        if not runs:
            raise PixforgeError("serve: name at least one run (or --config with models)")
        return ServeSettings(list(runs), **options, allowed_hosts=hosts)
    context = click.get_current_context()
    given = {
        k: v
        for k, v in options.items()
        if context.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE
    }
    if not config_file.is_file():
        raise PixforgeError(f"--config {config_file}: no such file")
    settings = load_config(config_file, **given, allowed_hosts=hosts)
    settings.runs = [*settings.runs, *runs]
    if not settings.runs:
        raise PixforgeError(f"--config {config_file}: no models (add 'models:' or name runs)")
    return settings


# studio and studies (the web studio on the serve app; perceptual studies in SQLite) --------------------------

DB_HELP = "The studies' SQLite file (default: $XDG_DATA_HOME/pixforge/studies.sqlite, ~/.local/share/...)."


def default_study_db() -> Path:
    """The studies file when none is named: a user data file, so that no database lands in the folder a
    command happens to start in (a checkout); ``studio``, ``study create`` and ``study report`` agree on it."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    (data_home / "pixforge").mkdir(parents=True, exist_ok=True)
    return data_home / "pixforge" / "studies.sqlite"


def study_db_option(*names: str):  # noqa: ANN201 - a click decorator
    """The ``--db``/``--study-db`` option: an optional path, :func:`default_study_db` when left out."""
    return click.option(
        *names,
        type=click.Path(path_type=Path),
        callback=lambda ctx, param, value: value or default_study_db(),
        help=DB_HELP,
    )


@cli.command(name="studio")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (127.0.0.1: this machine only)."
)
@click.option("--port", default=8000, show_default=True)
@study_db_option("--study-db")
@click.option("--admin-token", help="Token of the admin pages (default: a random one, printed at start).")
@click.option(
    "--token",
    help="Require this token (Authorization: Bearer TOKEN, or sign in at /login) for the model API, /metrics, "
    "/docs and the translate and paint pages; study pages stay open to participants.",
)
@click.option("--allowed-host", "allowed_host", multiple=True, help=ALLOWED_HOST_HELP)
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def studio_cmd(
    runs: tuple[Path, ...],
    host: str,
    port: int,
    study_db: Path,
    admin_token: str | None,
    token: str | None,
    allowed_host: tuple[str, ...],
    device: str,
) -> None:
    """The web studio for the models in RUNS: translate, paint, and perceptual studies."""
    from pixforge.serve.app import ServeSettings
    from pixforge.serve.security import allowed_hosts
    from pixforge.serve.server import listen
    from pixforge.serve.server import run as run_server
    from pixforge.studio.app import StudioSettings, create_studio_app

    sock = listen(host, port)
    settings = ServeSettings(list(runs), device, allowed_hosts=allowed_hosts(host, allowed_host))
    app = create_studio_app(settings, StudioSettings(study_db, admin_token, token))
    base = f"http://{host}:{port}"
    click.echo(
        f"studio for {', '.join(app.state.registry.names())} on {base}/studio/ (studies in {study_db})"
    )
    if token:
        click.echo(f"sign in with the token at {base}/login")
    click.echo(f"admin: {base}/studio/admin#token={app.state.admin_token}")
    run_server(app, host, port, sock)


@cli.group(name="study")
def study_group() -> None:
    """Perceptual studies (real-vs-fake, A/B) kept in a SQLite file."""


@study_group.command(name="create")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(["real-vs-fake", "ab"]))
@click.option("--real", type=click.Path(path_type=Path), help="Folder of real images.")
@click.option(
    "--fake", "fakes", multiple=True, metavar="[NAME=]DIR", help="Generated images (repeatable; by stem)."
)
@click.option(
    "--exposure-ms", default="1000", show_default=True, help="1000, a range 125-8000, or unlimited."
)
@click.option("--practice", default=10, show_default=True, help="Practice trials (with feedback).")
@click.option("--trials", default=40, show_default=True, help="Trials after the practice.")
@click.option("--seed", default=0, show_default=True, help="Seed of every participant's order.")
@click.option(
    "--require-worker",
    is_flag=True,
    help="One session per worker id, through signed worker links only (pixforge study links).",
)
@click.option(
    "--anonymous-per-client",
    default=3,
    show_default=True,
    help="Sessions without a worker id one client address may open (0: no bound).",
)
@study_db_option("--db", "study_db")
def study_create(
    name: str,
    kind: str,
    real: Path | None,
    fakes: tuple[str, ...],
    exposure_ms: str,
    practice: int,
    trials: int,
    seed: int,
    require_worker: bool,
    anonymous_per_client: int,
    study_db: Path,
) -> None:
    """Create study NAME from image folders (or run outputs) matched by file stem."""
    from pixforge.studio.protocol import create_study
    from pixforge.studio.store import StudyStore

    study = create_study(
        StudyStore(study_db),
        name,
        kind,
        real,
        fakes,
        exposure_ms,
        practice,
        trials,
        seed,
        require_worker,
        anonymous_per_client,
    )
    click.echo(
        f"study {study.name}: {study.kind}, conditions {', '.join(study.conditions)}, exposure {study.exposure}, "
        f"{study.practice} practice + {study.trials} trials; open link /study/{study.name} (in {study_db})"
    )
    if study.require_worker:
        click.echo(f"workers join through signed links: pixforge study links {study.name} --worker ID ...")


@study_group.command(name="links")
@click.argument("name")
@click.option("--worker", "workers", multiple=True, required=True, help="A worker id (repeatable).")
@study_db_option("--db", "study_db")
def study_links(name: str, workers: tuple[str, ...], study_db: Path) -> None:
    """Signed links of study NAME for the given worker ids, one a line (append them to the studio's URL)."""
    from pixforge.studio.protocol import signed_link
    from pixforge.studio.store import StudyStore

    if not study_db.is_file():
        raise PixforgeError(f"--db {study_db}: no such study database")
    study = StudyStore(study_db).study(name)
    for worker in workers:
        click.echo(signed_link(study, worker))


@study_group.command(name="report")
@click.argument("name")
@study_db_option("--db", "study_db")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Write report.md, report.html and report.json here."
)
def study_report_cmd(name: str, study_db: Path, out: Path | None) -> None:
    """Fooling or preference rates of study NAME with 95% intervals (markdown on stdout)."""
    from pixforge.studio.report import study_report, to_markdown, write_report
    from pixforge.studio.store import StudyStore

    if not study_db.is_file():
        raise PixforgeError(f"--db {study_db}: no such study database")
    report = study_report(StudyStore(study_db), name)
    click.echo(to_markdown(report), nl=False)
    if out is not None:
        for path in write_report(report, out):
            click.echo(f"wrote {path}")


@cli.group(name="scene")
def scene_group() -> None:
    """Scenes painted in the studio (label + instance maps + styles)."""


@scene_group.command(name="render")
@click.argument("scene", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The rendered photo (PNG).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def scene_render(scene: Path, run: Path, out: Path, device: str) -> None:
    """Render SCENE (saved by the studio's paint page) with the model in RUN, as the studio does."""
    from pixforge.studio.paint import render_file

    render_file(scene, run, out, device)
    click.echo(f"wrote {out}")
