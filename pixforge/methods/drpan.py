"""DRPAN: discriminative region proposal adversarial networks (Wang et al., ECCV 2018; papers/000_*).

Three networks (§3, Fig. 2): a generator G, the pix2pix patch discriminator D_p and a reviser R.

- Region proposal (DRPnet, §3.1, eq. 1-4): D_p turns the current fake (wi x wi) into "a probability score
  map with size ws x ws" (§3.1): the sigmoid of its logits with ``gan_mode=vanilla`` (§3.3 "we adopt Sigmoid
  as activation function to output probability"), its raw scores with lsgan or hinge. That map is searched
  for the w x w window with the lowest mean, w = w* ws / wi (eq. 1), w* being ``region_size`` in image
  pixels: one ``avg_pool2d`` with stride 1 and an ``argmin`` over the flattened map (:func:`find_window`).
  The window is mapped to an image region of w* x w* pixels (:func:`map_window`), by default with D_p's
  receptive-field geometry, extended at the border so that every pixel can be proposed; ``region_mapping=tau``
  uses the paper's scale tau (eq. 2-4) instead.
- Mask operation (§3.1): the masked fake is the real target with the region replaced by the generated pixels;
  with ``mask_operation=false`` the reviser sees the cropped region pair instead.
- Objective (§3.2): D_p is trained as in pix2pix (eq. 5). R, a DCGAN-like full-image discriminator
  (``reviser=image``, §3.3) or a PatchGAN (``reviser=patch``), learns real vs masked fake with the DRAGAN
  penalty of eq. 6, taken on R's probability with "δ is random noise on x" (``gp_variant``). G minimises
  (1 - lambda) L_adv(D_p) + lambda L_adv(R) + beta L1 + gamma L1(region) (eq. 7-9); lambda = 1 (reviser only)
  for low-level tasks such as de-raining (§4.3).

Choices where the paper is silent: the region comes from D_p's score map of the fake computed in D_p's own
phase (before its update, so no extra pass), one per image; the sigmoid of §3.3 lives in the losses
(``gan_mode=vanilla`` is BCE on logits, the proposal and the penalty apply it); inference defaults to eval
mode. The paper gives no values for lambda (except lambda = 1 for low-level tasks), beta, gamma and alpha:
see :class:`ReviserOptions` and :class:`DRPANConfig` for where each default comes from.

The authors' code (godisboy/DRPAN) departs from the paper: it searches 1x1 windows, maps score cells to image
regions with a wrong offset, has a variant keeping the most real patch, has no gradient penalty, and trains G
in two steps per iteration (L_adv(D_p) + 100 L1, then a new fake, its region, R's step and
L_adv(R) + 10 L1(region)). The last is available as ``g_schedule=two_step``; the others are not followed.

``reviser=none`` is the ablation the paper's comparisons with pix2pix stand for (§4.2, Fig. 6): the same G,
D_p, data and schedule, no R and no region, G on L_adv(D_p) + beta L1 (pix2pix with DRPAN's settings).

The reviser is a component (:class:`Reviser`) that any method with a patch discriminator can switch on: it
takes a score map and that discriminator's geometry, and knows nothing of which network produced them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixforge.config import bounded, choice
from pixforge.errors import PixforgeError
from pixforge.losses import GAN_MODES, GANLoss, dragan_penalty
from pixforge.methods.base import Batch, DataInfo, Phase, Scalars, State
from pixforge.methods.pix2pix import TEST_MODES, Pix2Pix
from pixforge.nets.blocks import NORMS
from pixforge.nets.discriminators import Geometry, ImageDiscriminator, PatchDiscriminator, conv_geometry
from pixforge.nets.generators import GENERATORS

REVISERS = ("image", "patch")
#: DRPAN's reviser choices: a network, or none (the ablation: pix2pix with DRPAN's settings)
DRPAN_REVISERS = (*REVISERS, "none")
REGION_MAPPINGS = ("geometry", "tau")
GP_VARIANTS = ("paper", "pair")
G_SCHEDULES = ("joint", "two_step")


@dataclass
class ReviserOptions:
    """The reviser's settings (§3.1-3.3), shared by every method that switches the reviser on.

    Sources of the defaults the paper does not give: ``lambda_reviser`` 0.5 weighs D_p's and R's adversarial
    terms equally, as the authors' code does (each of its two G steps has weight 1 on its adversarial term; the
    paper gives lambda only for low-level tasks, lambda = 1, §4.3); ``gamma_region`` 10 is the authors' code's
    weight of the region L1 (``errGAN_r + 10 * errL1_r``); ``alpha_gp`` 10 is the penalty weight of DRAGAN
    (Kodali et al. 2017, the penalty eq. 6 modifies), since neither the paper nor its code gives one (the code
    has no penalty). ``region_size`` 64 is one of Table 1's sizes (16 to 128).
    No experiment of ours chose these values.
    """

    ndf_reviser: int = 64
    """Filters of the reviser's first layer."""
    n_layers_reviser: int = 0
    """Stride-2 convs of the reviser; 0 chooses them from the input size (down to 4x4, as DCGAN)."""
    norm_reviser: str = choice("none", NORMS)
    """Normalisation in the reviser (none: the gradient penalty is per sample, batch norm couples them)."""
    region_size: int = 64
    """Side w* of the proposed region in image pixels (eq. 1; Table 1 tries 16, 32, 64, 128)."""
    region_mapping: str = choice("geometry", REGION_MAPPINGS)
    """Window to region: geometry (D_p's receptive fields, reaching the border) or tau (eq. 2-4)."""
    mask_operation: bool = True
    """The reviser sees the real image with the region's fake pixels pasted in (§3.1), else the crop."""
    lambda_reviser: float = bounded(0.5, 0, 1)
    """Weight lambda of R's adversarial term, 1 - lambda for D_p's (eq. 9; equal, as the authors' code)."""
    gamma_region: float = 10.0
    """Weight gamma of the L1 loss on the proposed region (eq. 9; the authors' code: 10)."""
    alpha_gp: float = 10.0
    """Weight alpha of the reviser's DRAGAN-style gradient penalty (eq. 6; DRAGAN's 10, DRPAN gives none)."""
    gp_variant: str = choice("paper", GP_VARIANTS)
    """paper: eq. 6 on R's probability, noise on x; pair: R's raw score, noise on the pair (DRAGAN)."""

    def validate_reviser(self) -> None:
        if self.region_size < 1:
            raise PixforgeError(f"option region_size: must be at least 1 pixel (got {self.region_size})")

    def build_reviser(self, kind: str, input_nc: int, image_size: tuple[int, int], gan_mode: str) -> Reviser:
        """The :class:`Reviser` these options describe, for pairs concat(x, y) of ``input_nc`` channels."""
        return Reviser(
            input_nc,
            image_size,
            kind=kind,
            ndf=self.ndf_reviser,
            n_layers=self.n_layers_reviser,
            norm=self.norm_reviser,
            region_size=self.region_size,
            region_mapping=self.region_mapping,
            mask_operation=self.mask_operation,
            gan_mode=gan_mode,
            alpha_gp=self.alpha_gp,
            gp_variant=self.gp_variant,
            lambda_reviser=self.lambda_reviser,
            gamma_region=self.gamma_region,
        )


@dataclass
class DRPANConfig(ReviserOptions):
    """Networks and objective of DRPAN (defaults: the paper's translation setting at 256 px, §3.3 and §4).

    ``beta_l1`` 100 is the authors' code's weight of the whole-image L1 (``errGAN + 100 * errL1``), which is
    also pix2pix's lambda; the paper gives no beta.
    """

    netG: str = choice("resnet_9blocks", GENERATORS)
    """Generator (the paper: a ResNet; U-Nets as pix2pix's)."""
    ngf: int = 64
    """Filters of the generator's first layer."""
    ndf: int = 64
    """Filters of the patch discriminator D_p's first layer."""
    n_layers: int = 3
    """Depth of D_p, the PatchGAN whose score map proposes the regions (3: 70x70)."""
    norm: str = choice("batch", NORMS)
    """Normalisation in G and D_p."""
    dropout: float = bounded(0.0, 0, 1, include_high=False)
    """Dropout probability of the generator."""
    gan_mode: str = choice("vanilla", GAN_MODES)
    """Adversarial loss of D_p and R (vanilla: the paper's sigmoid cross-entropy, §3.3)."""
    test_mode: str = choice("eval", TEST_MODES)
    """At test time: eval (deterministic) or paper (dropout on, batch statistics, as pix2pix)."""
    checkpoint_activations: bool = False
    """Recompute the generators' activations in the backward pass instead of storing them (less memory)."""
    reviser: str = choice("image", DRPAN_REVISERS)
    """The reviser R: a DCGAN-like full-image discriminator (§3.3), a PatchGAN, or none (the ablation)."""
    beta_l1: float = 100.0
    """Weight beta of the L1 loss on the whole image (eq. 9; the authors' code: 100)."""
    g_schedule: str = choice("joint", G_SCHEDULES)
    """joint: one G step on eq. 9; two_step: the authors' code (D_p + beta L1, then R + gamma L1)."""

    def validate(self) -> None:
        self.validate_reviser()
        if self.reviser == "none" and self.g_schedule == "two_step":
            raise PixforgeError("option g_schedule: two_step steps the reviser; with reviser=none use joint")
        if self.g_schedule == "two_step" and self.lambda_reviser != 0.5:
            raise PixforgeError(
                "option g_schedule: two_step weighs D_p's and R's adversarial terms 1 each, as the authors' "
                f"code, and takes no lambda_reviser (leave it at 0.5; got {self.lambda_reviser})"
            )


# the region proposal -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """One box per image: rows [top, top + height) and columns [left, left + width) of the image.

    ``top`` and ``left`` are (N,) int64 tensors on the images' device; the size is the same for the batch.
    """

    top: Tensor
    left: Tensor
    height: int
    width: int

    def centre(self) -> Tensor:
        """(N, 2) box centres (y, x) in pixels."""
        return torch.stack([self.top + self.height / 2, self.left + self.width / 2], dim=1)

    def mask(self, size: tuple[int, int]) -> Tensor:
        """(N, 1, H, W) float mask: 1 inside the box, 0 outside."""
        return self._box(size, 0).unsqueeze(1).float()

    def outline(self, size: tuple[int, int], thickness: int) -> Tensor:
        """(N, 1, H, W) bool mask of the box's border, ``thickness`` pixels wide, inside the box."""
        return (self._box(size, 0) & ~self._box(size, thickness)).unsqueeze(1)

    def _box(self, size: tuple[int, int], inset: int) -> Tensor:
        rows = _inside(self.top + inset, self.height - 2 * inset, size[0])
        cols = _inside(self.left + inset, self.width - 2 * inset, size[1])
        return rows[:, :, None] & cols[:, None, :]

    def crop(self, x: Tensor) -> Tensor:
        """The boxes of ``x`` (N, C, H, W) as one (N, C, height, width) batch (differentiable gathers)."""
        n, c, _, w = x.shape
        rows = self.top[:, None] + torch.arange(self.height, device=x.device)
        cols = self.left[:, None] + torch.arange(self.width, device=x.device)
        x = x.gather(2, rows[:, None, :, None].expand(n, c, self.height, w))
        return x.gather(3, cols[:, None, None, :].expand(n, c, self.height, self.width))


def _inside(start: Tensor, length: int, size: int) -> Tensor:
    """(N, size) bool: whether each index lies in [start, start + length)."""
    index = torch.arange(size, device=start.device)
    return (index >= start[:, None]) & (index < start[:, None] + length)


def window_size(
    score_size: tuple[int, int], image_size: tuple[int, int], region_size: int
) -> tuple[int, int]:
    """The score-map window w = w* ws / wi (eq. 1) per axis, rounded (half to even), between 1 and the map's side."""
    h, w = (min(s, max(1, round(region_size * s / i))) for s, i in zip(score_size, image_size, strict=True))
    return h, w


def find_window(score: Tensor, window: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Top-left cell (row, col), (N,) each, of the window with the lowest mean score: the most fake (§3.1).

    One ``avg_pool2d`` with stride 1 gives every window's mean; the argmin over the flattened map picks one
    window per image. No loop over positions, no host synchronisation.
    """
    means = F.avg_pool2d(score.float().mean(1, keepdim=True), window, stride=1)
    cols = means.shape[-1]
    index = means.flatten(1).argmin(1)
    return torch.div(index, cols, rounding_mode="floor"), index % cols


def region_extent(region_size: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """The region's (height, width): ``region_size``, but no larger than the image."""
    return min(region_size, image_size[0]), min(region_size, image_size[1])


def map_window(
    cell: Tensor,
    window: int,
    extent: int,
    image: int,
    score: int,
    geometry: Geometry,
    mapping: str = "geometry",
) -> Tensor:
    """First pixel of the region of ``extent`` pixels for windows starting at ``cell`` (one axis).

    ``geometry``: score cell j is centred at pixel ``start + j * jump`` (:func:`conv_geometry`), so the window
    of cells [cell, cell + window) is centred at ``start + (cell + (window - 1) / 2) * jump``; the region is
    centred there, which is the centre of the union of the window cells' receptive fields. Extended at the
    border: a window that touches the map's first (last) cell gets the region that touches the image's first
    (last) pixel, for those cells are the ones that see the outer pixels. Without it no region would reach the
    outer 8 pixels at 256 px (a 70x70 PatchGAN, w* = 64: the first window is centred at pixel 40, region
    [8, 72); the last at 216, region [184, 248)). With it the regions of all windows cover the whole image
    whenever the region is at least one jump wide (8 px for a 70x70 PatchGAN). A window as large as the map
    keeps its centred region.

    ``tau`` (eq. 2-4): the window centre in score-map units, x_c = cell + window / 2, is scaled by
    tau = (wi - w*) / (ws - w) and the region centred at tau * x_c. With w exactly w* ws / wi, tau = wi / ws
    and the regions run from the image's first pixel to its last; eq. 1 rounds w, though: on 256 px with
    w* = 64, w = 7.5 becomes 8 and the first window gets [3, 67) (the outer 3 pixels are never proposed), the
    last (cell 22) [192, 256) (clamped; unclamped [195, 259)). Tau stretches the window offsets over the
    region offsets, ignoring where the cells look: over the 21 inner windows tau's region is off by -4 to +10
    pixels from the geometry's, and agrees with it for one of them only (cell 7).
    A window as large as the map gives the image's centre.

    The default is the extended geometry, not tau: tau's regions are off-centre by up to 10 pixels and, with
    eq. 1's rounding, never reach the first 3 pixels at 256 px. Either way the region is clamped inside the
    image.
    """
    if mapping == "geometry":
        centre = geometry.start + (cell.float() + (window - 1) / 2) * geometry.jump
        first = torch.round(centre - extent / 2).long()
        if score > window:
            first = torch.where(cell == 0, 0, first)
            first = torch.where(cell == score - window, image - extent, first)
    elif mapping == "tau":
        if score > window:
            centre = (image - extent) / (score - window) * (cell.float() + window / 2)
        else:
            centre = torch.full_like(cell, image / 2, dtype=torch.float32)
        first = torch.round(centre - extent / 2).long()
    else:
        raise PixforgeError(f"option region_mapping: '{mapping}' is not one of {', '.join(REGION_MAPPINGS)}")
    return first.clamp(0, image - extent)


def score_probability(score: Tensor, gan_mode: str) -> Tensor:
    """D's raw scores as the "probability score map" of §3.1 (higher = more real).

    ``vanilla`` scores are logits of a BCE loss, the sigmoid of §3.3 being in the loss: their sigmoid. The
    lsgan (targets 0 and 1) and hinge scores have no sigmoid in their losses and are taken as they are.
    The mean of probabilities is not the mean of logits: a window of a few very fake cells among confident
    real ones has a low mean logit but not a low mean probability.
    """
    return torch.sigmoid(score) if gan_mode == "vanilla" else score


def propose_region(
    score: Tensor,
    image_size: tuple[int, int],
    region_size: int,
    geometry: Geometry,
    mapping: str = "geometry",
) -> Region:
    """DRPnet (§3.1, eq. 1-4): the most fake ``region_size`` box of each image from a patch score map.

    ``score`` (N, 1, hs, ws) is the map to search (higher = more real; :func:`score_probability` of the
    discriminator's scores) of images of ``image_size`` (H, W), which need not be square; ``geometry`` is that
    of the discriminator which produced the map.
    """
    score_size = (score.shape[-2], score.shape[-1])
    window = window_size(score_size, image_size, region_size)
    extent = region_extent(region_size, image_size)
    rows, cols = find_window(score, window)
    top, left = (
        map_window(cell, w, e, i, s, geometry, mapping)
        for cell, w, e, i, s in zip((rows, cols), window, extent, image_size, score_size, strict=True)
    )
    return Region(top, left, extent[0], extent[1])


# visualisation ------------------------------------------------------------------------------------------------


def score_heatmap(score: Tensor, image_size: tuple[int, int], geometry: Geometry, gan_mode: str) -> Tensor:
    """Score map (N, 1, hs, ws) as an image-sized heat map in [-1, 1] (bright = real, dark = fake, Fig. 4).

    Each pixel takes the score of the cell whose receptive field is centred nearest to it (the geometry
    of :func:`map_window`). Scores become [-1, 1] as 2 sigmoid(s) - 1 (vanilla: 2 P(real) - 1), 2 s - 1
    clamped (lsgan: targets 0 and 1) or s clamped (hinge: margins -1 and 1).
    """
    axes = []
    for size, cells in zip(image_size, score.shape[-2:], strict=True):
        pixel = torch.arange(size, device=score.device) + 0.5
        axes.append(torch.round((pixel - geometry.start) / geometry.jump).long().clamp(0, cells - 1))
    s = score.float()[:, :1, axes[0]][:, :, :, axes[1]]
    if gan_mode == "vanilla":
        return 2 * torch.sigmoid(s) - 1
    if gan_mode == "lsgan":
        return (2 * s - 1).clamp(-1, 1)
    return s.clamp(-1, 1)


def draw_region(image: Tensor, region: Region) -> Tensor:
    """``image`` (N, C, H, W) in [-1, 1] with the region's box drawn on it (red for RGB, white otherwise)."""
    size = (image.shape[-2], image.shape[-1])
    border = region.outline(size, max(1, min(size) // 64))
    colour = torch.full((1, image.shape[1], 1, 1), 1.0, device=image.device, dtype=image.dtype)
    if image.shape[1] == 3:
        colour[:, 1:] = -1.0
    return torch.where(border, colour, image)


# the reviser component -----------------------------------------------------------------------------------------


def reviser_layers(kind: str, size: int) -> int:
    """Depth of the reviser for inputs of ``size`` pixels: an image discriminator halves down to 4x4
    (DCGAN); a PatchGAN takes up to the 70x70 depth of 3 layers that still leaves a score map."""
    if kind == "image":
        return max(1, int(math.log2(max(size, 8) / 4)))
    return max(1, min(3, int(math.log2(max(size, 6) / 3))))


class Reviser(nn.Module):
    """DRPAN's reviser R with its region proposal, mask operation and losses (§3.1-3.2).

    Any method with a patch discriminator can switch it on (the paper's own pix2pixHD variant did): register
    it among the method's networks (its parameters are R's), and per iteration

    1. ``region = reviser.propose(score.detach(), image_size, geometry)`` from that discriminator's raw score
       map of the current fake and :func:`conv_geometry` of that discriminator;
    2. a reviser phase with loss ``reviser.loss(x, y, fake, region)``;
    3. add ``reviser.generator_loss(x, y, fake, region)`` to G's loss, and weight the method's own adversarial
       term by ``1 - reviser.lambda_reviser`` (eq. 9).

    ``input_nc`` is the channel count of the pair concat(x, y); ``image_size`` sets the automatic depth.
    """

    def __init__(
        self,
        input_nc: int,
        image_size: tuple[int, int],
        *,
        kind: str = "image",
        ndf: int = 64,
        n_layers: int = 0,
        norm: str = "none",
        region_size: int = 64,
        region_mapping: str = "geometry",
        mask_operation: bool = True,
        gan_mode: str = "vanilla",
        alpha_gp: float = 10.0,
        gp_variant: str = "paper",
        lambda_reviser: float = 0.5,
        gamma_region: float = 10.0,
    ) -> None:
        super().__init__()
        for option, value, allowed in [
            ("reviser", kind, REVISERS),
            ("region_mapping", region_mapping, REGION_MAPPINGS),
            ("gp_variant", gp_variant, GP_VARIANTS),
        ]:
            if value not in allowed:
                raise PixforgeError(f"option {option}: '{value}' is not one of {', '.join(allowed)}")
        self.region_size = region_size
        self.region_mapping = region_mapping
        self.mask_operation = mask_operation
        self.gan_mode = gan_mode
        self.alpha_gp = alpha_gp
        self.gp_variant = gp_variant
        self.lambda_reviser = lambda_reviser
        self.gamma_region = gamma_region
        seen = min(image_size) if mask_operation else region_size
        depth = n_layers or reviser_layers(kind, seen)
        if kind == "image":
            self.net: nn.Module = ImageDiscriminator(input_nc, ndf, depth, norm)
        else:
            self.net = PatchDiscriminator(input_nc, ndf, depth, norm)
        self.gan_loss = GANLoss(gan_mode)

    def forward(self, pair: Tensor) -> Tensor:
        """R's raw scores of a pair concat(x, y) as built by :meth:`pair`."""
        return self.net(pair)

    def propose(self, score: Tensor, image_size: tuple[int, int], geometry: Geometry) -> Region:
        """The region of each image from a patch discriminator's (detached) raw score map (eq. 1-4), searched
        on its probabilities (:func:`score_probability`)."""
        probability = score_probability(score, self.gan_mode)
        return propose_region(probability, image_size, self.region_size, geometry, self.region_mapping)

    def iteration_region(self, s: State, fake: Tensor, geometry: Geometry) -> Region:
        """The iteration's region, proposed once (then kept in the state) from ``s["score_fake"]``: the
        discriminator's score map of the fake that its own phase computed before its update."""
        if "region" not in s:
            s["region"] = self.propose(s["score_fake"], (fake.shape[-2], fake.shape[-1]), geometry)
        return s["region"]

    @staticmethod
    def masked_fake(real: Tensor, fake: Tensor, region: Region) -> Tensor:
        """M(G(x)): the real image with the region replaced by the generated pixels (§3.1)."""
        mask = region.mask((real.shape[-2], real.shape[-1])).to(fake.dtype)
        return real * (1 - mask) + fake * mask

    def pair(self, x: Tensor, y: Tensor, region: Region) -> Tensor:
        """R's input for the condition ``x`` and an image ``y`` that is real or already masked: the whole
        pair with the mask operation, else the region's crops (resized to ``region_size`` when the image
        is smaller than the region)."""
        if self.mask_operation:
            return torch.cat([x, y], 1)
        crops = torch.cat([region.crop(x), region.crop(y)], 1)
        side = self.region_size
        if crops.shape[-2:] != (side, side):
            crops = F.interpolate(crops, size=(side, side), mode="bilinear", align_corners=False)
        return crops

    def _shown_fake(self, real: Tensor, fake: Tensor, region: Region) -> Tensor:
        return self.masked_fake(real, fake, region) if self.mask_operation else fake

    def penalty(self, real_pair: Tensor, x_nc: int) -> Tensor:
        """alpha times the DRAGAN-style penalty of eq. 6 on the real pair (x, y), x its first ``x_nc`` channels.

        ``paper``: "alpha E_{x,delta}[||grad_x R(x + delta)|| - 1]^2 ... where alpha is hyper parameter, delta is
        random noise on x" (eq. 6), R being the probability of §3.3 ("we adopt Sigmoid as activation function
        to output probability"): the noise perturbs x, y stays real, and the gradient of R's probability
        (:func:`score_probability`) is taken w.r.t. x. ``pair``: noise on, and gradient w.r.t., the whole pair,
        of R's raw score (pixforge's earlier variant, DRAGAN's form for an unconditional critic). Either way
        delta is DRAGAN's (:func:`dragan_penalty`).
        """
        if self.gp_variant == "pair":
            return dragan_penalty(self.net, real_pair, self.alpha_gp)
        image = real_pair[:, x_nc:].detach()

        def probability(x: Tensor) -> Tensor:
            return score_probability(self.net(torch.cat([x, image], 1)), self.gan_mode)

        return dragan_penalty(probability, real_pair[:, :x_nc], self.alpha_gp)

    def loss(self, x: Tensor, real: Tensor, fake: Tensor, region: Region) -> tuple[Tensor, Scalars]:
        """R's loss (eq. 6): real pair vs masked fake, plus the DRAGAN-style penalty (:meth:`penalty`)."""
        real_pair = self.pair(x, real, region)
        fake_pair = self.pair(x, self._shown_fake(real, fake.detach(), region), region)
        loss_real = self.gan_loss(self(real_pair), True)
        loss_fake = self.gan_loss(self(fake_pair), False)
        loss = loss_real + loss_fake
        scalars = {"R_real": loss_real.detach(), "R_fake": loss_fake.detach()}
        if self.alpha_gp > 0:
            penalty = self.penalty(real_pair, x.shape[1])
            loss = loss + penalty
            scalars["R_gp"] = penalty.detach()
        centre = region.centre().float().mean(0)
        scalars.update(region_y=centre[0], region_x=centre[1])
        return loss, scalars

    def generator_terms(self, x: Tensor, real: Tensor, fake: Tensor, region: Region) -> tuple[Tensor, Tensor]:
        """G's adversarial loss against R on the masked fake (eq. 8) and ||y_r - G(x)_r||_1 (eq. 7)."""
        fake_pair = self.pair(x, self._shown_fake(real, fake, region), region)
        adv = self.gan_loss(self(fake_pair), True, for_discriminator=False)
        return adv, F.l1_loss(region.crop(fake), region.crop(real))

    def generator_loss(self, x: Tensor, real: Tensor, fake: Tensor, region: Region) -> tuple[Tensor, Scalars]:
        """G's reviser terms: lambda_reviser L_adv(R) (eq. 8-9) + gamma_region ||y_r - G(x)_r||_1 (eq. 7)."""
        adv, l1_region = self.generator_terms(x, real, fake, region)
        loss = self.lambda_reviser * adv + self.gamma_region * l1_region
        return loss, {"G_R": adv.detach(), "G_region": l1_region.detach()}


# the method -----------------------------------------------------------------------------------------------------


class DRPAN(Pix2Pix):
    """pix2pix's G and D_p (reused as they are, with D_p's loss of eq. 5) plus the :class:`Reviser`."""

    name = "drpan"
    config_type = DRPANConfig

    def __init__(self, cfg: DRPANConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)  # type: ignore[arg-type]
        self.geometry = conv_geometry(self.nets["D"])
        if cfg.reviser != "none":
            self.nets["R"] = cfg.build_reviser(
                cfg.reviser, info.input_nc + info.output_nc, info.size, cfg.gan_mode
            )

    @property
    def adversarial_weight(self) -> float:
        """D_p is always built (it proposes the regions); its term's weight is in :meth:`loss_G`."""
        return 1.0

    @property
    def conditional(self) -> bool:
        return True

    def region(self, s: State) -> Region:
        """This iteration's region, proposed once from D_p's score map of the fake (eq. 1-4).

        The map is the one D_p's own phase computed (``score_fake``, before D_p's update), so the proposal
        costs no extra discriminator pass.
        """
        return self.nets["R"].iteration_region(s, s["fake_B"], self.geometry)

    def propose(self, x: Tensor, fake: Tensor) -> tuple[Tensor, Region]:
        """D_p's score map of an output and the region it proposes (for inspection)."""
        score = self.score(x, fake)
        return score, self.nets["R"].propose(score, (fake.shape[-2], fake.shape[-1]), self.geometry)

    def score(self, x: Tensor, fake: Tensor) -> Tensor:
        """D_p's score map of an output, without gradients."""
        with torch.no_grad():
            return self.discriminate(x, fake)

    def phases(self) -> list[Phase]:
        """D_p, R, G (eq. 9); with ``g_schedule=two_step`` the authors' D_p, G, R, G.

        The two G phases share the name "G", so the trainer gives them one Adam, stepped twice per iteration
        as the authors' code steps its one G optimiser.
        """
        if "R" not in self.nets:
            return super().phases()
        if self.cfg.g_schedule == "two_step":
            return [
                Phase("D", ("D",), self.loss_D),
                Phase("G", ("G",), self.loss_G_patch),
                Phase("R", ("R",), self.loss_R_revised),
                Phase("G", ("G",), self.loss_G_revised),
            ]
        return [
            Phase("D", ("D",), self.loss_D),
            Phase("R", ("R",), self.loss_R),
            Phase("G", ("G",), self.loss_G),
        ]

    def loss_R(self, s: State) -> tuple[Tensor, Scalars]:
        """The reviser's loss L_R (eq. 6) on this iteration's region."""
        return self.nets["R"].loss(s["real_A"], s["real_B"], s["fake_B"], self.region(s))

    def loss_G(self, s: State) -> tuple[Tensor, Scalars]:
        """G's side of eq. 9: (1 - lambda) L_adv(D_p) + lambda L_adv(R) + beta L1 + gamma L1(region) (eq. 7-8).

        With lambda = 1 (the reviser only, §4.3) D_p is not run for G. Without a reviser: L_adv(D_p) + beta L1.
        """
        if "R" not in self.nets:
            return self.adversarial_and_l1(s, self.cfg.beta_l1)
        reviser = self.nets["R"]
        loss, scalars = reviser.generator_loss(s["real_A"], s["real_B"], s["fake_B"], self.region(s))
        if reviser.lambda_reviser < 1:
            gan = self.gan_loss(self.discriminate(s["real_A"], s["fake_B"]), True, for_discriminator=False)
            loss = loss + (1 - reviser.lambda_reviser) * gan
            scalars["G_GAN"] = gan.detach()
        l1 = F.l1_loss(s["fake_B"], s["real_B"])
        return loss + self.cfg.beta_l1 * l1, {**scalars, "G_L1": l1.detach()}

    def loss_G_patch(self, s: State) -> tuple[Tensor, Scalars]:
        """Two-step schedule, G's first step: L_adv(D_p) + beta L1 (the authors' ``errGAN + 100 * errL1``)."""
        return self.adversarial_and_l1(s, self.cfg.beta_l1)

    def loss_R_revised(self, s: State) -> tuple[Tensor, Scalars]:
        """Two-step schedule, R's step: a new fake from G after its first step, its region from the updated
        D_p's score map of it, and R's loss (eq. 6) on them."""
        with torch.no_grad():
            fake = self.nets["G"](s["real_A"])
        _, s["region_revised"] = self.propose(s["real_A"], fake)
        return self.nets["R"].loss(s["real_A"], s["real_B"], fake, s["region_revised"])

    def loss_G_revised(self, s: State) -> tuple[Tensor, Scalars]:
        """Two-step schedule, G's second step: L_adv(R) + gamma L1(region) (the authors' ``errGAN_r + 10 *
        errL1_r``) on the new fake, recomputed with gradients (one more G pass than the authors' code; with
        dropout it is a new draw)."""
        fake = self.nets["G"](s["real_A"])
        adv, l1_region = self.nets["R"].generator_terms(s["real_A"], s["real_B"], fake, s["region_revised"])
        loss = adv + self.nets["R"].gamma_region * l1_region
        return loss, {"G_R": adv.detach(), "G_region": l1_region.detach()}

    def explain(self, batch: Batch, output: Tensor) -> dict[str, Tensor]:
        """``score``: D_p's score map of the output as an image-sized heat map; ``region``: the output with the
        region the proposal picks drawn on it (not without a reviser: there is no proposal)."""
        size = (output.shape[-2], output.shape[-1])
        if "R" not in self.nets:
            return {
                "score": score_heatmap(self.score(batch["A"], output), size, self.geometry, self.cfg.gan_mode)
            }
        score, region = self.propose(batch["A"], output)
        return {
            "score": score_heatmap(score, size, self.geometry, self.cfg.gan_mode),
            "region": draw_region(output, region),
        }
