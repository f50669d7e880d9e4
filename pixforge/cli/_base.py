"""The root ``pixforge`` group and what its commands share: launch options, relaunching under torchrun."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from pixforge import __version__


def _presets_help() -> str:
    """Every method's presets, for ``train --help``."""
    from pixforge.config import preset_names
    from pixforge.methods import METHODS

    return "; ".join(f"{m}: {', '.join(preset_names(m)) or 'none'}" for m in METHODS)


PRESETS_HELP = _presets_help()

#: explanation maps written beside outputs by --show-region (DRPAN) and --show-attention (GuideGAN)
REGION_MAPS = {"score", "region"}
ATTENTION_MAPS = {"attention", "attention_output"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixforge")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """pixforge: image-to-image translation with conditional GANs."""


def launch_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add --nproc, --nnodes, --node-rank and --rdzv-endpoint; the command receives them as ``launch``."""
    from pixforge.distributed import Launch

    @functools.wraps(command)
    def wrapper(
        *, nproc: int, nnodes: int, node_rank: int | None, rdzv_endpoint: str | None, **kwargs: Any
    ) -> None:
        command(launch=Launch(nproc, nnodes, node_rank, rdzv_endpoint), **kwargs)

    options = [
        click.option(
            "--nproc", default=1, show_default=True, help="Processes on this machine (one per GPU)."
        ),
        click.option("--nnodes", default=1, show_default=True, help="Machines in the job."),
        click.option("--node-rank", type=int, help="This machine's rank (0 hosts the rendezvous)."),
        click.option(
            "--rdzv-endpoint", metavar="HOST:PORT", help="Rendezvous address: node 0's host and a port."
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


LAUNCH_PARAMS = {"nproc", "nnodes", "node_rank", "rdzv_endpoint"}


def relaunch(launch: Any, device: str) -> None:
    """Run the current command again as ``launch`` describes, through torch.distributed.run; exit with its code."""
    from pixforge.distributed import launch as run_launch

    launch.check(device)
    ctx = click.get_current_context()
    sys.exit(run_launch(launch, _command_args(ctx)))


def _command_args(ctx: click.Context) -> list[str]:
    """The command line of ``ctx``'s command rebuilt from its parsed values, less the launch options."""
    args = ["--debug"] if ctx.parent is not None and ctx.parent.params.get("debug") else []
    args.append(ctx.info_name or "")
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name in LAUNCH_PARAMS or value is None or value is False or value == ():
            continue
        if isinstance(param, click.Argument):
            args += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
            continue
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            args.append(flag)
        elif getattr(param, "multiple", False):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args
