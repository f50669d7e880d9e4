"""GuideGAN: the discriminator's attention guides the generator (papers/002_*; DESIGN.md "GuideGAN").

The discriminator returns an attention map besides its prediction (§3.2): post hoc (PHA, eq. 2: the min-max
normalised channel mean of |activations| of one D layer, by default the 4th conv as in appendix A) or from
a trainable attention module inside D (TAM, eq. 3: the channel mean of its mask M). The map is detached,
normalised per sample, and brought to the input size by a transfer g(.; phi): bilinear upsampling or a small
learned network trained with the generator (appendix A). It is blended into the generator's input (§3.3):
the residual Hadamard product x' = (g(M) + 1) * x (eq. 4, the default) or an alpha channel
x' = concat(x, g(M)) (eq. 5).

The map used for a sample is D's view of G's output for that sample at its previous visit (eq. 1): a cache
keyed by the sample's dataset index (``index``; unpaired: ``index_A`` / ``index_B``, the image's place in
its own domain, since B images are drawn at random), all ones before the first visit and at test time (§4).
Maps are kept in the coordinates of the sample's whole loaded image (after the resize, before the random crop
and the flip; the item's ``box_A`` / ``box_B``), at D's resolution, and are cropped and flipped with the
sample's own parameters on use, so the map that guides a sample is aligned with the pixels G sees whatever
the crop, the flip, the shuffling or the batch size (the public code forces batch 1, no shuffle, no flip).
Parts of the image no crop has covered yet keep the all-ones map. The cache is training state, saved in
the checkpoint's ``state.pt`` and not in the weights file (:meth:`GuideGAN.training_state`). D's view costs
one extra D forward pass per step, without gradients, right after G's (in train mode, so a batch-norm D also updates its running statistics
on it); D stays conditioned on the raw input x, never on x'.

Supervised (default): pix2pix with the paper's appendix settings, UNet-128 + PatchGAN, LSGAN,
10 * L_GAN + 10 * L_L1 (appendix A: "G* = arg min max 10Lgan(G, D) + 10Ll1(G)"), instance norm as the
authors' pix2pix_attn (the paper names a norm for its unsupervised runs only; batch norm is an option).
Unpaired (``unpaired=true``): CycleGAN (ResNet 9 blocks by default) with attention from both discriminators,
each direction guided by the D that judges its outputs, and one shared learned transfer (§3.1's T). Its
objective is eq. 11, "L_GAN(G_X, D_Y) + L_GAN(G_Y, D_X) + λL_cyc(G_X, G_Y)": GAN weight 1 and no identity
term, as the authors' ``backward_G`` (ASGIT, lambda_identity 0). Appendix A's "For all the experiments, we
simply set the weight factor of the GAN loss to 10" is stated with the supervised objective as its example
and is ``lambda_gan=10`` here. The cycle's reconstructions (eq. 10, ||G_Y(G_X(x')) - x||_1: G_Y sees G_X's
output, not a blend of it) and the identity terms feed the generators unguided, as ASGIT does. Both variants
subclass their base method; the guidance itself is the component :class:`AttentionGuide`.

``attention=none`` is the paper's baseline (Tables 1-5 compare each GuideGAN with its base trained alike):
the same networks, losses and settings with the map left out, so G sees x itself, D has no attention
module, no transfer is built and no map is cached.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixforge import distributed
from pixforge.config import bounded, choice
from pixforge.errors import PixforgeError
from pixforge.losses import GAN_MODES, GANLoss
from pixforge.methods.base import Batch, DataInfo, Method, Phase, State
from pixforge.methods.cyclegan import CycleGAN, CycleGANConfig
from pixforge.methods.pix2pix import TEST_MODES, Pix2Pix, Pix2PixConfig
from pixforge.nets.blocks import NORMS, init_weights
from pixforge.nets.discriminators import AttentionPatchDiscriminator, PatchDiscriminator
from pixforge.nets.generators import GENERATORS

ATTENTIONS = ("posthoc", "trainable", "none")
UPSAMPLERS = ("bilinear", "learned")
BLENDS = ("rhp", "alpha")
AUTO = "auto"


def minmax(maps: Tensor) -> Tensor:
    """Min-max normalisation of each sample's map to [0, 1] (g in eq. 2), per sample, not per batch.

    A constant map carries no preference and becomes all ones, the paper's "everything matters" placeholder.
    """
    flat = maps.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    span = flat.max(1).values.view(-1, 1, 1, 1) - lo
    scaled = (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny)
    return torch.where(span > 0, scaled, torch.ones_like(maps))


class LearnedUpsampler(nn.Module):
    """The learned transfer g(M; phi) of eq. 4-5 ("a small 3-layer neural network", appendix A).

    Bilinear upsampling refined by three 3x3 convs, residually, clipped to [0, 1]. The last conv starts at
    zero, so training starts from the bilinear map; it learns with the generator, whose loss reaches it
    through x'.
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(channels, 1, 3, 1, 1),
        )
        init_weights(self)
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, maps: Tensor, size: Sequence[int]) -> Tensor:
        up = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
        return (up + self.body(up)).clamp(0, 1)


@dataclass(frozen=True)
class Where:
    """Where the samples of a batch come from: dataset ``index``, ``flip`` and ``box`` (N, 6) as the items'
    ``box_A`` / ``box_B`` (crop left, top, width, height and the loaded image's width, height, in pixels).

    Without a box the tensor itself is taken as the whole image (no crop).
    """

    index: Tensor
    flip: Tensor
    box: Tensor | None = None

    def boxes(self, size: Sequence[int]) -> Tensor:
        """The boxes (N, 6), float, or whole-tensor boxes for a tensor of ``size`` (H, W)."""
        if self.box is not None:
            return self.box.to(self.index.device, torch.float32)
        h, w = float(size[0]), float(size[1])
        return torch.tensor([0.0, 0.0, w, h, w, h], device=self.index.device).expand(len(self.index), 6)


def _centres(count: int, span: Tensor) -> Tensor:
    """Centres of ``count`` equal cells over [0, span) for each sample's ``span`` (N,): (N, count)."""
    return (torch.arange(count, device=span.device, dtype=torch.float32) + 0.5) / count * span[:, None]


def _reflect(p: Tensor, length: Tensor) -> Tensor:
    """Tensor positions in the band padded after ``length`` pixels, mapped to the pixels they reflect."""
    return torch.where(p > length[:, None], 2 * length[:, None] - 1 - p, p)


def _grid(gx: Tensor, gy: Tensor) -> Tensor:
    """A grid_sample grid (N, H, W, 2) from per-sample x (N, W) and y (N, H) coordinates in [-1, 1]."""
    n, h, w = gx.shape[0], gy.shape[1], gx.shape[1]
    return torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=-1)


class AttentionCache:
    """D's last attention map of each sample (rows = dataset indices) over its whole loaded image.

    Each row is a canvas (1, Hc, Wc) over the sample's loaded image at D's resolution (fixed by the first
    store), all ones where no crop has reached, with a flag per sample saying whether it was seen.
    :meth:`store` resamples a map of a crop into the canvas at the crop's place (unflipped) and :meth:`recall`
    reads a crop back out, flipped, at the tensor's size, with a padded band reflected as the data's padding;
    resampling is bilinear, on pixel centres (exact where the canvas and the crop share a grid). The rows are
    reserved from the dataset (:meth:`reserve`); without a reservation they grow with the indices met, which
    reads the largest index on the host.
    """

    def __init__(self) -> None:
        self.maps: Tensor | None = None
        self.seen: Tensor | None = None
        self.rows = 0

    def reserve(self, rows: int) -> None:
        self.rows = rows

    def _fit(self, index: Tensor, maps: Tensor, seen: Tensor) -> tuple[Tensor, Tensor]:
        """The cache on ``index``'s device with a row for every entry of ``index`` (new rows: unseen, ones)."""
        maps, seen = maps.to(index.device), seen.to(index.device)
        missing = (self.rows or int(index.max()) + 1) - len(maps)
        if missing > 0:
            maps = torch.cat([maps, maps.new_ones(missing, *maps.shape[1:])])
            seen = torch.cat([seen, seen.new_zeros(missing)])
        self.maps, self.seen = maps, seen
        return maps, seen

    def store(self, where: Where, maps: Tensor, size: Sequence[int] | None = None) -> None:
        """Remember ``maps`` (N, 1, h, w), D's view of tensors of ``size`` (H, W; default the maps' own size)."""
        size = tuple(size or maps.shape[-2:])
        box = where.boxes(size)
        if self.maps is None or self.seen is None:
            frame = box[0, 4:].tolist()
            canvas = (
                max(1, round(frame[1] * maps.shape[-2] / size[0])),
                max(1, round(frame[0] * maps.shape[-1] / size[1])),
            )
            self.maps = maps.new_ones(0, 1, *canvas, dtype=torch.float32)
            self.seen = torch.zeros(0, dtype=torch.bool, device=maps.device)
        cache, seen = self._fit(where.index, self.maps, self.seen)
        x0, y0, w, h, fw, fh = box.unbind(1)
        xs, ys = _centres(cache.shape[-1], fw), _centres(cache.shape[-2], fh)
        u = torch.where(where.flip.view(-1, 1), (x0 + w)[:, None] - xs, xs - x0[:, None])
        v = ys - y0[:, None]
        inside_x = (xs >= x0[:, None]) & (xs < (x0 + w)[:, None])
        inside_y = (ys >= y0[:, None]) & (ys < (y0 + h)[:, None])
        grid = _grid(2 * u / size[1] - 1, 2 * v / size[0] - 1)
        new = F.grid_sample(maps.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
        cache[where.index] = torch.where(inside, new, cache[where.index])
        seen[where.index] = True

    def recall(self, where: Where, size: Sequence[int]) -> tuple[Tensor, Tensor] | None:
        """The stored maps for tensors of ``size`` (H, W) cut from each sample's canvas by its box and flip
        (N, 1, H, W), and whether each sample was seen; None if nothing was stored yet."""
        if self.maps is None or self.seen is None:
            return None
        cache, seen = self._fit(where.index, self.maps, self.seen)
        x0, y0, w, h, fw, fh = where.boxes(size).unbind(1)
        ones = torch.ones_like(fw)
        p = _reflect(_centres(size[1], ones * size[1]), w)
        q = _reflect(_centres(size[0], ones * size[0]), h)
        xs = torch.where(where.flip.view(-1, 1), (x0 + w)[:, None] - p, x0[:, None] + p)
        ys = y0[:, None] + q
        grid = _grid(2 * xs / fw[:, None] - 1, 2 * ys / fh[:, None] - 1)
        maps = F.grid_sample(
            cache[where.index], grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        return maps, seen[where.index]

    def state(self) -> dict[str, Tensor]:
        """The cache as tensors: ``""`` the canvases (rows, 1, Hc, Wc) float32 and ``"_seen"`` (rows,) bool;
        empty before the first store. Rows are dataset indices, so caches of disjoint samples merge row-wise
        (take each row from the holder whose ``_seen`` is set)."""
        if self.maps is None or self.seen is None:
            return {}
        return {"": self.maps, "_seen": self.seen}

    def load(self, maps: Tensor, seen: Tensor) -> None:
        """Restore what :meth:`state` returned; tensors move to the batch's device at the next use."""
        self.maps, self.seen = maps.float(), seen.bool()


class AttentionGuide:
    """GuideGAN's spatial guidance of one generator by one discriminator (eq. 1, 2, 4, 5).

    ``attention_map`` reads D's attention for an input, ``remember`` caches it per sample, ``map_for``
    gives the map for G's next input of a sample (ones when unknown) and ``guide`` blends it into x.
    """

    def __init__(self, attention: str, layer: int, blend: str, transfer: nn.Module | None = None) -> None:
        self.attention = attention
        self.layer = layer
        self.blend_mode = blend
        self.transfer = transfer
        self.cache = AttentionCache()

    def attention_map(self, net: nn.Module, x: Tensor) -> Tensor:
        """D's attention for its input ``x``: (N, 1, h, w) in [0, 1], normalised per sample, detached.

        Post hoc: mean over channels of |a_t| at conv ``layer`` (eq. 2); trainable: mean over channels of
        the TAM mask M (§3.2).
        """
        with torch.no_grad():
            raw = net.attend(x)[1] if self.attention == "trainable" else net.features(x)[self.layer - 1].abs()
            return minmax(raw.float().mean(1, keepdim=True))

    def upsample(self, maps: Tensor, size: Sequence[int]) -> Tensor:
        """The transfer g(M; phi) to the input size: the learned network, or bilinear upsampling."""
        if self.transfer is not None:
            return self.transfer(maps, size)
        return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)

    def blend(self, x: Tensor, maps: Tensor) -> Tensor:
        """x' = (M + 1) * x (RHP, eq. 4) or concat(x, M) (alpha, eq. 5), for maps M (N, 1, H, W)."""
        if self.blend_mode == "rhp":
            return (maps + 1) * x
        return torch.cat([x, maps.to(x.dtype)], dim=1)

    def map_for(self, x: Tensor, where: Where | None = None) -> Tensor:
        """The map for G's input ``x`` (N, 1, H, W): each seen sample's cached map, cut and flipped like the
        sample, else all ones; always all ones without ``where`` (test time)."""
        ones = x.new_ones(x.shape[0], 1, *x.shape[-2:])
        cached = None if where is None else self.cache.recall(where, x.shape[-2:])
        if cached is None:
            return ones
        maps, seen = cached
        return torch.where(seen.view(-1, 1, 1, 1), self.upsample(maps, x.shape[-2:]).to(x.dtype), ones)

    def unguided(self, x: Tensor) -> Tensor:
        """G's input for an image with no attention of its own (a reconstruction, an identity input): ``x``
        itself under RHP (or with no attention), concat(x, ones) under alpha blending (the authors' ones
        placeholder)."""
        return (
            x
            if self.blend_mode == "rhp" or self.attention == "none"
            else self.blend(x, x.new_ones(x.shape[0], 1, *x.shape[-2:]))
        )

    def guide(self, x: Tensor, where: Where | None = None) -> Tensor:
        """The generator's input x' for ``x``: blended with :meth:`map_for` (``x`` itself with no attention)."""
        if self.attention == "none":
            return x
        return self.blend(x, self.map_for(x, where))

    def remember(self, net: nn.Module, x: Tensor, where: Where) -> None:
        """Cache D's attention for its input ``x`` (built on G's outputs) for the samples' next visits
        (nothing with no attention: no extra D pass).

        Under torchrun every rank stores every rank's maps, so each rank's cache holds the whole cache (the
        next visit of a sample may fall to another rank).
        """
        if self.attention == "none":
            return
        maps = self.attention_map(net, x)
        if distributed.world().active:
            box = [] if where.box is None else [where.box]
            index, flip, maps, *box = distributed.all_gather_rows(where.index, where.flip, maps, *box)
            where = Where(index, flip, box[0] if box else None)
        self.cache.store(where, maps, x.shape[-2:])


def _auto(value: str, default: str) -> str:
    return default if value == AUTO else value


@dataclass
class GuideGANConfig:
    """GuideGAN options (defaults: the paper's, appendix A). ``auto`` (or None) picks the choice for the
    variant, supervised | unpaired: netG unet_128 | resnet_9blocks, norm instance (both), dropout 0.5 | 0,
    lambda_gan 10 (appendix A) | 1 (eq. 11, ASGIT). Supervised runs use lambda_l1 and test_mode; unpaired runs
    lambda_cycle, lambda_identity (0: eq. 11 has no identity term, ASGIT's default) and pool_size."""

    unpaired: bool = False
    """The CycleGAN variant (unpaired data) instead of the pix2pix one."""
    attention: str = choice("posthoc", ATTENTIONS)
    """Map source: post hoc from a D layer (PHA, eq. 2), trainable module (TAM, eq. 3), none (the baseline)."""
    attention_layer: int = 4
    """With posthoc: the D conv whose activations give the map (the paper: the 4th)."""
    upsampler: str = choice("bilinear", UPSAMPLERS)
    """Transfer of the map to the input size: bilinear, or a small learned network (appendix A)."""
    blend: str = choice("rhp", BLENDS)
    """How the map enters G: residual Hadamard product (M + 1) * x (eq. 4) or an alpha channel (eq. 5)."""
    netG: str = choice(AUTO, (AUTO, *GENERATORS))
    """Generator; auto: unet_128 supervised, resnet_9blocks unpaired."""
    ngf: int = 64
    """Filters of the generator's first layer."""
    ndf: int = 64
    """Filters of the discriminator's first layer."""
    n_layers: int = 3
    """PatchGAN depth (3: 70x70, whose 4th conv gives the post-hoc map)."""
    norm: str = choice(AUTO, (AUTO, *NORMS))
    """Normalisation; auto: instance (ASGIT's pix2pix_attn supervised; the paper's unpaired setting)."""
    dropout: float | None = bounded(None, 0, 1, include_high=False)
    """Dropout probability of the generator; none: 0.5 supervised, 0 unpaired."""
    gan_mode: str = choice("lsgan", GAN_MODES)
    """Adversarial loss (the paper: least squares)."""
    lambda_gan: float | None = None
    """Weight of each adversarial term; none: 10 supervised (appendix A), 1 unpaired (eq. 11)."""
    lambda_l1: float = 10.0
    """Supervised: weight of the L1 term."""
    lambda_cycle: float = 10.0
    """Unpaired: weight of the cycle-consistency loss."""
    lambda_identity: float = 0.0
    """Unpaired: weight of the identity loss, times lambda_cycle (0: off, as eq. 11 and ASGIT)."""
    pool_size: int = 50
    """Unpaired: generated images kept in the discriminators' pool."""
    test_mode: str = choice("paper", TEST_MODES)
    """Supervised, at test time: paper (dropout on, batch statistics) or eval (deterministic)."""
    checkpoint_activations: bool = False
    """Recompute the generators' activations in the backward pass instead of storing them (less memory)."""

    def validate(self) -> None:
        if self.attention == "trainable" and self.n_layers < 1:
            raise PixforgeError("option attention: trainable attention needs a PatchGAN with n_layers >= 1")
        convs = self.n_layers + 2 if self.n_layers else 3
        if self.attention == "posthoc" and not 1 <= self.attention_layer <= convs:
            raise PixforgeError(
                f"option attention_layer: D has {convs} convs with n_layers={self.n_layers}; choose 1..{convs}"
            )

    @property
    def gan_weight(self) -> float:
        """lambda_gan, or by default 10 supervised (appendix A) and 1 unpaired (eq. 11)."""
        if self.lambda_gan is not None:
            return self.lambda_gan
        return 1.0 if self.unpaired else 10.0

    def pix2pix(self) -> Pix2PixConfig:
        """The supervised base: pix2pix's networks with these options."""
        return Pix2PixConfig(
            netG=_auto(self.netG, "unet_128"),
            ngf=self.ngf,
            ndf=self.ndf,
            n_layers=self.n_layers,
            norm=_auto(self.norm, "instance"),
            dropout=0.5 if self.dropout is None else self.dropout,
            gan_mode=self.gan_mode,
            lambda_l1=self.lambda_l1,
            test_mode=self.test_mode,
            checkpoint_activations=self.checkpoint_activations,
        )

    def cyclegan(self) -> CycleGANConfig:
        """The unpaired base: CycleGAN's networks with these options."""
        return CycleGANConfig(
            netG=_auto(self.netG, "resnet_9blocks"),
            ngf=self.ngf,
            ndf=self.ndf,
            n_layers=self.n_layers,
            norm=_auto(self.norm, "instance"),
            dropout=0.0 if self.dropout is None else self.dropout,
            gan_mode=self.gan_mode,
            lambda_cycle=self.lambda_cycle,
            lambda_identity=self.lambda_identity,
            pool_size=self.pool_size,
            test_mode=self.test_mode,
            checkpoint_activations=self.checkpoint_activations,
        )


class WeightedGANLoss(GANLoss):
    """lambda_gan * L_GAN: 10 for the supervised objective (appendix A), 1 in the unpaired eq. 11.

    The weight applies to D's loss as well (the min-max objective is scaled); logged GAN losses include it.
    """

    def __init__(self, mode: str, weight: float) -> None:
        super().__init__(mode)
        self.weight = weight

    def forward(
        self, pred: Tensor | Sequence[Tensor], target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        return self.weight * super().forward(pred, target_is_real, for_discriminator)


class GuideGAN(Method):
    """``GuideGAN(cfg, info)`` builds :class:`SupervisedGuideGAN` or, with ``unpaired``, :class:`UnpairedGuideGAN`.

    What both share lives here: the guides (one per guided direction), the discriminator choice, the learned
    transfer in the generator phase, the explanation maps and the cache in checkpoints.
    """

    name = "guidegan"
    config_type = GuideGANConfig
    #: the batch key identifying the sample that each guided direction's generator input comes from
    index_keys: ClassVar[dict[str, str]]
    #: the side (A or B) of the data whose ``flip_*`` and ``box_*`` locate each guided direction's input
    sides: ClassVar[dict[str, str]]

    options: GuideGANConfig
    guides: dict[str, AttentionGuide]

    def __new__(cls, cfg: GuideGANConfig | None = None, info: DataInfo | None = None) -> GuideGAN:
        if cls is GuideGAN and cfg is not None:
            cls = UnpairedGuideGAN if cfg.unpaired else SupervisedGuideGAN
        return super().__new__(cls)

    def _init_guidance(self) -> None:
        """Guides for :attr:`index_keys`, the optional learned transfer T, and the weight of L_GAN."""
        cfg = self.options
        learned = cfg.upsampler == "learned" and cfg.attention != "none"
        transfer = LearnedUpsampler() if learned else None
        if transfer is not None:
            self.nets["T"] = transfer
        self.guides = {
            d: AttentionGuide(cfg.attention, cfg.attention_layer, cfg.blend, transfer)
            for d in self.index_keys
        }
        self.gan_loss = WeightedGANLoss(cfg.gan_mode, cfg.gan_weight)

    @property
    def extra_channels(self) -> int:
        """Input channels the blend adds to the generators: the alpha channel, or none for RHP (or no attention)."""
        return 1 if self.options.blend == "alpha" and self.options.attention != "none" else 0

    def make_discriminator(self, input_nc: int) -> nn.Module:
        """The base method's PatchGAN, with the trainable attention module for ``attention=trainable``."""
        net = AttentionPatchDiscriminator if self.options.attention == "trainable" else PatchDiscriminator
        return net(input_nc, self.cfg.ndf, self.cfg.n_layers, self.cfg.norm)

    def phases(self) -> list[Phase]:
        """The base method's phases; the learned transfer T trains with the generators (phase G)."""
        phases = super().phases()
        if "T" not in self.nets:
            return phases
        return [replace(p, nets=(*p.nets, "T")) if p.name == "G" else p for p in phases]

    def where(self, batch: Batch, direction: str) -> Where:
        """Where the inputs of ``direction``'s generator come from: their index, flip and crop box.

        Batches without per-side keys (built by hand) fall back to ``flip`` and no box (the tensor is the image).
        """
        side = self.sides[direction]
        flip = batch.get(f"flip_{side}", batch.get("flip"))
        return Where(batch[self.index_keys[direction]], flip, batch.get(f"box_{side}"))

    @abstractmethod
    def judged(self, batch: Batch, output: Tensor) -> tuple[str, nn.Module, Tensor]:
        """For an output of :meth:`generate`: its direction, the D that judges it and D's input."""

    def explain(self, batch: Batch, output: Tensor) -> dict[str, Tensor]:
        """``attention``: the map blended into G's input (all ones at test time); ``attention_output``: the
        map D gives for ``output``, for inspection. Both (N, 1, H, W) in [-1, 1]; none with no attention."""
        if self.options.attention == "none":
            return {}
        direction, net, judged = self.judged(batch, output)
        guide = self.guides[direction]
        seen = guide.upsample(guide.attention_map(net, judged), output.shape[-2:])
        return {"attention": guide.map_for(batch["A"]) * 2 - 1, "attention_output": seen * 2 - 1}

    def before_training(self, dataset: Any) -> None:
        """Reserve one cache row per image of each guided side of the training data."""
        size_a, size_b = dataset.domain_sizes()
        sizes = {"index": len(dataset), "index_A": size_a, "index_B": size_b}
        for direction, guide in self.guides.items():
            guide.cache.reserve(sizes[self.index_keys[direction]])

    def training_state(self) -> dict[str, Tensor]:
        """Everything besides the weights that decides the next step: the base method's state (unpaired:
        CycleGAN's ``pool_A.<slot>`` / ``pool_B.<slot>``) and each guide's cache, ``attention_<direction>``
        (rows, 1, Hc, Wc) and ``attention_<direction>_seen`` (rows,) (:meth:`AttentionCache.state`)."""
        return {
            **super().training_state(),
            **{
                f"attention_{d}{suffix}": t
                for d, g in self.guides.items()
                for suffix, t in g.cache.state().items()
            },
        }

    def load_training_state(self, state: dict[str, Tensor]) -> None:
        super().load_training_state(state)
        for direction, guide in self.guides.items():
            maps, seen = state.get(f"attention_{direction}"), state.get(f"attention_{direction}_seen")
            if maps is not None and seen is not None:
                guide.cache.load(maps, seen)


class SupervisedGuideGAN(GuideGAN, Pix2Pix):
    """pix2pix with D's attention blended into G's input; D is conditioned on the raw input x."""

    index_keys: ClassVar[dict[str, str]] = {"AtoB": "index"}
    sides: ClassVar[dict[str, str]] = {"AtoB": "A"}

    def __init__(self, cfg: GuideGANConfig, info: DataInfo) -> None:
        self.options = cfg
        super().__init__(cfg.pix2pix(), replace(info, input_nc=info.input_nc + self.extra_channels))
        self.info = info
        if cfg.attention == "trainable" or self.extra_channels:
            self.nets["D"] = self.make_discriminator(info.input_nc + info.output_nc)
        self._init_guidance()

    def forward_step(self, batch: Batch) -> State:
        """fake_B = G(x') with x' from the cached map (eq. 1); D's view of fake_B is cached for next time."""
        guide, x, where = self.guides["AtoB"], batch["A"], self.where(batch, "AtoB")
        state = super().forward_step({**batch, "A": guide.guide(x, where)})
        state["real_A"] = x
        guide.remember(self.nets["D"], torch.cat([x, state["fake_B"].detach()], dim=1), where)
        return state

    def generate(self, batch: Batch, **options: Any) -> Tensor:
        """G(x') with the test-time all-ones map (§4)."""
        if options:
            raise PixforgeError(
                f"{self.name} takes no translation options (got {', '.join(sorted(options))})"
            )
        return self.nets["G"](self.guides["AtoB"].guide(batch["A"]))

    def judged(self, batch: Batch, output: Tensor) -> tuple[str, nn.Module, Tensor]:
        return "AtoB", self.nets["D"], torch.cat([batch["A"], output], dim=1)


class UnpairedGuideGAN(GuideGAN, CycleGAN):
    """CycleGAN with attention from both discriminators: G_A is guided by D_A, G_B by D_B.

    Reconstructions and identity terms feed the generators unguided inputs (:meth:`AttentionGuide.unguided`):
    eq. 10 reconstructs from G_X's output itself, and ASGIT feeds the raw fake (RHP) or concat(fake, ones)
    (alpha); a blend with the all-ones map would feed 2 * x under RHP.
    """

    index_keys: ClassVar[dict[str, str]] = {"AtoB": "index_A", "BtoA": "index_B"}
    sides: ClassVar[dict[str, str]] = {"AtoB": "A", "BtoA": "B"}
    #: the discriminator that guides each direction: the one that judges its generator's outputs
    guided_by: ClassVar[dict[str, str]] = {"AtoB": "D_A", "BtoA": "D_B"}

    def __init__(self, cfg: GuideGANConfig, info: DataInfo) -> None:
        self.options = cfg
        #: direction of the last :meth:`generate`, whose output :meth:`explain` is asked about
        self.last_direction = "AtoB"
        super().__init__(cfg.cyclegan(), info)
        self._init_guidance()

    def make_generator(self, input_nc: int, output_nc: int) -> nn.Module:
        return super().make_generator(input_nc + self.extra_channels, output_nc)

    def translate(self, direction: str, x: Tensor, batch: Batch | None = None) -> Tensor:
        guide = self.guides[direction]
        if batch is None:
            return super().translate(direction, guide.guide(x))
        return super().translate(direction, guide.guide(x, self.where(batch, direction)))

    def translate_other(self, direction: str, x: Tensor) -> Tensor:
        return super().translate(direction, self.guides[direction].unguided(x))

    def forward_step(self, batch: Batch) -> State:
        """CycleGAN's forward pass on guided inputs; each D's view of its generator's output is cached."""
        state = super().forward_step(batch)
        for direction, fake in (("AtoB", "fake_B"), ("BtoA", "fake_A")):
            net = self.nets[self.guided_by[direction]]
            self.guides[direction].remember(net, state[fake].detach(), self.where(batch, direction))
        return state

    def generate(self, batch: Batch, **options: Any) -> Tensor:
        self.last_direction = self.direction(options)
        return super().generate(batch, **options)

    def judged(self, batch: Batch, output: Tensor) -> tuple[str, nn.Module, Tensor]:
        return self.last_direction, self.nets[self.guided_by[self.last_direction]], output
