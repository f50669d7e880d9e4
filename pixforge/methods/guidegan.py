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
Maps are kept at D's resolution in the unflipped frame and flipped on use, so shuffling, flipping and
batches of any size work (the public code forces batch 1, no shuffle, no flip). The cache travels in
checkpoints. Random crops are not tracked: at its next visit a sample cropped elsewhere gets the map of its
previous crop (at most load_size - crop_size pixels off). D's view costs one extra D forward pass per step,
without gradients, right after G's (in train mode, so a batch-norm D also updates its running statistics
on it); D stays conditioned on the raw input x, never on x'.

Supervised (default): pix2pix with the paper's appendix settings, UNet-128 + PatchGAN, LSGAN,
10 * L_GAN + 10 * L_L1. Unpaired (``unpaired=true``): CycleGAN (ResNet 9 blocks by default) with attention
from both discriminators, each direction guided by the D that judges its outputs, and one shared learned
transfer (§3.1's T), the GAN terms weighted by 10 as well. Both variants subclass their base method; the
guidance itself is the component :class:`AttentionGuide`.
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

ATTENTIONS = ("posthoc", "trainable")
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


def flip_where(maps: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the maps of the samples whose ``flip`` is true."""
    return torch.where(flip.view(-1, 1, 1, 1), maps.flip(-1), maps)


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


class AttentionCache:
    """D's last attention map of each sample (rows = dataset indices), in the unflipped frame.

    Maps are kept at D's resolution (N, 1, h, w) with a flag per sample saying whether it was seen. The
    rows are reserved from the dataset (:meth:`reserve`); without a reservation they grow with the indices
    met, which reads the largest index on the host.
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

    def store(self, index: Tensor, flip: Tensor, maps: Tensor) -> None:
        """Remember ``maps`` (N, 1, h, w) of the samples ``index``, seen flipped where ``flip`` is true."""
        maps = flip_where(maps.float(), flip)
        if self.maps is None or self.seen is None:
            self.maps = maps.new_ones(0, *maps.shape[1:])
            self.seen = torch.zeros(0, dtype=torch.bool, device=maps.device)
        cache, seen = self._fit(index, self.maps, self.seen)
        if maps.shape[-2:] != cache.shape[-2:]:
            maps = F.interpolate(maps, size=cache.shape[-2:], mode="bilinear", align_corners=False)
        cache[index] = maps
        seen[index] = True

    def recall(self, index: Tensor, flip: Tensor) -> tuple[Tensor, Tensor] | None:
        """The stored maps of ``index`` in each sample's current frame and whether they were seen; None if empty."""
        if self.maps is None or self.seen is None:
            return None
        maps, seen = self._fit(index, self.maps, self.seen)
        return flip_where(maps[index], flip), seen[index]

    def state(self) -> dict[str, Tensor]:
        if self.maps is None or self.seen is None:
            return {}
        return {"": self.maps, "_seen": self.seen}

    def load(self, maps: Tensor, seen: Tensor) -> None:
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

    def map_for(self, x: Tensor, index: Tensor | None = None, flip: Tensor | None = None) -> Tensor:
        """The map for G's input ``x`` (N, 1, H, W): each seen sample's cached map, flipped like the sample,
        else all ones; always all ones without ``index`` (test time)."""
        ones = x.new_ones(x.shape[0], 1, *x.shape[-2:])
        cached = None if index is None or flip is None else self.cache.recall(index, flip)
        if cached is None:
            return ones
        maps, seen = cached
        return torch.where(seen.view(-1, 1, 1, 1), self.upsample(maps, x.shape[-2:]).to(x.dtype), ones)

    def guide(self, x: Tensor, index: Tensor | None = None, flip: Tensor | None = None) -> Tensor:
        """The generator's input x' for ``x``: blended with :meth:`map_for`."""
        return self.blend(x, self.map_for(x, index, flip))

    def remember(self, net: nn.Module, x: Tensor, index: Tensor, flip: Tensor) -> None:
        """Cache D's attention for its input ``x`` (built on G's outputs) for the samples' next visits.

        Under torchrun every rank stores every rank's maps, so each rank's cache holds the whole cache (the
        next visit of a sample may fall to another rank).
        """
        maps = self.attention_map(net, x)
        index, flip, maps = distributed.all_gather_rows(index.to(maps.device), flip.to(maps.device), maps)
        self.cache.store(index, flip, maps)


def _auto(value: str, default: str) -> str:
    return default if value == AUTO else value


@dataclass
class GuideGANConfig:
    """GuideGAN options (defaults: the paper's, appendix A). ``auto`` picks the base method's choice for the
    variant, supervised | unpaired: netG unet_128 | resnet_9blocks, norm batch | instance, dropout 0.5 | 0.
    Supervised runs use lambda_l1 and test_mode; unpaired runs lambda_cycle, lambda_identity and pool_size."""

    unpaired: bool = False
    attention: str = choice("posthoc", ATTENTIONS)
    attention_layer: int = 4
    upsampler: str = choice("bilinear", UPSAMPLERS)
    blend: str = choice("rhp", BLENDS)
    netG: str = choice(AUTO, (AUTO, *GENERATORS))
    ngf: int = 64
    ndf: int = 64
    n_layers: int = 3
    norm: str = choice(AUTO, (AUTO, *NORMS))
    dropout: float | None = bounded(None, 0, 1, include_high=False)
    gan_mode: str = choice("lsgan", GAN_MODES)
    lambda_gan: float = 10.0
    lambda_l1: float = 10.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    test_mode: str = choice("paper", TEST_MODES)

    def validate(self) -> None:
        if self.attention == "trainable" and self.n_layers < 1:
            raise PixforgeError("option attention: trainable attention needs a PatchGAN with n_layers >= 1")
        convs = self.n_layers + 2 if self.n_layers else 3
        if self.attention == "posthoc" and not 1 <= self.attention_layer <= convs:
            raise PixforgeError(
                f"option attention_layer: D has {convs} convs with n_layers={self.n_layers}; choose 1..{convs}"
            )

    def pix2pix(self) -> Pix2PixConfig:
        """The supervised base: pix2pix's networks with these options."""
        return Pix2PixConfig(
            netG=_auto(self.netG, "unet_128"),
            ngf=self.ngf,
            ndf=self.ndf,
            n_layers=self.n_layers,
            norm=_auto(self.norm, "batch"),
            dropout=0.5 if self.dropout is None else self.dropout,
            gan_mode=self.gan_mode,
            lambda_l1=self.lambda_l1,
            test_mode=self.test_mode,
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
        )


class WeightedGANLoss(GANLoss):
    """lambda_gan * L_GAN: the paper weights the adversarial term by 10 in every experiment (appendix A).

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

    options: GuideGANConfig
    guides: dict[str, AttentionGuide]

    def __new__(cls, cfg: GuideGANConfig | None = None, info: DataInfo | None = None) -> GuideGAN:
        if cls is GuideGAN and cfg is not None:
            cls = UnpairedGuideGAN if cfg.unpaired else SupervisedGuideGAN
        return super().__new__(cls)

    def _init_guidance(self) -> None:
        """Guides for :attr:`index_keys`, the optional learned transfer T, and the weight of L_GAN."""
        cfg = self.options
        transfer = LearnedUpsampler() if cfg.upsampler == "learned" else None
        if transfer is not None:
            self.nets["T"] = transfer
        self.guides = {
            d: AttentionGuide(cfg.attention, cfg.attention_layer, cfg.blend, transfer)
            for d in self.index_keys
        }
        self.gan_loss = WeightedGANLoss(cfg.gan_mode, cfg.lambda_gan)

    @property
    def extra_channels(self) -> int:
        """Input channels the blend adds to the generators: the alpha channel, or none for RHP."""
        return 1 if self.options.blend == "alpha" else 0

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

    @abstractmethod
    def judged(self, batch: Batch, output: Tensor) -> tuple[str, nn.Module, Tensor]:
        """For an output of :meth:`generate`: its direction, the D that judges it and D's input."""

    def explain(self, batch: Batch, output: Tensor) -> dict[str, Tensor]:
        """``attention``: the map blended into G's input (all ones at test time); ``attention_output``: the
        map D gives for ``output``, for inspection. Both (N, 1, H, W) in [-1, 1]."""
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

    def extra_state(self) -> dict[str, Tensor]:
        return {
            f"attention_{d}{suffix}": t
            for d, g in self.guides.items()
            for suffix, t in g.cache.state().items()
        }

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        for direction, guide in self.guides.items():
            maps, seen = state.get(f"attention_{direction}"), state.get(f"attention_{direction}_seen")
            if maps is not None and seen is not None:
                guide.cache.load(maps, seen)


class SupervisedGuideGAN(GuideGAN, Pix2Pix):
    """pix2pix with D's attention blended into G's input; D is conditioned on the raw input x."""

    index_keys: ClassVar[dict[str, str]] = {"AtoB": "index"}

    def __init__(self, cfg: GuideGANConfig, info: DataInfo) -> None:
        self.options = cfg
        super().__init__(cfg.pix2pix(), replace(info, input_nc=info.input_nc + self.extra_channels))
        self.info = info
        if cfg.attention == "trainable" or self.extra_channels:
            self.nets["D"] = self.make_discriminator(info.input_nc + info.output_nc)
        self._init_guidance()

    def forward_step(self, batch: Batch) -> State:
        """fake_B = G(x') with x' from the cached map (eq. 1); D's view of fake_B is cached for next time."""
        guide, x, index, flip = self.guides["AtoB"], batch["A"], batch["index"], batch["flip"]
        state = super().forward_step({**batch, "A": guide.guide(x, index, flip)})
        state["real_A"] = x
        guide.remember(self.nets["D"], torch.cat([x, state["fake_B"].detach()], dim=1), index, flip)
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

    Reconstructions and identity terms feed the generators images that have no cached map, so they get the
    all-ones map, as at test time.
    """

    index_keys: ClassVar[dict[str, str]] = {"AtoB": "index_A", "BtoA": "index_B"}
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
        return super().translate(direction, guide.guide(x, batch[self.index_keys[direction]], batch["flip"]))

    def forward_step(self, batch: Batch) -> State:
        """CycleGAN's forward pass on guided inputs; each D's view of its generator's output is cached."""
        state = super().forward_step(batch)
        for direction, fake in (("AtoB", "fake_B"), ("BtoA", "fake_A")):
            net = self.nets[self.guided_by[direction]]
            key = self.index_keys[direction]
            self.guides[direction].remember(net, state[fake].detach(), batch[key], batch["flip"])
        return state

    def generate(self, batch: Batch, **options: Any) -> Tensor:
        self.last_direction = self.direction(options)
        return super().generate(batch, **options)

    def judged(self, batch: Batch, output: Tensor) -> tuple[str, nn.Module, Tensor]:
        return self.last_direction, self.nets[self.guided_by[self.last_direction]], output
