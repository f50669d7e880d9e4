"""Adversarial losses shared by all methods."""

from collections.abc import Callable, Sequence

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


def dragan_penalty(
    net: Callable[[Tensor], Tensor], inputs: Tensor, alpha: float, noise: float = 0.5
) -> Tensor:
    """DRAGAN-style gradient penalty alpha * E[(||grad R(x + delta)|| - 1)^2] (DRPAN eq. 6; Kodali et al. 2017).

    ``inputs`` is the real input of ``net`` (a network or any function of it, e.g. a conditional
    discriminator's probability as a function of its condition with the image fixed); delta is
    uniform noise scaled by ``noise`` times the standard deviation of ``inputs``, as in DRAGAN. The gradient is
    that of each sample's mean score (one score for an image discriminator, the mean of a patch map), its norm
    taken per sample over all input dimensions. The graph is kept so the penalty trains ``net``.
    """
    x = inputs.detach()
    perturbed = (x + noise * x.std() * torch.rand_like(x)).requires_grad_(True)
    scores = net(perturbed).flatten(1).mean(1)
    (grad,) = torch.autograd.grad(scores.sum(), perturbed, create_graph=True)
    norm = grad.flatten(1).pow(2).sum(1).add(1e-12).sqrt()
    return alpha * (norm - 1.0).pow(2).mean()


def feature_matching_loss(fake: Sequence[Sequence[Tensor]], real: Sequence[Sequence[Tensor]]) -> Tensor:
    """Discriminator feature matching of pix2pixHD (eq. 4, summed over the discriminators as in eq. 5).

    ``fake``/``real`` hold, per discriminator, the outputs of its layers with the score map last (see
    ``MultiScaleDiscriminator``). Every intermediate layer i contributes 1/N_i ||D^(i)(s, x) - D^(i)(s, G(s))||_1
    (an L1 mean); the score map is left to the adversarial loss. Weights as in the paper's code, so that
    lambda = 10 means the same: 4 / T per layer for T intermediate layers, 1 / num_D per discriminator.
    The real features are detached: D serves only as a feature extractor here.
    """
    total = fake[0][0].new_zeros(())
    for fake_k, real_k in zip(fake, real, strict=True):
        layers = list(zip(fake_k[:-1], real_k[:-1], strict=True))
        for f, r in layers:
            total = total + 4.0 / len(layers) * F.l1_loss(f, r.detach())
    return total / len(fake)


class VGGLoss(nn.Module):
    """Perceptual loss of pix2pixHD (§4): sum_i w_i / M_i ||F^(i)(x) - F^(i)(G(s))||_1 over a frozen
    VGG19's relu1_1 ... relu5_1, with w = 1/32, 1/16, 1/8, 1/4, 1 (the paper's code).

    ``features`` maps images in [-1, 1] to the five feature maps (``pixforge.nets.vgg.VGG19Features``, which
    feeds them to the network as the paper's code does: torchvision's weights see x unnormalised, so that
    lambda_vgg = 10 weights the term as there). The real image's features are computed without gradient.
    """

    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        fake_features = self.features(fake)
        with torch.no_grad():
            real_features = self.features(real)
        terms = [
            w * F.l1_loss(f, r) for w, f, r in zip(self.WEIGHTS, fake_features, real_features, strict=True)
        ]
        return torch.stack(terms).sum()
