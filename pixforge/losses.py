"""Adversarial losses shared by all methods."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixforge.errors import PixforgeError

GAN_MODES = ("vanilla", "lsgan", "hinge")


class GANLoss(nn.Module):
    """Adversarial loss on raw discriminator scores.

    - ``vanilla``: the cGAN objective of pix2pix (Isola et al. 2017, eq. 1) as binary cross-entropy on
      logits, with the non-saturating generator loss (G maximises log D(x, G(x))).
    - ``lsgan``: least squares to 1 (real) and 0 (fake) (Mao et al. 2017), as pix2pixHD and CycleGAN use.
    - ``hinge``: D minimises mean(relu(1 - D(real))) + mean(relu(1 + D(fake))); G minimises -mean(D(fake)).

    A sequence of predictions (one per scale of a multi-scale discriminator) gives the sum of the losses.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise PixforgeError(f"unknown gan_mode '{mode}' (choose {', '.join(GAN_MODES)})")
        self.mode = mode

    def forward(
        self, pred: Tensor | Sequence[Tensor], target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        if isinstance(pred, Tensor):
            return self._single(pred, target_is_real, for_discriminator)
        return torch.stack([self._single(p, target_is_real, for_discriminator) for p in pred]).sum()

    def _single(self, pred: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
        if self.mode == "hinge":
            return self._hinge(pred, target_is_real, for_discriminator)
        target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(pred, target)
        return F.mse_loss(pred, target)

    @staticmethod
    def _hinge(pred: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
        """The generator's hinge loss is linear: -mean(pred) pushes the scores of its samples up."""
        sign = 1.0 if target_is_real else -1.0
        if for_discriminator:
            return F.relu(1.0 - sign * pred).mean()
        return -sign * pred.mean()
