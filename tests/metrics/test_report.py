import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.errors import PixforgeError
from pixforge.metrics import image, reco
from pixforge.metrics.report import ScoreOptions, evaluate_dirs


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
    report = evaluate_dirs(fake, real, ScoreOptions(("ssim", "vif", "reco")))
    rainy_b = np.asarray(Image.open(fake / "b.png"))
    clean_b = np.asarray(Image.open(real / "b.png"))
    assert [row["stem"] for row in report.per_image] == ["a", "b"]
    assert report.values["ssim"] == pytest.approx((1.0 + image.ssim(rainy_b, clean_b)) / 2)
    assert report.values["vif"] == pytest.approx((1.0 + image.vif(rainy_b, clean_b)) / 2, abs=1e-6)
    assert report.values["reco"] == pytest.approx((1.0 + reco.reco(rainy_b, clean_b)) / 2)
    assert report.settings["n_images"] == 2 and report.settings["resolution"] == "64x64"
    assert "sigma 1.5" in report.settings["ssim"] and "sigma_nsq 2.0" in report.settings["vif"]
    assert "psnr" not in report.values and "psnr" not in report.settings


def test_color_y_scores_psnr_and_ssim_on_luma_and_says_so(pair_dirs):
    fake, real = pair_dirs
    report = evaluate_dirs(fake, real, ScoreOptions(("psnr", "ssim", "vif"), color="y"))
    rainy_b = np.asarray(Image.open(fake / "b.png"))
    clean_b = np.asarray(Image.open(real / "b.png"))
    assert report.per_image[1]["psnr"] == pytest.approx(image.psnr(rainy_b, clean_b, color="y"))
    assert report.values["ssim"] == pytest.approx((1.0 + image.ssim(rainy_b, clean_b, color="y")) / 2)
    assert report.per_image[1]["psnr"] != pytest.approx(image.psnr(rainy_b, clean_b))
    assert "PSNR and SSIM on Y of BT.601 as MATLAB rgb2ycbcr" in report.settings["colour_space"]
    assert "over the pixels of Y" in report.settings["psnr"] and "mean SSIM of Y" in report.settings["ssim"]
    rgb = evaluate_dirs(fake, real, ScoreOptions(("psnr",)))
    assert "PSNR and SSIM on R, G, B" in rgb.settings["colour_space"]
    with pytest.raises(PixforgeError, match="--color 'yuv'"):
        evaluate_dirs(fake, real, ScoreOptions(("psnr",), color="yuv"))


def test_json_and_markdown_state_values_and_settings(pair_dirs):
    report = evaluate_dirs(*pair_dirs, ScoreOptions(("psnr", "ssim")))
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
        evaluate_dirs(fake, real, ScoreOptions(("lpips",)))
    with pytest.raises(PixforgeError, match="does not exist"):
        evaluate_dirs(tmp_path / "missing", real)
    (fake / "c.png").write_bytes(b"broken")
    (real / "c.png").write_bytes(b"broken")
    with pytest.raises(PixforgeError, match="cannot read image"):
        evaluate_dirs(fake, real)


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 2 samples cannot span 3 dimensions
def test_other_feature_networks_give_kd_and_fd(pair_dirs):
    report = evaluate_dirs(
        *pair_dirs, ScoreOptions(("kid", "fid"), features=MeanColour(), kid_subset_size=2, kid_subsets=3)
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

    report = evaluate_dirs(
        fake, real, ScoreOptions(("psnr",), segmenter=left_right, num_classes=2), labels=labels
    )
    # per image: 32 x 64 class-1 pixels right; 32 x 64 - 1 class-0 truth pixels, of which 16 x 64 right
    tp0, gt0, tp1 = 2 * (16 * 64 - 1), 2 * (32 * 64 - 1), 2 * 32 * 64
    assert report.values["fcn_pixel_accuracy"] == pytest.approx((tp0 + tp1) / (gt0 + tp1))
    assert report.values["fcn_mean_class_accuracy"] == pytest.approx((tp0 / gt0 + 1.0) / 2)
    assert report.per_class["fcn_class_iou"][1] == pytest.approx(tp1 / (tp1 + gt0 - tp0))
    with pytest.raises(PixforgeError, match="segmenter, num_classes missing"):
        evaluate_dirs(fake, real, labels=labels)


def test_fcn_scores_at_the_label_maps_resolution(tmp_path, clean):
    """As the pix2pix script: a 64 x 64 output is resized (PIL bilinear) to its 24 x 32 label map first."""
    fake, real, labels = tmp_path / "fake", tmp_path / "real", tmp_path / "labels"
    photo = np.zeros((64, 64, 3), dtype=np.uint8)
    photo[:, 32:] = 255
    save(fake, "a", photo)
    save(real, "a", photo)
    truth = np.zeros((24, 32), dtype=np.uint8)
    truth[:, 16:] = 1
    save(labels, "a", truth)
    seen: list[torch.Tensor] = []

    def bright(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch)
        return (batch.mean(dim=1) > 0).long()

    report = evaluate_dirs(
        fake, real, ScoreOptions(("psnr",), segmenter=bright, num_classes=2), labels=labels
    )
    resized = np.asarray(Image.fromarray(photo).resize((32, 24), Image.Resampling.BILINEAR), np.float32)
    assert seen[0].shape == (1, 3, 24, 32)
    torch.testing.assert_close(seen[0][0], torch.from_numpy(resized).permute(2, 0, 1) / 127.5 - 1)
    assert report.values["fcn_pixel_accuracy"] == pytest.approx(1.0)
    assert "scored at the label maps' resolution" in report.settings["fcn"]


def test_fcn_absent_classes_count_zero_unless_nan_is_asked(pair_dirs):
    fake, real = pair_dirs
    labels = fake.parent / "labels"
    for stem in ("a", "b"):
        save(labels, stem, np.zeros((64, 64), dtype=np.uint8))

    def zeros(batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch.shape[0], 64, 64, dtype=torch.long)

    fcn = {"segmenter": zeros, "num_classes": 4}
    script = evaluate_dirs(fake, real, ScoreOptions((), **fcn), labels=labels)
    cityscapes = evaluate_dirs(fake, real, ScoreOptions((), **fcn, fcn_absent="nan"), labels=labels)
    assert script.values["fcn_mean_class_accuracy"] == pytest.approx(0.25)  # 1, 0, 0, 0
    assert script.values["fcn_mean_class_iou"] == pytest.approx(0.25)
    assert cityscapes.values["fcn_mean_class_accuracy"] == 1.0
    assert "pix2pix FCN-score script" in script.settings["fcn"]
    assert "Cityscapes benchmark convention" in cityscapes.settings["fcn"]
    with pytest.raises(PixforgeError, match="--fcn-absent 'none'"):
        evaluate_dirs(fake, real, ScoreOptions((), **fcn, fcn_absent="none"), labels=labels)


def test_reco_is_reported_per_image_and_as_a_ratio_of_sums(pair_dirs):
    fake, real = pair_dirs
    report = evaluate_dirs(fake, real, ScoreOptions(("reco",)))
    rainy_b = np.asarray(Image.open(fake / "b.png"))
    clean_b = np.asarray(Image.open(real / "b.png"))
    eco_clean, eco_rainy = reco.eco(clean_b), reco.eco(rainy_b)  # image a: clean_b mirrored, same ECO
    assert report.per_image[1]["eco_fake"] == pytest.approx(eco_rainy)
    assert report.values["reco_set"] == pytest.approx((eco_clean + eco_rainy + 2) / (2 * eco_clean + 2))
    assert "reco_set = sum(ECO_fake + C) / sum(ECO_real + C)" in report.settings["reco"]
    assert "ECO has no fixed sign" in report.settings["reco"]


def test_kid_of_a_small_set_uses_half_size_subsets_and_says_so(tmp_path, clean, rainy):
    fake, real = tmp_path / "fake", tmp_path / "real"
    for k in range(8):
        reference = np.ascontiguousarray(np.rot90(clean, k % 4))
        save(real, f"s{k}", reference if k < 4 else 255 - reference)
        save(fake, f"s{k}", rainy(reference, veil=0.1 * (k % 3), streak=30.0, seed=k))
    report = evaluate_dirs(fake, real, ScoreOptions(("kid",), features=MeanColour(), kid_subsets=10))
    assert report.values["KD_meancolourx100_std"] > 0
    assert (
        "subset size 4 (the smaller set, 8 images, is smaller than the requested 1000"
        in report.settings["kid"]
    )
