"""The papers' ablation tables as data: each arm a set of config overrides, the metric, the paper's numbers.

A :class:`Table` names its paper and table, the metric the paper scored it with, the paper's dataset and
budget, its arms (:class:`Arm`: a method, a preset and ``--set`` overrides) and the paper's number for each
arm. :func:`pixforge.reproduce.runner.run_table` trains the arms at a given budget and writes our numbers
beside these. The pix2pix-family tables train U-Nets with the depth from the size (``netG=unet``, which is
the paper's unet_256 at 256 px and unet_128 at 128 px), so that a table runs at any ``--size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: what a table's paper scored it with
FCN = "fcn"
PREFERENCE = "preference"
SEGMENTATION = "segmentation"
FCN_COLUMNS = ("per-pixel acc.", "per-class acc.", "class IoU")


@dataclass(frozen=True)
class Arm:
    """One row of a table: ``method`` at ``preset`` with ``overrides`` (config KEY: VALUE, as ``--set``)."""

    name: str
    method: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    #: the paper's numbers for this row, in the table's ``paper_columns`` (empty: the paper has none)
    paper: tuple[float, ...] = ()

    @property
    def slug(self) -> str:
        """A folder-safe name of the arm."""
        return _folder_safe(self.name.lower())

    @property
    def training(self) -> str:
        """A folder-safe name of what the arm trains (method, preset, overrides), not of its row: arms that
        train the same thing in different tables (pix2pix's "L1" and "U-Net (L1)") share one run."""
        settings = [f"{key}={value}" for key, value in sorted(self.overrides.items())]
        return _folder_safe("-".join([self.method, self.preset or "defaults", *settings]), keep="=_.")


@dataclass(frozen=True)
class Table:
    """A paper's ablation table: its arms, its metric and its numbers with their setting."""

    name: str
    title: str
    source: str
    metric: str
    paper_columns: tuple[str, ...]
    setting: str
    arms: tuple[Arm, ...]
    #: what our reproduction changes or cannot do, said beside the table
    note: str = ""
    #: the paper's ground-truth row (the metric on real images), if it gives one
    truth: tuple[float, ...] = ()

    @property
    def needs_segmenter(self) -> bool:
        return self.metric in (FCN, SEGMENTATION)

    def paper_rows(self) -> list[str]:
        """The paper's numbers as markdown rows (for ``--list``)."""
        head = f"| arm | {' | '.join(self.paper_columns)} |"
        lines = [head, "|" + " --- |" * (len(self.paper_columns) + 1)]
        for arm in self.arms:
            cells = [paper_number(v) for v in arm.paper] or ["-"] * len(self.paper_columns)
            lines.append(f"| {arm.name} | {' | '.join(cells)} |")
        return lines


def _folder_safe(text: str, keep: str = "") -> str:
    """``text`` with every character but letters, digits and ``keep`` as one ``-`` between parts."""
    text = "".join(c if c.isalnum() or c in keep else "-" for c in text)
    return "-".join(part for part in text.split("-") if part)


def paper_number(value: float) -> str:
    """A paper's number as printed there: fractions with at least two decimals (0.20, 0.5775), else as is."""
    return f"{value:.2f}" if value < 1 and round(value, 2) == value else f"{value:g}"


PIX2PIX = "pix2pix (Isola et al., CVPR 2017)"
PIX2PIX_SETTING = "Cityscapes labels -> photo, 256 px, 200 epochs, batch 1, FCN-8s scores"
UNET = {"netG": "unet"}

PIX2PIX_LOSSES = Table(
    name="pix2pix-losses",
    title="Losses: L1, GAN, cGAN, L1+GAN, L1+cGAN",
    source=f"{PIX2PIX}, Table 1",
    metric=FCN,
    paper_columns=FCN_COLUMNS,
    setting=PIX2PIX_SETTING,
    arms=(
        Arm("L1", "pix2pix", "facades", {**UNET, "lambda_gan": 0}, (0.42, 0.15, 0.11)),
        Arm(
            "GAN", "pix2pix", "facades", {**UNET, "lambda_l1": 0, "conditional_d": False}, (0.22, 0.05, 0.01)
        ),
        Arm("cGAN", "pix2pix", "facades", {**UNET, "lambda_l1": 0}, (0.57, 0.22, 0.16)),
        Arm("L1+GAN", "pix2pix", "facades", {**UNET, "conditional_d": False}, (0.64, 0.20, 0.15)),
        Arm("L1+cGAN", "pix2pix", "facades", UNET, (0.66, 0.23, 0.17)),
    ),
    truth=(0.80, 0.26, 0.21),
)

PIX2PIX_GENERATORS = Table(
    name="pix2pix-generators",
    title="Generators: encoder-decoder vs U-Net, with L1 and L1+cGAN",
    source=f"{PIX2PIX}, Table 2",
    metric=FCN,
    paper_columns=FCN_COLUMNS,
    setting="Cityscapes labels -> photo, 256 px, 200 epochs, batch 10 (Table 2 only), FCN-8s scores",
    arms=(
        Arm(
            "Encoder-decoder (L1)",
            "pix2pix",
            "facades",
            {"netG": "encoder_decoder", "lambda_gan": 0},
            (0.35, 0.12, 0.08),
        ),
        Arm(
            "Encoder-decoder (L1+cGAN)", "pix2pix", "facades", {"netG": "encoder_decoder"}, (0.29, 0.09, 0.05)
        ),
        Arm("U-Net (L1)", "pix2pix", "facades", {**UNET, "lambda_gan": 0}, (0.48, 0.18, 0.13)),
        Arm("U-Net (L1+cGAN)", "pix2pix", "facades", UNET, (0.55, 0.20, 0.14)),
    ),
    note="The paper trained this table with batch 10; ours with the preset's batch 1, as its other tables.",
)

PIX2PIX_PATCHGAN = Table(
    name="pix2pix-patchgan",
    title="Discriminator receptive field: 1x1 (PixelGAN), 16x16, 70x70, 286x286",
    source=f"{PIX2PIX}, Table 3",
    metric=FCN,
    paper_columns=FCN_COLUMNS,
    setting=PIX2PIX_SETTING,
    arms=(
        Arm("1x1", "pix2pix", "facades", {**UNET, "n_layers": 0}, (0.39, 0.15, 0.10)),
        Arm("16x16", "pix2pix", "facades", {**UNET, "n_layers": 1}, (0.65, 0.21, 0.17)),
        Arm("70x70", "pix2pix", "facades", {**UNET, "n_layers": 3}, (0.66, 0.23, 0.17)),
        Arm("286x286", "pix2pix", "facades", {**UNET, "n_layers": 5}, (0.42, 0.16, 0.11)),
    ),
    note="The 286x286 PatchGAN needs images of at least 256 px (it pads with zeros beyond).",
)

PIX2PIXHD = "pix2pixHD (Wang et al., CVPR 2018)"
HD_SETTING = "Cityscapes 2048x1024, 200 epochs"
HD_BASE = {"vgg_loss": True}
HD_NOTE = (
    "pix2pixHD arms run the method's defaults (the paper's global generator, 3 discriminators, feature "
    "matching, VGG loss, instance maps, feature encoder) on labeled data"
)

PIX2PIXHD_LOSSES = Table(
    name="pix2pixhd-losses",
    title="Losses: GAN only, GAN + feature matching, GAN + feature matching + VGG",
    source=f"{PIX2PIXHD}, §4 (loss analysis)",
    metric=PREFERENCE,
    paper_columns=("full model preferred (%)",),
    setting=f"{HD_SETTING}; human A/B preference of the full model over each arm (Amazon Mechanical Turk)",
    arms=(
        Arm("GAN", "pix2pixhd", None, {"lambda_feat": 0, "vgg_loss": False}, (68.55,)),
        Arm("GAN+FM", "pix2pixhd", None, {"vgg_loss": False}, (58.90,)),
        Arm("GAN+FM+VGG", "pix2pixhd", None, HD_BASE),
    ),
    note="The paper's metric is a human preference study; ours are the automatic scores (run `pixforge "
    f"study` for a preference study). {HD_NOTE}; the VGG arm needs the VGG19 weights (see the README).",
)

PIX2PIXHD_DISCRIMINATORS = Table(
    name="pix2pixhd-discriminators",
    title="Discriminators: a single D vs multi-scale Ds",
    source=f"{PIX2PIXHD}, Table 5",
    metric=SEGMENTATION,
    paper_columns=("pixel acc. (%)", "mean IoU"),
    setting=f"{HD_SETTING}; PSPNet segmentation of the results",
    arms=(
        Arm("single D", "pix2pixhd", None, {"num_D": 1}, (82.87, 0.5775)),
        Arm("multi-scale Ds", "pix2pixhd", None, {"num_D": 3}, (83.78, 0.6389)),
    ),
    note=f"The paper segments with PSPNet; ours with the pixforge segmenter (FCN-scores). {HD_NOTE}.",
)

PIX2PIXHD_INSTANCES = Table(
    name="pix2pixhd-instances",
    title="Instance maps: without vs with the instance boundary map",
    source=f"{PIX2PIXHD}, §4 (instance maps)",
    metric=PREFERENCE,
    paper_columns=("with-instances preferred (%)",),
    setting=f"{HD_SETTING}; human A/B preference on car regions",
    arms=(
        Arm("without instances", "pix2pixhd", None, {"instances": False}),
        Arm("with instances", "pix2pixhd", None, {"instances": True}, (64.34,)),
    ),
    note=f"The paper's 64.34 % is the share preferring the with-instances results over the without; ours "
    f"are the automatic scores. {HD_NOTE} with instance maps.",
)

DRPAN_REVISER = Table(
    name="drpan-reviser",
    title="The reviser: pix2pix (no reviser), DRPAN without the fake mask, DRPAN",
    source="DRPAN (Wang et al., ECCV 2018), Table 4",
    metric=FCN,
    paper_columns=FCN_COLUMNS,
    setting="Cityscapes labels -> photo, 256 px, FCN-8s scores (the paper's pix2pix row: L1+cGAN [14])",
    arms=(
        Arm("L1+cGAN (reviser=none)", "drpan", "facades", {**UNET, "reviser": "none"}, (0.63, 0.21, 0.16)),
        Arm("DRPAN w/o fake mask", "drpan", "facades", {**UNET, "mask_operation": False}, (0.72, 0.22, 0.19)),
        Arm("DRPAN", "drpan", "facades", UNET, (0.73, 0.24, 0.19)),
    ),
    truth=(0.80, 0.26, 0.21),
    note="The paper's row for pix2pix is pix2pix itself; ours is DRPAN with the reviser off (the same G, "
    "D_p and settings).",
)

GUIDEGAN_ATTENTION = Table(
    name="guidegan-attention",
    title="Attention guidance: none (pix2pix), post-hoc (PHA), trainable (TAM)",
    source="GuideGAN (ICLR 2020 submission), Table 5",
    metric=FCN,
    paper_columns=FCN_COLUMNS,
    setting="Cityscapes labels -> photo, supervised, 128 px, 200 epochs, FCN-8s scores",
    arms=(
        Arm(
            "pix2pix (attention=none)",
            "guidegan",
            "facades",
            {**UNET, "attention": "none"},
            (0.61, 0.22, 0.16),
        ),
        Arm("PHA", "guidegan", "facades", {**UNET, "attention": "posthoc"}, (0.63, 0.23, 0.16)),
        Arm("TAM", "guidegan", "facades", {**UNET, "attention": "trainable"}, (0.63, 0.22, 0.16)),
    ),
    note="The arms take the facades preset's objective, which is pix2pix's (vanilla GAN, lambda_l1 100, batch "
    "norm; the paper's PHA and TAM rows used LSGAN and 10 * GAN + 10 * L1): so our attention=none row is "
    "pix2pix itself, as the paper's, and trains step for step as pix2pix does.",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        PIX2PIX_LOSSES,
        PIX2PIX_GENERATORS,
        PIX2PIX_PATCHGAN,
        PIX2PIXHD_LOSSES,
        PIX2PIXHD_DISCRIMINATORS,
        PIX2PIXHD_INSTANCES,
        DRPAN_REVISER,
        GUIDEGAN_ATTENTION,
    )
}
