"""Editing a pix2pixHD scene (Wang et al. 2018, §4.3) and clustering a run's instance styles.

A :class:`Scene` holds a label map, an instance map and a style per instance on a loaded
:class:`~pixforge.api.Translator`; it renders through the model's own translation options
(:meth:`pixforge.methods.pix2pixhd.Pix2PixHD.generate`: per-instance ``clusters`` and ``features``). The
studio's paint page and the Python API share it. :func:`cluster_run` is ``pixforge pix2pixhd cluster RUN``:
it reads a run's latest checkpoint, clusters the training set's instance features (§3.4) and rewrites the
checkpoint atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pixforge import checkpoint
from pixforge.api import Translator
from pixforge.config import from_dict
from pixforge.data.dataset import TranslationDataset, one_hot
from pixforge.data.transforms import to_image
from pixforge.devices import pick_device
from pixforge.errors import PixforgeError
from pixforge.methods.pix2pixhd import Pix2PixHD, Pix2PixHDConfig


@dataclass
class Scene:
    """An editable scene (pix2pixHD §4.3): a label map, an instance map and a style per instance.

    Maps are (1, 1, H, W) int64 at the model's input size. Styles are a cluster index of the instance's
    class (``clusters``) or an explicit feature vector (``features``); other instances get a style drawn
    from ``style_seed`` at :meth:`render`.

    >>> scene = edit(pixforge.load("runs/hd"), Image.open("labels.png"), Image.open("instances.png"))  # doctest: +SKIP
    >>> scene.set_style(26001, cluster=3); scene.set_class(26002, 27); scene.image().save("out.png")  # doctest: +SKIP
    """

    translator: Translator
    label: Tensor
    instance: Tensor
    clusters: dict[int, int] = field(default_factory=dict)
    features: dict[int, tuple[float, ...]] = field(default_factory=dict)

    @property
    def method(self) -> Pix2PixHD:
        method = self.translator.method
        if not isinstance(method, Pix2PixHD):
            raise PixforgeError(f"scene editing needs a pix2pixhd model, not {method.name}")
        return method

    def instances(self) -> dict[int, int]:
        """Every instance id and its class (the most frequent label under it; the smallest class on a tie).

        One pass over the map (a (instance, class) histogram), not one per instance."""
        ids, inverse = torch.unique(self.instance.reshape(-1), return_inverse=True)
        n = int(self.label.max()) + 1 if self.label.numel() else 1
        hist = torch.bincount(inverse * n + self.label.reshape(-1).long(), minlength=len(ids) * n)
        classes = hist.reshape(len(ids), n).argmax(1)
        return dict(zip(ids.tolist(), classes.tolist(), strict=True))

    def mask(self, instance_id: int) -> Tensor:
        """Where instance ``instance_id`` is: (H, W) bool."""
        found = self.instance[0, 0] == instance_id
        if not bool(found.any()):
            raise PixforgeError(f"no instance {instance_id} in this scene (ids: {sorted(self.instances())})")
        return found

    def _check_class(self, cls: int) -> None:
        label_nc = self.method.info.label_nc
        if not 0 <= cls < max(label_nc, 1):
            raise PixforgeError(f"class {cls} is outside 0..{label_nc - 1}")

    def set_class(self, instance_id: int, cls: int) -> None:
        """Change the class of one instance (e.g. a tree into a building, Fig. 1b)."""
        self._check_class(cls)
        self.label[0, 0][self.mask(instance_id)] = cls

    def paint(self, region: Tensor | np.ndarray, cls: int, instance_id: int | None = None) -> int:
        """Give a region ((H, W) bool) of the label map class ``cls`` as one instance (a new id unless
        ``instance_id`` is given); returns the instance id."""
        self._check_class(cls)
        where = torch.as_tensor(np.asarray(region, dtype=bool))
        if tuple(where.shape) != tuple(self.label.shape[-2:]):
            raise PixforgeError(
                f"paint: the region is {tuple(where.shape)} but the scene is {tuple(self.label.shape[-2:])}"
            )
        new_id = int(self.instance.max()) + 1 if instance_id is None else instance_id
        self.label[0, 0][where] = cls
        self.instance[0, 0][where] = new_id
        return new_id

    def set_style(
        self, instance_id: int, *, cluster: int | None = None, features: Sequence[float] | None = None
    ) -> None:
        """Choose the style of one instance: a cluster centre of its class or an explicit feature vector."""
        if (cluster is None) == (features is None):
            raise PixforgeError("set_style: give either cluster or features")
        self.mask(instance_id)
        self.clusters.pop(instance_id, None)
        self.features.pop(instance_id, None)
        if cluster is not None:
            self.clusters[instance_id] = cluster
        else:
            self.features[instance_id] = tuple(float(v) for v in features or ())

    def render(self, style_seed: int = 0) -> Tensor:
        """Re-synthesise the scene: (1, 3, H, W) in [-1, 1]."""
        maps = {
            "A": one_hot(self.label, self.method.n_classes),
            "label": self.label,
            "instance": self.instance,
        }
        batch = {k: v.to(self.translator.device) for k, v in maps.items()}
        options = {"style_seed": style_seed, "clusters": dict(self.clusters), "features": dict(self.features)}
        return self.translator.translate_batch(batch, **options)["output"]

    def image(self, style_seed: int = 0) -> Image.Image:
        """:meth:`render` as a PIL image."""
        return to_image(self.render(style_seed)[0])


def edit(translator: Translator, label: Image.Image, instance: Image.Image | None = None) -> Scene:
    """A :class:`Scene` of a label map (and instance map; without one, each class region is one instance)
    for a pix2pixHD model loaded with ``pixforge.load(run)``."""
    if not isinstance(translator.method, Pix2PixHD):
        raise PixforgeError(f"scene editing needs a pix2pixhd model, not {translator.method.name}")
    if not translator.label_nc:
        raise PixforgeError("scene editing needs a model trained on label maps (label_nc > 0)")
    batch = translator.batch_for(label, instance)
    ids = batch["label"].cpu().clone()
    return Scene(translator, ids, batch["instance"].cpu().clone() if "instance" in batch else ids.clone())


def cluster_run(
    run: str | Path, data: str | Path | None = None, device: str = "auto"
) -> tuple[Path, dict[int, int]]:
    """Cluster the instance features of a run's training set and rewrite its latest checkpoint with the
    centres (atomically). Returns the checkpoint folder and the number of centres per class."""
    latest = checkpoint.latest_checkpoint(Path(run))
    if latest is None:
        raise PixforgeError(f"{run}: not a run directory with a checkpoint")
    loaded = checkpoint.read(latest)
    if loaded.method != Pix2PixHD.name:
        raise PixforgeError(f"{run}: a {loaded.method} run; clustering is for pix2pixhd runs")
    cfg = from_dict(loaded.config, Pix2PixHDConfig)
    if not cfg.model.encoder:
        raise PixforgeError(f"{run}: the model has no feature encoder (encoder=false); nothing to cluster")
    dev = pick_device(device)
    method = Pix2PixHD(cfg.model, loaded.info)
    method.load_state_dict(loaded.weights)
    method.load_extra_state(loaded.extra)
    method.to(dev)
    data_cfg = dataclasses.replace(cfg.data, root=str(data)) if data else cfg.data
    dataset = TranslationDataset(
        Path(data_cfg.root), "train", data_cfg, train=False, size_multiple=method.size_multiple
    )
    counts = method.cluster_features(dataset, dev)
    state = checkpoint.read_state(loaded.path)
    folder = checkpoint.save_checkpoint(
        Path(run), method, cfg.to_yaml(), loaded.step, state, cfg.train.keep_checkpoints
    )
    return folder, counts
