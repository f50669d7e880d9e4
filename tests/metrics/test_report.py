import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.errors import PixforgeError
from pixforge.metrics import image, reco
from pixforge.metrics.report import evaluate_dirs


class MeanColour:
    """A stand-in feature network: the mean RGB of each image."""

    name = "meancolour"

    def __call__(self, images):
        return np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float64)


def save(folder, stem, array):
    folder.mkdir(exist_ok=True)
    Image.fromarray(array).save(folder / f"{stem}.png")


@pytest.fixture
def pair_dirs(tmp_path, clean, rainy):
    fake, real = tmp_path / "fake", tmp_path / "real"
    save(real, "a", clean)
    save(fake, "a", clean)
    flipped = np.ascontiguousarray(clean[:, ::-1])
    save(real, "b", flipped)
    save(fake, "b", rainy(flipped, veil=0.25, streak=40.0))
    return fake, real


def test_evaluate_dirs_averages_the_per_image_metrics(pair_dirs):
    fake, real = pair_dirs
    report = evaluate_dirs(fake, real, ("ssim", "vif", "reco"))
    rainy_b = np.asarray(Image.open(fake / "b.png"))
    clean_b = np.asarray(Image.open(real / "b.png"))
    assert [row["stem"] for row in report.per_image] == ["a", "b"]
    assert report.values["ssim"] == pytest.approx((1.0 + image.ssim(rainy_b, clean_b)) / 2)
    assert report.values["vif"] == pytest.approx((1.0 + image.vif(rainy_b, clean_b)) / 2, abs=1e-6)
    assert report.values["reco"] == pytest.approx((1.0 + reco.reco(rainy_b, clean_b)) / 2)
    assert report.settings["n_images"] == 2 and report.settings["resolution"] == "64x64"
    assert "sigma 1.5" in report.settings["ssim"] and "sigma_nsq 2.0" in report.settings["vif"]
    assert "psnr" not in report.values and "psnr" not in report.settings


def test_json_and_markdown_state_values_and_settings(pair_dirs):
    report = evaluate_dirs(*pair_dirs, ("psnr", "ssim"))
    assert report.values["psnr"] == math.inf  # image "a" is identical to its reference
    data = json.loads(report.to_json())
    assert data["values"]["psnr"] == "inf" and data["settings"]["data_range"] == 255
    table = report.to_markdown()
    assert "| ssim |" in table and "| data_range | 255 |" in table


def test_mismatched_stems_are_listed(pair_dirs, clean):
    fake, real = pair_dirs
    save(fake, "only_fake", clean)
    save(real, "only_real", clean)
    with pytest.raises(
        PixforgeError, match=r"1 only in .*fake \(only_fake\), 1 only in .*real \(only_real\)"
    ):
        evaluate_dirs(fake, real)


def test_size_mismatch_names_the_file(pair_dirs, clean):
    fake, real = pair_dirs
    save(fake, "b", clean[:48])
    with pytest.raises(PixforgeError, match=r"b\.png is 64x48"):
        evaluate_dirs(fake, real)


def test_bad_inputs_are_one_line_errors(tmp_path, pair_dirs):
    fake, real = pair_dirs
    with pytest.raises(PixforgeError, match="unknown metric"):
        evaluate_dirs(fake, real, ("lpips",))
    with pytest.raises(PixforgeError, match="does not exist"):
        evaluate_dirs(tmp_path / "missing", real)
    (fake / "c.png").write_bytes(b"broken")
    (real / "c.png").write_bytes(b"broken")
    with pytest.raises(PixforgeError, match="cannot read image"):
        evaluate_dirs(fake, real)


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 2 samples cannot span 3 dimensions
def test_other_feature_networks_give_kd_and_fd(pair_dirs):
    report = evaluate_dirs(
        *pair_dirs, ("kid", "fid"), features=MeanColour(), kid_subset_size=2, kid_subsets=3
    )
    assert set(report.values) == {"KD_meancolourx100", "KD_meancolourx100_std", "FD_meancolour"}
    assert report.values["FD_meancolour"] > 0
    assert "subset size 2, 3 subsets" in report.settings["kid"]
    assert report.settings["feature_network"].startswith("meancolour (3-d)")


def test_fcn_scores_from_a_segmenter(pair_dirs):
    fake, real = pair_dirs
    labels = fake.parent / "labels"
    truth = np.zeros((64, 64), dtype=np.uint8)
    truth[:, 32:] = 1
    truth[0, 0] = 255
    save(labels, "a", truth)
    save(labels, "b", truth)

    def left_right(batch: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch.shape[0], 64, 64, dtype=torch.long)
        out[:, :, 16:] = 1
        return out

    report = evaluate_dirs(fake, real, ("psnr",), labels=labels, segmenter=left_right, num_classes=2)
    # per image: 32 x 64 class-1 pixels right; 32 x 64 - 1 class-0 truth pixels, of which 16 x 64 right
    tp0, gt0, tp1 = 2 * (16 * 64 - 1), 2 * (32 * 64 - 1), 2 * 32 * 64
    assert report.values["fcn_pixel_accuracy"] == pytest.approx((tp0 + tp1) / (gt0 + tp1))
    assert report.values["fcn_mean_class_accuracy"] == pytest.approx((tp0 / gt0 + 1.0) / 2)
    assert report.per_class["fcn_class_iou"][1] == pytest.approx(tp1 / (tp1 + gt0 - tp0))
    with pytest.raises(PixforgeError, match="segmenter, num_classes missing"):
        evaluate_dirs(fake, real, labels=labels)
