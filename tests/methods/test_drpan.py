"""DRPAN: the region proposal, the mask operation, the reviser and its penalty, the method end to end."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from pixforge import checkpoint
from pixforge.api import resolve_config, train
from pixforge.cli import cli
from pixforge.errors import PixforgeError
from pixforge.losses import dragan_penalty
from pixforge.methods import get_method
from pixforge.methods.base import DataInfo
from pixforge.methods.drpan import (
    DRPAN,
    DRPANConfig,
    Region,
    Reviser,
    draw_region,
    find_window,
    map_window,
    propose_region,
    score_heatmap,
    window_size,
)
from pixforge.nets.discriminators import Geometry, ImageDiscriminator, PatchDiscriminator, conv_geometry

PATCH70 = Geometry(receptive_field=70, jump=8, start=12.0)


# region proposal ---------------------------------------------------------------------------------------------


def test_window_size_is_eq_1_per_axis():
    assert window_size((30, 30), (256, 256), 64) == (8, 8)
    assert window_size((14, 30), (128, 256), 64) == (7, 8)
    assert window_size((2, 2), (32, 32), 8) == (1, 1)
    assert window_size((6, 6), (32, 32), 64) == (6, 6)


def test_known_minimum_gives_expected_region():
    """Two images, 128 x 256 (non-square), a 70x70 PatchGAN map (14 x 30), w* = 64 -> windows of 7 x 8 cells."""
    score = torch.zeros(2, 1, 14, 30)
    score[0, :, 5:12, 20:28] = -1.0  # the window with top-left cell (5, 20)
    score[1, :, 0:7, 0:8] = -0.5  # the first window
    score[1, :, 13, 29] = -3.0  # a single cell is less fake than the whole first window on average
    region = propose_region(score, (128, 256), 64, PATCH70)
    # centre y = 12 + (5 + 3) * 8 = 76 -> top 44; centre x = 12 + (20 + 3.5) * 8 = 200 -> left 168
    # image 1: the first window touches the map's border, so its region touches the image's (not [4, 8))
    assert region.top.tolist() == [44, 0]
    assert region.left.tolist() == [168, 0]
    assert (region.height, region.width) == (64, 64)
    assert region.top.dtype == torch.int64


def test_window_search_matches_brute_force():
    torch.manual_seed(0)
    score = torch.randn(4, 1, 9, 13)
    rows, cols = find_window(score, (3, 5))
    for n in range(4):
        means = torch.stack(
            [torch.stack([score[n, 0, r : r + 3, c : c + 5].mean() for c in range(9)]) for r in range(7)]
        )
        best = int(means.argmin())
        assert (rows[n].item(), cols[n].item()) == divmod(best, 9)


def test_vanilla_proposal_searches_probabilities_not_logits():
    """§3.1's "probability score map": windows of 2 x 2 cells on a 2 x 4 map. One very fake cell among
    confident real ones (cols 0-1) has the lowest mean logit (-1.25) but a mean probability of 0.75; the
    undecided window (cols 2-3) has mean logit 0 and probability 0.5, the lowest."""
    score = torch.tensor([[[[-20.0, 5.0, 0.0, 0.0], [5.0, 5.0, 0.0, 0.0]]]])
    geometry = Geometry(10, 8, 4.0)
    vanilla = Reviser(6, (16, 32), ndf=2, region_size=16, gan_mode="vanilla")
    assert vanilla.propose(score, (16, 32), geometry).left.item() == 16  # the last window
    lsgan = Reviser(6, (16, 32), ndf=2, region_size=16, gan_mode="lsgan")
    assert lsgan.propose(score, (16, 32), geometry).left.item() == 0  # lsgan scores are taken as they are


def test_region_clamped_inside_small_image():
    """A region larger than the image is the image; no region leaves the image."""
    score = torch.randn(3, 1, 6, 6)
    region = propose_region(score, (32, 32), 64, PATCH70)
    assert (region.height, region.width) == (32, 32)
    assert region.top.tolist() == [0, 0, 0] and region.left.tolist() == [0, 0, 0]
    region = propose_region(score, (24, 40), 16, Geometry(34, 4, 6.0))
    assert (region.top >= 0).all() and (region.top + 16 <= 24).all()
    assert (region.left >= 0).all() and (region.left + 16 <= 40).all()


def test_tau_mapping_compared_with_geometry():
    """The numbers of map_window's docstring: 70x70 PatchGAN on 256 px, w* = 64, w = 8, 23 window offsets."""
    cells = torch.arange(23)
    geometry = map_window(cells, 8, 64, 256, 30, PATCH70, "geometry")
    tau = map_window(cells, 8, 64, 256, 30, PATCH70, "tau")
    assert geometry.tolist() == [0, *range(16, 177, 8), 192]
    assert (tau[0].item(), tau[22].item()) == (3, 192)
    diff = (tau - geometry)[1:-1]
    assert (diff.min().item(), diff.max().item()) == (-4, 10)
    assert torch.nonzero(diff == 0).flatten().tolist() == [6]  # cell 7


def interior_boxes(geometry: Geometry, cells: int, image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi) of each cell's region by the geometry: a window of one cell and a region of its receptive field.

    Regions are clamped inside the image, so for cells whose receptive field leaves the image the region is
    shifted inwards; the areas perturbed below lie more than a receptive field from the border.
    """
    lo = map_window(torch.arange(cells), 1, geometry.receptive_field, image, cells, geometry)
    return lo, lo + geometry.receptive_field


@pytest.mark.parametrize(
    ("n_layers", "size", "area"), [(2, (96, 112), (40, 46, 52, 60)), (3, (192, 176), (90, 98, 70, 74))]
)
def test_perturbed_area_changes_exactly_the_cells_whose_regions_cover_it(n_layers, size, area):
    torch.manual_seed(n_layers)
    net = PatchDiscriminator(2, ndf=2, n_layers=n_layers, norm="none").double().eval()
    geometry = conv_geometry(net)
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    y0, y1, x0, x1 = area
    perturbed = x.clone()
    perturbed[..., y0:y1, x0:x1] += 1.0
    with torch.no_grad():
        changed = (net(perturbed) - net(x)).abs()[0, 0] > 1e-9
    top, bottom = interior_boxes(geometry, changed.shape[0], size[0])
    left, right = interior_boxes(geometry, changed.shape[1], size[1])
    covers_rows = (top < y1) & (bottom > y0)
    covers_cols = (left < x1) & (right > x0)
    expected = covers_rows[:, None] & covers_cols[None, :]
    assert expected.sum() > 4 and (~expected).sum() > 4
    assert torch.equal(changed, expected)


def monotone_patch_discriminator() -> PatchDiscriminator:
    """Equal positive weights, no bias: the score is a positive, symmetric blur of the input."""
    net = PatchDiscriminator(1, ndf=2, n_layers=3, norm="none").double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(0.05)
                m.bias.zero_()
    return net


def test_geometry_centres_region_on_the_fake_area_and_tau_does_not():
    """A bright 8x8 area on a dark 128 x 160 image is the 'most fake' (score = -D). Where the most fake window
    is an inner one, the geometry puts the region's centre within half a jump of the area's centre, the
    paper's tau up to a jump away; near the border (windows on the map's edge, their regions moved to the
    image's edge) the region still contains the area."""
    net = monotone_patch_discriminator()
    geometry = conv_geometry(net)
    errors = {"geometry": [], "tau": []}
    inner = [(40, 100), (60, 60), (88, 120), (48, 128), (80, 36)]
    for y, x in [*inner, (24, 24), (100, 136), (104, 32)]:
        image = torch.zeros(1, 1, 128, 160, dtype=torch.float64)
        image[..., y - 4 : y + 4, x - 4 : x + 4] = 1.0
        with torch.no_grad():
            score = -net(image)
        for mapping, found in errors.items():
            region = propose_region(score, (128, 160), 32, geometry, mapping)
            found.append((region.centre()[0] - torch.tensor([y, x])).abs().max().item())
            box = region.mask((128, 160))[0, 0]
            assert box[y - 4 : y + 4, x - 4 : x + 4].all()
    assert max(errors["geometry"][: len(inner)]) <= geometry.jump / 2
    assert max(errors["tau"][: len(inner)]) > geometry.jump


@pytest.mark.parametrize(
    ("size", "n_layers", "region_size"),
    [((256, 256), 3, 64), ((256, 256), 3, 16), ((256, 256), 3, 32), ((256, 256), 3, 128), ((128, 256), 3, 64)]
    + [((32, 32), 2, 16), ((32, 48), 2, 8)],
)
def test_regions_of_all_windows_cover_the_whole_image(size, n_layers, region_size):
    """Every pixel can be proposed: over all windows of D_p's real score map, the regions cover the image."""
    net = PatchDiscriminator(1, ndf=1, n_layers=n_layers, norm="none")
    with torch.no_grad():
        score_size = net(torch.zeros(1, 1, *size)).shape[-2:]
    window = window_size(score_size, size, region_size)
    rows, cols = (s - w + 1 for s, w in zip(score_size, window, strict=True))
    score = torch.ones(rows * cols, 1, *score_size)
    for n in range(rows * cols):  # map n has its unique most fake window at (n // cols, n % cols)
        r, c = divmod(n, cols)
        score[n, :, r : r + window[0], c : c + window[1]] = 0.0
    region = propose_region(score, size, region_size, conv_geometry(net))
    for first, extent, side in [(region.top, region.height, size[0]), (region.left, region.width, size[1])]:
        covered = torch.zeros(side, dtype=torch.bool)
        for start in first.unique().tolist():
            covered[start : start + extent] = True
        assert covered.all(), f"never proposed: {torch.nonzero(~covered).flatten().tolist()} of {side}"


# mask operation, crops, visuals ---------------------------------------------------------------------------------


def test_region_mask_crop_and_outline():
    region = Region(torch.tensor([1, 4]), torch.tensor([2, 0]), 3, 4)
    mask = region.mask((8, 6))
    assert mask.shape == (2, 1, 8, 6) and mask.sum().item() == 2 * 12
    assert mask[0, 0, 1:4, 2:6].all() and mask[1, 0, 4:7, 0:4].all()
    x = torch.arange(2 * 8 * 6, dtype=torch.float32).reshape(2, 1, 8, 6)
    assert torch.equal(region.crop(x), torch.stack([x[0, :, 1:4, 2:6], x[1, :, 4:7, 0:4]]))
    border = region.outline((8, 6), 1)
    assert border.sum().item() == 2 * (12 - 2)  # a 3 x 4 box has a 1 x 2 inside
    assert region.centre().tolist() == [[2.5, 4.0], [5.5, 2.0]]


def test_masked_fake_is_real_outside_and_generated_inside():
    real, fake = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16, requires_grad=True)
    region = Region(torch.tensor([0, 8]), torch.tensor([4, 2]), 8, 6)
    masked = Reviser.masked_fake(real, fake, region)
    assert torch.equal(masked, region.mask((16, 16)).expand(-1, 3, -1, -1))
    masked.sum().backward()
    assert torch.equal(fake.grad, region.mask((16, 16)).expand(-1, 3, -1, -1))


def test_reviser_without_mask_sees_the_region_pair():
    reviser = Reviser(6, (32, 32), ndf=4, region_size=16, mask_operation=False)
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    region = Region(torch.tensor([0, 16]), torch.tensor([8, 4]), 16, 16)
    pair = reviser.pair(x, y, region)
    assert torch.equal(pair[1, 3:], y[1, :, 16:32, 4:20])
    small = Reviser(6, (8, 8), ndf=4, region_size=16, mask_operation=False)
    whole = Region(torch.tensor([0]), torch.tensor([0]), 8, 8)
    assert small.pair(x[:1, :, :8, :8], y[:1, :, :8, :8], whole).shape == (1, 6, 16, 16)


def test_score_heatmap_and_drawn_region():
    score = torch.tensor([[[[-20.0, 0.0], [20.0, 0.0]]]])
    heat = score_heatmap(score, (32, 32), Geometry(34, 4, 6.0), "vanilla")
    assert heat.shape == (1, 1, 32, 32) and heat.min() >= -1 and heat.max() <= 1
    # cell 0 is centred at 6, cell 1 at 10: pixels up to 7 take cell 0's score
    assert heat[0, 0, 7, 0].item() == pytest.approx(-1.0) and heat[0, 0, 8, 0].item() == pytest.approx(1.0)
    image = torch.zeros(1, 3, 32, 32)
    drawn = draw_region(image, Region(torch.tensor([4]), torch.tensor([8]), 16, 16))
    changed = (drawn != image).any(1)[0]
    assert changed.sum().item() == 16 * 16 - 14 * 14
    assert drawn[0, :, 4, 8].tolist() == [1.0, -1.0, -1.0]


# the reviser's networks and penalty ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (96, 96)])
def test_image_discriminator_gives_one_score_per_image(size):
    net = ImageDiscriminator(6, ndf=4, n_layers=4, norm="batch")
    assert net(torch.randn(3, 6, *size)).shape == (3, 1)


def test_image_discriminator_refuses_too_small_images():
    with pytest.raises(PixforgeError, match="at least 32 px"):
        ImageDiscriminator(6, ndf=4, n_layers=5)(torch.randn(1, 6, 16, 32))


def test_dragan_penalty_of_a_linear_critic():
    """R(x) = <w, x> has gradient w everywhere: the penalty is alpha (||w|| - 1)^2 whatever the noise."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        net[1].weight.fill_(0.5)  # ||w|| = 0.5 * sqrt(12)
    penalty = dragan_penalty(net, torch.randn(4, 3, 2, 2), alpha=10.0)
    assert penalty.item() == pytest.approx(10.0 * (0.5 * 12**0.5 - 1) ** 2, rel=1e-5)
    penalty.backward()
    assert net[1].weight.grad.abs().sum() > 0


def recording(net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every call of ``net`` from now on."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    net.register_forward_hook(
        lambda m, inp, out: calls.append((inp[0].detach().clone(), out.detach().clone()))
    )
    return calls


def pair_case() -> tuple[Reviser, torch.Tensor, torch.Tensor, torch.Tensor, Region, torch.Tensor]:
    """A tiny reviser, x, real, fake, a region per image and that region's mask, written out by hand."""
    torch.manual_seed(0)
    reviser = Reviser(6, (32, 32), ndf=4, region_size=16)
    x, real, fake = (torch.randn(2, 3, 32, 32) for _ in range(3))
    region = Region(torch.tensor([0, 16]), torch.tensor([8, 4]), 16, 16)
    inside = torch.zeros(2, 3, 32, 32, dtype=torch.bool)
    inside[0, :, 0:16, 8:24] = True
    inside[1, :, 16:32, 4:20] = True
    return reviser, x, real, fake, region, inside


def test_penalty_is_eq_6_on_the_probability_with_noise_on_x():
    """alpha E[(||grad_x R(x + delta, y)|| - 1)^2] with R the sigmoid probability and y the real image unperturbed."""
    reviser, x, real, _, _, _ = pair_case()
    calls = recording(reviser.net)
    penalty = reviser.penalty(torch.cat([x, real], 1), 3)
    ((seen, _),) = calls
    assert torch.equal(seen[:, 3:], real)
    delta = seen[:, :3] - x
    assert delta.min() >= 0 and delta.max() <= 0.5 * x.std() + 1e-6 and delta.max() > 0.4 * x.std()
    perturbed = seen[:, :3].clone().requires_grad_(True)
    probability = torch.sigmoid(reviser.net(torch.cat([perturbed, real], 1))).flatten(1).mean(1)
    (grad,) = torch.autograd.grad(probability.sum(), perturbed)
    expected = 10.0 * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-4)


def test_pair_penalty_variant_perturbs_the_pair_and_uses_raw_scores():
    reviser, x, real, _, _, _ = pair_case()
    reviser.gp_variant = "pair"
    calls = recording(reviser.net)
    pair = torch.cat([x, real], 1)
    penalty = reviser.penalty(pair, 3)
    ((seen, _),) = calls
    assert (seen[:, 3:] != real).any() and (seen[:, :3] != x).any()
    perturbed = seen.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(reviser.net(perturbed).sum(), perturbed)
    expected = 10.0 * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-4)


def test_reviser_loss_real_pair_vs_masked_fake_and_penalty_at_real_data():
    """R's loss (eq. 6): log R(x, y) + log(1 - R(x, y_mask)) from R's own outputs, the penalty at the real pair."""
    reviser, x, real, fake, region, inside = pair_case()
    masked = torch.where(inside, fake, real)
    calls = recording(reviser.net)
    loss, scalars = reviser.loss(x, real, fake, region)
    assert len(calls) == 3

    def output_for(pair: torch.Tensor) -> torch.Tensor:
        (out,) = [out for seen, out in calls if torch.equal(seen, pair)]
        return out

    score_real = output_for(torch.cat([x, real], 1))
    score_fake = output_for(torch.cat([x, masked], 1))
    (penalty_input,) = [seen for seen, _ in calls if not torch.equal(seen[:, :3], x)]
    assert torch.equal(penalty_input[:, 3:], real)
    assert scalars["R_real"].item() == pytest.approx(F.softplus(-score_real).mean().item(), rel=1e-5)
    assert scalars["R_fake"].item() == pytest.approx(F.softplus(score_fake).mean().item(), rel=1e-5)
    total = scalars["R_real"] + scalars["R_fake"] + scalars["R_gp"]
    assert scalars["R_gp"] > 0 and loss.item() == pytest.approx(total.item(), rel=1e-5)


def test_reviser_generator_terms_reach_g_only_inside_the_region():
    """G's adversarial term against R on the masked fake and the region L1 (eq. 7-8): values and gradients."""
    reviser, x, real, fake, region, inside = pair_case()
    fake.requires_grad_(True)
    reviser.lambda_reviser, reviser.gamma_region = 1.0, 0.0
    calls = recording(reviser.net)
    loss, scalars = reviser.generator_loss(x, real, fake, region)
    ((seen, score),) = calls
    assert torch.equal(seen, torch.cat([x, torch.where(inside, fake, real)], 1).detach())
    assert scalars["G_R"].item() == pytest.approx(F.softplus(-score).mean().item(), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, fake)
    assert (grad[inside] != 0).float().mean() > 0.5 and (grad[~inside] == 0).all()
    reviser.lambda_reviser, reviser.gamma_region = 0.0, 1.0
    loss, scalars = reviser.generator_loss(x, real, fake, region)
    l1 = (fake - real).abs()[inside].mean()
    assert scalars["G_region"].item() == pytest.approx(l1.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, fake)
    assert (grad[inside] != 0).all() and (grad[~inside] == 0).all()


# the method ----------------------------------------------------------------------------------------------------


def tiny_drpan(**options) -> DRPAN:
    torch.manual_seed(0)
    cfg = DRPANConfig(ngf=4, ndf=4, n_layers=2, ndf_reviser=4, region_size=16, **options)
    return DRPAN(cfg, DataInfo(3, 3, (32, 32)))


def run_phases(method: DRPAN, batch: dict) -> dict:
    """One iteration as the trainer runs it: the shared forward pass, then each phase's loss and backward."""
    state = method.forward_step(batch)
    scalars = {}
    for phase in method.phases():
        method.zero_grad(set_to_none=True)
        loss, out = phase.loss(state)
        loss.backward()
        assert all(p.grad is not None for name in phase.nets for p in method.nets[name].parameters())
        scalars.update(out)
    return scalars


@pytest.mark.parametrize(
    "options",
    [{}, {"reviser": "patch"}, {"mask_operation": False}, {"region_mapping": "tau", "lambda_reviser": 1.0}],
)
def test_iteration_variants(options):
    method = tiny_drpan(**options)
    assert [p.name for p in method.phases()] == ["D", "R", "G"]
    batch = {"A": torch.randn(2, 3, 32, 32), "B": torch.randn(2, 3, 32, 32)}
    scalars = run_phases(method, batch)
    assert {"D_real", "R_real", "R_fake", "R_gp", "region_x", "G_R", "G_region", "G_L1"} <= set(scalars)
    assert ("G_GAN" in scalars) == (method.cfg.lambda_reviser < 1)
    assert all(torch.isfinite(v) for v in scalars.values())


def test_generator_loss_weights_follow_eq_9():
    method = tiny_drpan()
    batch = {"A": torch.randn(2, 3, 32, 32), "B": torch.randn(2, 3, 32, 32)}
    state = method.forward_step(batch)
    method.loss_D(state)
    for lam, beta, gamma in [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.25, 2.0, 3.0)]:
        method.cfg.beta_l1 = beta
        method.nets["R"].lambda_reviser, method.nets["R"].gamma_region = lam, gamma
        loss, s = method.loss_G(state)
        expected = lam * s["G_R"] + beta * s["G_L1"] + gamma * s["G_region"]
        if lam < 1:
            expected = expected + (1 - lam) * s["G_GAN"]
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


PATCH34 = Geometry(receptive_field=34, jump=4, start=6.0)  # n_layers=2, worked out by hand


def brute_force_region(probability: torch.Tensor, image: int, region_size: int, geometry: Geometry) -> tuple:
    """(top, left) by an explicit search over every window of a square (hs, hs) map and the mapping of
    map_window's docstring: centred on the window's cells, border windows moved to the image's border."""
    cells = probability.shape[-1]
    window = min(cells, max(1, round(region_size * cells / image)))
    last = cells - window
    means = {
        (r, c): probability[r : r + window, c : c + window].mean().item()
        for r in range(last + 1)
        for c in range(last + 1)
    }
    best = min(means, key=means.get)

    def first_pixel(cell: int) -> int:
        if cell in (0, last) and last > 0:
            return 0 if cell == 0 else image - region_size
        centre = geometry.start + (cell + (window - 1) / 2) * geometry.jump
        return min(max(round(centre - region_size / 2), 0), image - region_size)

    return first_pixel(best[0]), first_pixel(best[1])


def test_region_is_the_brute_force_most_fake_window_of_dp_score_map():
    """The region of each image against an explicit search of D_p's own probability map of the fake (before
    D_p's update), computed here independently of the D phase."""
    method = tiny_drpan()
    batch = {"A": torch.randn(3, 3, 32, 32), "B": torch.randn(3, 3, 32, 32)}
    state = method.forward_step(batch)
    with torch.no_grad():
        probability = torch.sigmoid(method.nets["D"](torch.cat([batch["A"], state["fake_B"]], 1)))
    method.loss_D(state)
    region = method.region(state)
    found = list(zip(region.top.tolist(), region.left.tolist(), strict=True))
    assert found == [brute_force_region(probability[n, 0], 32, 16, PATCH34) for n in range(3)]
    assert conv_geometry(method.nets["D"]) == PATCH34


def test_generator_gets_the_reviser_gradient():
    """With lambda = 1 and no L1 terms G's loss is L_adv(R) alone, and it reaches G's parameters."""
    method = tiny_drpan(lambda_reviser=1.0, gamma_region=0.0, beta_l1=0.0)
    batch = {"A": torch.randn(2, 3, 32, 32), "B": torch.randn(2, 3, 32, 32)}
    state = method.forward_step(batch)
    method.loss_D(state)
    loss, scalars = method.loss_G(state)
    assert loss.item() == pytest.approx(scalars["G_R"].item())
    grads = torch.autograd.grad(loss, list(method.nets["G"].parameters()))
    assert sum(g.abs().sum() for g in grads) > 0


def test_two_step_schedule_follows_the_authors_code():
    """D_p; G on L_adv(D_p) + beta L1; a new fake from the updated G, its region from D_p's map of it, R; G on
    L_adv(R) + gamma L1(region), each adversarial term with weight 1."""
    method = tiny_drpan(g_schedule="two_step")
    assert [p.name for p in method.phases()] == ["D", "G", "R", "G"]
    _, g_patch, r_step, g_revised = method.phases()
    batch = {"A": torch.randn(2, 3, 32, 32), "B": torch.randn(2, 3, 32, 32)}
    state = method.forward_step(batch)
    loss, scalars = g_patch.loss(state)
    assert loss.item() == pytest.approx((scalars["G_GAN"] + 100 * scalars["G_L1"]).item(), rel=1e-5)
    loss.backward()
    with torch.no_grad():
        for p in method.nets["G"].parameters():
            p.sub_(p.grad)  # G's first step (plain gradient descent)
        fake = method.nets["G"](batch["A"])
        probability = torch.sigmoid(method.discriminate(batch["A"], fake))
    assert not torch.allclose(fake, state["fake_B"])
    calls = recording(method.nets["R"].net)
    r_step.loss(state)
    region = state["region_revised"]
    found = list(zip(region.top.tolist(), region.left.tolist(), strict=True))
    assert found == [brute_force_region(probability[n, 0], 32, 16, PATCH34) for n in range(2)]
    masked = Reviser.masked_fake(batch["B"], fake, region)
    assert any(torch.allclose(seen, torch.cat([batch["A"], masked], 1)) for seen, _ in calls)
    loss, scalars = g_revised.loss(state)
    assert loss.item() == pytest.approx((scalars["G_R"] + 10 * scalars["G_region"]).item(), rel=1e-5)
    with pytest.raises(PixforgeError, match="g_schedule"):
        resolve_config("drpan", preset="derain", overrides={"g_schedule": "two_step"})


def test_two_step_schedule_steps_one_adam_twice(synth_root: Path, tmp_path: Path):
    run = tmp_path / "two_step"
    train("drpan", synth_root / "aligned", run, preset="tiny", steps=2, overrides={"g_schedule": "two_step"})
    optimizers = checkpoint.read_state(checkpoint.resolve(run))["optimizers"]
    assert sorted(optimizers) == ["D", "G", "R"]
    steps = {name: float(next(iter(o["state"].values()))["step"]) for name, o in optimizers.items()}
    assert steps == {"D": 2.0, "G": 4.0, "R": 2.0}


def test_explain_on_a_non_square_image():
    method = tiny_drpan().eval()
    batch = {"A": torch.randn(1, 3, 32, 48)}
    with method.inference():
        out = method.generate(batch)
        maps = method.explain(batch, out)
    assert maps["score"].shape == (1, 1, 32, 48) and maps["score"].abs().max() <= 1
    assert maps["region"].shape == out.shape
    assert 0 < (maps["region"] != out).any(1).sum() < 32 * 48


def test_config_checks_and_registry():
    assert get_method("drpan") is DRPAN
    with pytest.raises(PixforgeError, match="lambda_reviser"):
        resolve_config("drpan", overrides={"lambda_reviser": "1.5"})
    with pytest.raises(PixforgeError, match="region_mapping"):
        resolve_config("drpan", overrides={"region_mapping": "centre"})
    with pytest.raises(PixforgeError, match="reviser"):
        resolve_config("drpan", overrides={"reviser": "global"})


@pytest.mark.parametrize(("preset", "lam"), [("facades", 0.5), ("derain", 1.0)])
def test_paper_presets_construct(preset, lam):
    cfg = resolve_config("drpan", preset=preset)
    assert (cfg.model.netG, cfg.model.norm, cfg.model.region_size) == ("resnet_9blocks", "batch", 64)
    assert cfg.model.lambda_reviser == lam and cfg.data.crop_size == 256
    assert (cfg.model.gp_variant, cfg.model.g_schedule, cfg.model.alpha_gp) == ("paper", "joint", 10.0)
    method = DRPAN(cfg.model, DataInfo(3, 3, (256, 256)))
    assert isinstance(method.nets["R"].net, ImageDiscriminator) and method.nets["R"].net.n_layers == 6
    assert conv_geometry(method.nets["D"]).receptive_field == 70


def test_train_tiny_and_translate_with_regions(synth_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    result = train("drpan", synth_root / "aligned", run, preset="tiny", steps=3, log_every=1, sample_count=1)
    assert result.step == 3 and result.scalars["R_gp"] > 0
    assert (run / "samples" / "latest.png").is_file()
    out = tmp_path / "test"
    args = ["translate", str(run), str(synth_root / "aligned"), "--out", str(out), "--show-region"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    first = sorted(out.glob("*_region.png"))[0]
    score = Image.open(first.with_name(first.name.replace("_region", "_score")))
    assert score.size == Image.open(first).size == (32, 32)


def test_reviser_none_is_pix2pix_with_drpans_settings(synth_root: Path, tmp_path: Path):
    """The ablation of §4 (the reviser off): D_p and G only, G on L_adv(D_p) + beta L1, no R parameters."""
    method = tiny_drpan(reviser="none", beta_l1=7.0)
    assert "R" not in method.nets and not any(k.startswith("nets.R.") for k in method.state_dict())
    assert [p.name for p in method.phases()] == ["D", "G"]
    scalars = run_phases(method, {"A": torch.randn(2, 3, 32, 32), "B": torch.randn(2, 3, 32, 32)})
    assert set(scalars) == {"D_real", "D_fake", "G_GAN", "G_L1"}
    state = method.forward_step({"A": torch.randn(2, 3, 32, 32), "B": torch.randn(2, 3, 32, 32)})
    method.phases()[0].loss(state)
    loss, out = method.phases()[1].loss(state)
    assert torch.allclose(loss, out["G_GAN"] + 7.0 * out["G_L1"])
    assert set(method.explain({"A": torch.randn(1, 3, 32, 32)}, torch.randn(1, 3, 32, 32))) == {"score"}
    result = train(
        "drpan", synth_root / "aligned", tmp_path, preset="tiny", steps=2, overrides={"reviser": "none"}
    )
    assert result.step == 2 and "R_real" not in result.scalars
    assert not any(k.startswith("nets.R.") for k in checkpoint.read(tmp_path).weights)


def test_reviser_none_refuses_the_two_step_schedule():
    with pytest.raises(PixforgeError, match="two_step"):
        DRPANConfig(reviser="none", g_schedule="two_step").validate()
