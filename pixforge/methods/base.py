"""The Method contract: what every paper's file provides to the method-agnostic trainer.

A method owns its networks (``self.nets``) and describes one training iteration as a shared forward pass
(:meth:`Method.forward_step`) followed by named phases (:class:`Phase`: the D step, the G step, a reviser
step, ...). Each phase names the networks it trains and returns its loss and detached scalars; the trainer
owns the optimisers, autocast, gradient bookkeeping and logging, so DDP, AMP and compile wrap a step
without the method knowing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pixforge.errors import PixforgeError

Batch = dict[str, Any]
State = dict[str, Any]
Scalars = dict[str, Tensor]


@dataclass(frozen=True)
class DataInfo:
    """What the data tells a method: channels in and out, the training crop size, the label count."""

    input_nc: int
    output_nc: int
    size: tuple[int, int]
    label_nc: int = 0


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a training iteration: ``loss(state)`` trains the networks ``nets``."""

    name: str
    nets: tuple[str, ...]
    loss: Callable[[State], tuple[Tensor, Scalars]]


class Method(nn.Module, ABC):
    """Base class of the methods in :mod:`pixforge.methods` (one paper, one file)."""

    name: ClassVar[str]
    config_type: ClassVar[type]

    def __init__(self, cfg: Any, info: DataInfo) -> None:
        super().__init__()
        self.cfg = cfg
        self.info = info
        self.nets = nn.ModuleDict()
        #: set by the trainer before every iteration, for methods whose schedule has stages
        self.current_step = 0
        self.steps_per_epoch = 1

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this for the generator (inputs are padded to it)."""
        return int(getattr(self.nets["G"], "size_multiple", 1))

    @abstractmethod
    def forward_step(self, batch: Batch) -> State:
        """The shared forward pass of an iteration (generator outputs), before the phases run."""

    @abstractmethod
    def phases(self) -> list[Phase]:
        """The optimisation phases of one iteration, in order."""

    def generate(self, batch: Batch, **options: Any) -> Tensor:
        """Translate a batch (``A``, and for labeled data ``label``/``instance``) with the networks' current mode.

        ``options`` are method-specific choices at translation time (pix2pixHD's ``cluster``, ...); a method
        refuses options it does not know.
        """
        if options:
            raise PixforgeError(
                f"{self.name} takes no translation options (got {', '.join(sorted(options))})"
            )
        return self.nets["G"](batch["A"])

    def explain(self, batch: Batch, output: Tensor) -> dict[str, Tensor]:
        """Extra maps that show how a method sees its output (DRPAN's region, GuideGAN's attention), in [-1, 1]."""
        return {}

    def visuals(self, batch: Batch) -> dict[str, Tensor]:
        """Named image batches in [-1, 1] for sample grids: input, output, target and the method's extras."""
        with self.inference():
            out = self.generate(batch)
            extras = self.explain(batch, out)
        return {"input": batch["A"], "output": out, "target": batch["B"], **extras}

    def load_init(self, weights: dict[str, Tensor]) -> list[str]:
        """Initialise from another run's weights (``--init-from``): copy every tensor whose name and shape match.

        Returns the names copied; methods override this to map weights between architectures.
        """
        own = self.state_dict()
        matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(matched, strict=False)
        return sorted(matched)

    def before_training(self, dataset: Any) -> None:
        """Work done once with the training dataset before the first step (e.g. sizing per-sample caches)."""

    def after_training(self, dataset: Any, device: torch.device) -> None:
        """Work done once when the schedule completes, before the final checkpoint (e.g. feature clustering)."""

    def inference_train_mode(self) -> bool:
        """Whether networks stay in train mode at test time (pix2pix keeps dropout on: its §3.1)."""
        return getattr(self.cfg, "test_mode", "eval") == "paper"

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Run without gradients in the configured test mode, leaving every buffer and the mode as found.

        With the paper's test mode networks run in train mode (dropout on, batch statistics), so batch norm
        would otherwise update its running statistics; they are restored afterwards.
        """
        was_training = self.training
        buffers = {k: v.clone() for k, v in self.named_buffers()}
        self.train(self.inference_train_mode())
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)
            with torch.no_grad():
                for k, v in self.named_buffers():
                    v.copy_(buffers[k])

    def extra_state(self) -> dict[str, Tensor]:
        """Tensors besides the weights that inference needs (pix2pixHD's cluster centres).

        They go into the weights file, ``model.safetensors``, under ``extra.``, and :func:`pixforge.load`
        restores them; state that only training needs belongs in :meth:`training_state`.
        """
        return {}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def training_state(self) -> dict[str, Tensor]:
        """Tensors that only training needs to continue exactly (image pools, attention caches).

        The trainer saves them per rank in the checkpoint's ``state.pt``, never in the weights file, and
        gives each rank its own back on ``--resume``; translating, exporting and serving never see them.
        """
        return {}

    def load_training_state(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`training_state` returned."""
