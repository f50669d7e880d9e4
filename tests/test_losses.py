import math

import pytest
import torch

from pixforge.errors import PixforgeError
from pixforge.losses import GANLoss


def test_unknown_mode_raises():
    with pytest.raises(PixforgeError, match="gan_mode 'wgan'"):
        GANLoss("wgan")


def test_vanilla_is_bce_with_logits():
    loss = GANLoss("vanilla")
    pred = torch.zeros(2, 1, 3, 3)
    assert loss(pred, True).item() == pytest.approx(math.log(2))
    big = torch.full((1, 1, 2, 2), 20.0)
    assert loss(big, True).item() < 1e-6
    assert loss(big, False).item() == pytest.approx(20.0, abs=1e-6)
    assert loss(big, True, for_discriminator=False).item() == loss(big, True).item()


def test_lsgan_is_mse_to_one_or_zero():
    loss = GANLoss("lsgan")
    pred = torch.tensor([[0.5, 2.0]])
    assert loss(pred, True).item() == pytest.approx((0.25 + 1.0) / 2)
    assert loss(pred, False).item() == pytest.approx((0.25 + 4.0) / 2)


def test_hinge():
    loss = GANLoss("hinge")
    pred = torch.tensor([-2.0, 0.5, 3.0])
    assert loss(pred, True).item() == pytest.approx((3.0 + 0.5 + 0.0) / 3)
    assert loss(pred, False).item() == pytest.approx((0.0 + 1.5 + 4.0) / 3)
    assert loss(pred, True, for_discriminator=False).item() == pytest.approx(-0.5)


def test_sequence_is_sum_over_scales():
    loss = GANLoss("lsgan")
    preds = [torch.full((1, 1, 4, 4), 0.0), torch.full((1, 1, 2, 2), 2.0)]
    assert loss(preds, True).item() == pytest.approx(1.0 + 1.0)
    assert loss(tuple(preds), False).item() == pytest.approx(0.0 + 4.0)


def test_loss_is_differentiable():
    pred = torch.randn(2, 1, 4, 4, requires_grad=True)
    for mode in ("vanilla", "lsgan", "hinge"):
        pred.grad = None
        GANLoss(mode)(pred, True, for_discriminator=False).backward()
        assert pred.grad is not None and pred.grad.abs().sum() > 0
