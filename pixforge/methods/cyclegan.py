"""CycleGAN: unpaired translation with cycle consistency (Zhu et al., ICCV 2017; DESIGN.md "CycleGAN").

Two generators, G_A: A -> B and G_B: B -> A (ResNet, 6 or 9 blocks), and two PatchGANs, named as in the
authors' code: D_A judges G_A's outputs against real B images, D_B judges G_B's outputs against real A images.
The objective (CycleGAN eq. 1-3, least-squares GAN loss, §4) is

    L_GAN(G_A, D_A) + L_GAN(G_B, D_B) + lambda_cycle * (||G_B(G_A(a)) - a||_1 + ||G_A(G_B(b)) - b||_1)
    + lambda_identity * lambda_cycle * (||G_A(b) - b||_1 + ||G_B(a) - a||_1)

with the identity term optional (§5.2; weight 0.5 * lambda in the authors' code). G_A(b) is defined only when
both domains have the same channel count, so the term is off otherwise (colorization: 1-channel L, 2-channel
ab), as the authors' code requires input_nc == output_nc for it. The discriminators learn
from a pool of the last 50 generated images (§4, after Shrivastava et al. 2017). The pools are training
state, saved per rank in the checkpoint's ``state.pt`` (:meth:`CycleGAN.training_state`), not in the weights
file, and draw from the CPU torch RNG, which the trainer saves, so a resumed run continues exactly: 6 steps
+ resume + 6 steps equals 12 steps, past the pool filling.

Directions are those of the data as trained (``data.direction`` swaps the folders' roles, as for every
method): ``generate(batch, direction="AtoB")`` (the default) runs G_A, ``"BtoA"`` runs G_B.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixforge.config import DIRECTIONS, bounded, choice
from pixforge.errors import PixforgeError
from pixforge.losses import GAN_MODES, GANLoss
from pixforge.methods.base import Batch, DataInfo, Method, Phase, Scalars, State
from pixforge.methods.pix2pix import TEST_MODES
from pixforge.nets.blocks import NORMS, use_checkpointing
from pixforge.nets.discriminators import PatchDiscriminator
from pixforge.nets.generators import GENERATORS, build_generator

log = logging.getLogger("pixforge")

#: the generator that translates in each direction
GENERATOR_OF = {"AtoB": "G_A", "BtoA": "G_B"}


@dataclass
class CycleGANConfig:
    """Networks and objective of CycleGAN (defaults: the paper's 256 px experiments, e.g. horse2zebra)."""

    netG: str = choice("resnet_9blocks", GENERATORS)
    """Generator of both directions (the paper: ResNet with 9 blocks at 256 px, 6 at 128 px)."""
    ngf: int = 64
    """Filters of the generators' first layer."""
    ndf: int = 64
    """Filters of the discriminators' first layer."""
    n_layers: int = 3
    """PatchGAN depth (3: the 70x70 PatchGAN)."""
    norm: str = choice("instance", NORMS)
    """Normalisation in G and D (the paper: instance norm)."""
    dropout: float = bounded(0.0, 0, 1, include_high=False)
    """Dropout probability in the generators' residual blocks."""
    gan_mode: str = choice("lsgan", GAN_MODES)
    """Adversarial loss (the paper: least squares, §4)."""
    lambda_cycle: float = 10.0
    """Weight of the cycle-consistency loss (eq. 2-3; 10 in the paper)."""
    lambda_identity: float = 0.5
    """Weight of the identity loss, times lambda_cycle (§5.2; 0 switches it off)."""
    pool_size: int = 50
    """Generated images kept in the pool the discriminators learn from (§4; 0: no pool)."""
    test_mode: str = choice("eval", TEST_MODES)
    """At test time: eval (deterministic) or paper (dropout on, batch statistics)."""
    checkpoint_activations: bool = False
    """Recompute the generators' activations in the backward pass instead of storing them (less memory)."""


class ImagePool:
    """The last ``size`` generated images; D learns from a mix of new and older ones (CycleGAN §4).

    Until the pool is full every image is stored and returned as is; then each image, with probability
    1/2, takes the place of a random stored one, which is returned instead. The draws come from the CPU
    torch RNG, so a query never waits for the device.

    Its state (:meth:`state` / :meth:`load`) is the stored images, slot by slot: the one thing besides the
    weights and the RNG that decides the next query, so a checkpoint that carries it resumes exactly.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def state(self) -> dict[str, Tensor]:
        """The stored images keyed by slot (``"0"``, ``"1"``, ...), each (C, H, W); empty before the first query.

        One tensor per slot, since images of different sizes (non-square data) may share a pool.
        """
        return {str(slot): image for slot, image in enumerate(self.images)}

    def load(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state` returned (slots 0..n-1); tensors move to the device at the next query."""
        self.images = [state[str(slot)].clone() for slot in range(len(state))]

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        draws = torch.rand(len(images)).tolist()
        slots = torch.randint(self.size, (len(images),)).tolist()
        out = []
        for image, draw, slot in zip(images.detach(), draws, slots, strict=True):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif draw < 0.5:
                old, self.images[slot] = self.images[slot].to(image.device), image.clone()
                out.append(old if old.shape == image.shape else image)
            else:
                out.append(image)
        return torch.stack(out)


class CycleGAN(Method):
    """G_A, G_B, D_A, D_B trained with LSGAN + cycle (+ identity) losses; phases G (both generators), D_A, D_B."""

    name = "cyclegan"
    config_type = CycleGANConfig

    def __init__(self, cfg: CycleGANConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        if info.label_nc:
            raise PixforgeError(
                f"{self.name}: labeled data is not supported; use two image domains (trainA/ trainB/)"
            )
        self.nets["G_A"] = self.make_generator(info.input_nc, info.output_nc)
        self.nets["G_B"] = self.make_generator(info.output_nc, info.input_nc)
        self.nets["D_A"] = self.make_discriminator(info.output_nc)
        self.nets["D_B"] = self.make_discriminator(info.input_nc)
        self.gan_loss = GANLoss(cfg.gan_mode)
        #: the identity term's weight: 0 when the domains' channel counts differ (G_A(b) is undefined)
        self.lambda_identity = cfg.lambda_identity if info.input_nc == info.output_nc else 0.0
        if cfg.lambda_identity > 0 and not self.lambda_identity:
            log.warning(
                "%s: no identity loss between %d- and %d-channel domains (lambda_identity ignored)",
                self.name,
                info.input_nc,
                info.output_nc,
            )
        #: pools of generated B images (for D_A) and generated A images (for D_B)
        self.pools = {"B": ImagePool(cfg.pool_size), "A": ImagePool(cfg.pool_size)}

    def training_state(self) -> dict[str, Tensor]:
        """The image pools, as ``pool_B.<slot>`` (generated B images, for D_A) and ``pool_A.<slot>`` (for D_B)."""
        return {
            f"pool_{side}.{slot}": t for side, pool in self.pools.items() for slot, t in pool.state().items()
        }

    def load_training_state(self, state: dict[str, Tensor]) -> None:
        for side, pool in self.pools.items():
            prefix = f"pool_{side}."
            pool.load({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    def make_generator(self, input_nc: int, output_nc: int) -> nn.Module:
        cfg = self.cfg
        size = min(self.info.size)
        generator = build_generator(cfg.netG, input_nc, output_nc, cfg.ngf, cfg.norm, cfg.dropout, size)
        return use_checkpointing(generator, cfg.checkpoint_activations)

    def make_discriminator(self, input_nc: int) -> nn.Module:
        return PatchDiscriminator(input_nc, self.cfg.ndf, self.cfg.n_layers, self.cfg.norm)

    @property
    def size_multiple(self) -> int:
        return max(int(getattr(self.nets[g], "size_multiple", 1)) for g in GENERATOR_OF.values())

    def translate(self, direction: str, x: Tensor, batch: Batch | None = None) -> Tensor:
        """G_A (``AtoB``) or G_B (``BtoA``) applied to ``x``.

        ``batch`` is given when ``x`` is that training batch's own image (``A`` for AtoB, ``B`` for BtoA),
        for methods that condition the generator on the sample (GuideGAN's attention).
        """
        return self.nets[GENERATOR_OF[direction]](x)

    def translate_other(self, direction: str, x: Tensor) -> Tensor:
        """The generator on an image that is not a sample's own input: a fake to reconstruct from, or the other
        domain's image for the identity term. Plain :meth:`translate` here; GuideGAN feeds it unguided."""
        return self.translate(direction, x)

    def forward_step(self, batch: Batch) -> State:
        real_A, real_B = batch["A"], batch["B"]
        fake_B = self.translate("AtoB", real_A, batch)
        fake_A = self.translate("BtoA", real_B, batch)
        return {
            "real_A": real_A,
            "real_B": real_B,
            "fake_B": fake_B,
            "fake_A": fake_A,
            "rec_A": self.translate_other("BtoA", fake_B),
            "rec_B": self.translate_other("AtoB", fake_A),
        }

    def phases(self) -> list[Phase]:
        return [
            Phase("G", ("G_A", "G_B"), self.loss_G),
            Phase("D_A", ("D_A",), self.loss_D_A),
            Phase("D_B", ("D_B",), self.loss_D_B),
        ]

    def loss_G(self, s: State) -> tuple[Tensor, Scalars]:
        """Both generators' GAN losses, lambda_cycle * the cycle losses (eq. 2-3) and the identity losses."""
        gan_A = self.gan_loss(self.nets["D_A"](s["fake_B"]), True, for_discriminator=False)
        gan_B = self.gan_loss(self.nets["D_B"](s["fake_A"]), True, for_discriminator=False)
        cycle_A = F.l1_loss(s["rec_A"], s["real_A"])
        cycle_B = F.l1_loss(s["rec_B"], s["real_B"])
        loss = gan_A + gan_B + self.cfg.lambda_cycle * (cycle_A + cycle_B)
        scalars = {"G_A": gan_A, "G_B": gan_B, "cycle_A": cycle_A, "cycle_B": cycle_B}
        if self.lambda_identity > 0:
            idt_A = F.l1_loss(self.translate_other("AtoB", s["real_B"]), s["real_B"])
            idt_B = F.l1_loss(self.translate_other("BtoA", s["real_A"]), s["real_A"])
            loss = loss + self.lambda_identity * self.cfg.lambda_cycle * (idt_A + idt_B)
            scalars.update(idt_A=idt_A, idt_B=idt_B)
        return loss, {k: v.detach() for k, v in scalars.items()}

    def _loss_D(self, name: str, real: Tensor, fake: Tensor) -> Tensor:
        """Least-squares D loss on real images and pooled fakes, halved to slow D down (CycleGAN §4)."""
        net = self.nets[name]
        return 0.5 * (self.gan_loss(net(real), True) + self.gan_loss(net(fake), False))

    def loss_D_A(self, s: State) -> tuple[Tensor, Scalars]:
        loss = self._loss_D("D_A", s["real_B"], self.pools["B"].query(s["fake_B"].detach()))
        return loss, {"D_A": loss.detach()}

    def loss_D_B(self, s: State) -> tuple[Tensor, Scalars]:
        loss = self._loss_D("D_B", s["real_A"], self.pools["A"].query(s["fake_A"].detach()))
        return loss, {"D_B": loss.detach()}

    def direction(self, options: dict[str, Any]) -> str:
        """The ``direction`` translation option (default AtoB); any other option is refused."""
        unknown = sorted(set(options) - {"direction"})
        if unknown:
            raise PixforgeError(
                f"{self.name} takes only the translation option direction (got {', '.join(unknown)})"
            )
        direction = options.get("direction") or "AtoB"
        if direction not in GENERATOR_OF:
            raise PixforgeError(f"option direction: '{direction}' is not one of {', '.join(DIRECTIONS)}")
        return direction

    def generate(self, batch: Batch, **options: Any) -> Tensor:
        """Translate ``batch["A"]`` with G_A (``direction="AtoB"``, the default) or G_B (``"BtoA"``)."""
        return self.translate(self.direction(options), batch["A"])

    def visuals(self, batch: Batch) -> dict[str, Tensor]:
        """Both cycles: A, G_A(A), G_B(G_A(A)), B, G_B(B), G_A(G_B(B)), then the method's extra maps."""
        with self.inference():
            fake_B = self.generate(batch, direction="AtoB")
            extras = self.explain(batch, fake_B)
            fake_A = self.translate("BtoA", batch["B"])
            return {
                "input": batch["A"],
                "output": fake_B,
                "reconstruction": self.translate_other("BtoA", fake_B),
                "B": batch["B"],
                "B_output": fake_A,
                "B_reconstruction": self.translate_other("AtoB", fake_A),
                **extras,
            }
