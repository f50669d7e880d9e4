"""pix2pix: conditional GAN with an L1 term (Isola et al., CVPR 2017; papers/001_*).

G* = arg min_G max_D L_cGAN(G, D) + lambda_l1 * L_L1(G) (eq. 4), with a U-Net or ResNet generator whose
only noise is dropout (§3.1), and a PatchGAN discriminator on concat(x, y) (§3.2.2). The D objective is
halved to slow D relative to G (§3.3). Test-time behaviour is selectable: ``test_mode=paper`` keeps dropout
on and normalises with the test batch's statistics, as the paper does; ``test_mode=eval`` is the usual
deterministic inference with running statistics.

The ablations of the paper's Tables 1-2 are plain options: ``lambda_gan`` weighs the adversarial term
(0 is Table 1's "L1": no discriminator is built or stepped), ``conditional_d=false`` gives the
unconditional D(y) of "GAN" and "L1+GAN" (§4.2), and ``netG=encoder_decoder`` (depth from the size) or
``encoder_decoder_128/256`` the U-Net without its skips (§3.2.1, Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pixforge.config import bounded, choice
from pixforge.errors import PixforgeError
from pixforge.losses import GAN_MODES, GANLoss
from pixforge.methods.base import Batch, DataInfo, Method, Phase, Scalars, State
from pixforge.nets.blocks import NORMS, use_checkpointing
from pixforge.nets.discriminators import PatchDiscriminator
from pixforge.nets.generators import GENERATORS, build_generator

TEST_MODES = ("paper", "eval")


@dataclass
class Pix2PixConfig:
    """Networks and objective of pix2pix (defaults: the paper's facades experiment)."""

    netG: str = choice("unet_256", GENERATORS)
    """Generator (§3.2.1): U-Net (depth from size, unet_128/256), the same without skips (encoder_decoder*), ResNet."""
    ngf: int = 64
    """Filters of the generator's first layer."""
    ndf: int = 64
    """Filters of the discriminator's first layer."""
    n_layers: int = 3
    """PatchGAN depth: 0, 1, 3, 5 give receptive fields of 1 (PixelGAN), 16, 70 and 286 px (§3.2.2)."""
    norm: str = choice("batch", NORMS)
    """Normalisation in G and D (the paper: batch norm)."""
    dropout: float = bounded(0.5, 0, 1, include_high=False)
    """Dropout probability of the generator, its only noise (§3.1)."""
    gan_mode: str = choice("vanilla", GAN_MODES)
    """Adversarial loss: vanilla cGAN (eq. 1), least squares or hinge."""
    lambda_l1: float = 100.0
    """Weight of the L1 term (eq. 4; 100 in the paper)."""
    lambda_gan: float = 1.0
    """Weight of the adversarial term (eq. 4: 1); 0 trains Table 1's "L1" with no discriminator at all."""
    conditional_d: bool = True
    """D sees concat(x, y) (cGAN, eq. 1); false: only y (Table 1's "GAN", eq. 2)."""
    test_mode: str = choice("paper", TEST_MODES)
    """At test time: paper keeps dropout on and uses the batch's statistics (§3.1); eval is deterministic."""
    checkpoint_activations: bool = False
    """Recompute the generators' activations in the backward pass instead of storing them (less memory)."""

    def validate(self) -> None:
        if self.lambda_gan == 0 and self.lambda_l1 == 0:
            raise PixforgeError("options lambda_gan and lambda_l1: both are 0, so G would learn nothing")


class Pix2Pix(Method):
    """Generator G(x) and PatchGAN D(x, y), trained with cGAN + lambda_l1 * L1."""

    name = "pix2pix"
    config_type = Pix2PixConfig

    def __init__(self, cfg: Pix2PixConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        size = min(info.size)
        generator = build_generator(
            cfg.netG, info.input_nc, info.output_nc, cfg.ngf, cfg.norm, cfg.dropout, size
        )
        self.nets["G"] = use_checkpointing(generator, cfg.checkpoint_activations)
        if self.adversarial_weight > 0:
            d_input = info.output_nc + (info.input_nc if self.conditional else 0)
            self.nets["D"] = PatchDiscriminator(d_input, cfg.ndf, cfg.n_layers, cfg.norm)
        self.gan_loss = GANLoss(cfg.gan_mode)

    @property
    def adversarial_weight(self) -> float:
        """Weight of G's adversarial term (``lambda_gan``); at 0 there is no discriminator."""
        return self.cfg.lambda_gan

    @property
    def conditional(self) -> bool:
        """Whether D sees the input beside the output (``conditional_d``)."""
        return self.cfg.conditional_d

    def forward_step(self, batch: Batch) -> State:
        return {"real_A": batch["A"], "real_B": batch["B"], "fake_B": self.nets["G"](batch["A"])}

    def phases(self) -> list[Phase]:
        """D then G; G alone when ``lambda_gan`` is 0 (no discriminator)."""
        g_phase = Phase("G", ("G",), self.loss_G)
        return [Phase("D", ("D",), self.loss_D), g_phase] if "D" in self.nets else [g_phase]

    def discriminate(self, a: Tensor, b: Tensor) -> Tensor:
        """The PatchGAN score map: D(x, y) on concat(x, y), or D(y) when D is unconditional."""
        return self.nets["D"](torch.cat([a, b], dim=1) if self.conditional else b)

    def loss_D(self, s: State) -> tuple[Tensor, Scalars]:
        """0.5 * (log D(x, y) + log(1 - D(x, G(x)))) as a loss (eq. 1; halved, §3.3).

        D's score map of the fake is kept in the state (``score_fake``) for methods that read it (DRPAN).
        """
        s["score_fake"] = self.discriminate(s["real_A"], s["fake_B"].detach())
        fake = self.gan_loss(s["score_fake"], False)
        real = self.gan_loss(self.discriminate(s["real_A"], s["real_B"]), True)
        s["score_fake"] = s["score_fake"].detach()
        return 0.5 * (fake + real), {"D_real": real.detach(), "D_fake": fake.detach()}

    def loss_G(self, s: State) -> tuple[Tensor, Scalars]:
        """lambda_gan * L_cGAN from G's side plus lambda_l1 * ||y - G(x)||_1 (eq. 3-4).

        ``lambda_gan`` weighs G's term only: D's loss is left unscaled (Adam's steps barely depend on a
        constant scale of a loss, and D's own objective does not change with the ablation).
        """
        return self.adversarial_and_l1(s, self.cfg.lambda_l1)

    def adversarial_and_l1(self, s: State, weight_l1: float) -> tuple[Tensor, Scalars]:
        """G's adversarial loss against D on the state's fake, times :attr:`adversarial_weight`, plus
        ``weight_l1`` * ||y - G(x)||_1; the L1 term alone without a discriminator."""
        l1 = F.l1_loss(s["fake_B"], s["real_B"])
        if "D" not in self.nets:
            return weight_l1 * l1, {"G_L1": l1.detach()}
        gan = self.gan_loss(self.discriminate(s["real_A"], s["fake_B"]), True, for_discriminator=False)
        loss = self.adversarial_weight * gan + weight_l1 * l1
        return loss, {"G_GAN": gan.detach(), "G_L1": l1.detach()}
