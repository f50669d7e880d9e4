"""pix2pix: the objective, the phases, test-time modes, and learning on a tiny overfit."""

from __future__ import annotations

import pytest
import torch

import pixforge
from pixforge import checkpoint
from pixforge.errors import PixforgeError
from pixforge.methods.base import DataInfo
from pixforge.methods.pix2pix import Pix2Pix, Pix2PixConfig
from pixforge.nets.generators import UnetGenerator


def make(**kw) -> Pix2Pix:
    torch.manual_seed(0)
    cfg = Pix2PixConfig(netG="unet", ngf=8, ndf=8, n_layers=2, **kw)
    return Pix2Pix(cfg, DataInfo(3, 3, (32, 32)))


def batch(n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return {"A": a, "B": torch.flip(a, dims=[1]) * 0.5}


def run_steps(m: Pix2Pix, b: dict, steps: int) -> list[float]:
    opts = {
        p.name: torch.optim.Adam(
            [q for n in p.nets for q in m.nets[n].parameters()], 2e-3, betas=(0.5, 0.999)
        )
        for p in m.phases()
    }
    l1 = []
    for _ in range(steps):
        state = m.forward_step(b)
        for phase in m.phases():
            opts[phase.name].zero_grad()
            loss, scalars = phase.loss(state)
            loss.backward()
            opts[phase.name].step()
        l1.append(float(scalars["G_L1"]))
    return l1


def test_l1_falls_on_a_tiny_overfit() -> None:
    l1 = run_steps(make(), batch(), 60)
    assert sum(l1[-5:]) / 5 < 0.7 * sum(l1[:5]) / 5


def test_discriminator_sees_input_and_output_concatenated() -> None:
    m = make()
    assert m.nets["D"].blocks[0][0].in_channels == 6
    assert isinstance(m.nets["G"], UnetGenerator) and m.size_multiple == 32


def test_d_phase_does_not_backprop_into_g() -> None:
    m = make()
    state = m.forward_step(batch())
    d_phase, g_phase = m.phases()
    loss, _ = d_phase.loss(state)
    loss.backward()
    assert all(p.grad is None for p in m.nets["G"].parameters())
    loss, scalars = g_phase.loss(state)
    assert set(scalars) == {"G_GAN", "G_L1"}


def test_loss_weights_follow_lambda_l1() -> None:
    state_batch = batch()
    a, b = make(lambda_l1=0.0), make(lambda_l1=100.0)
    la, sa = a.phases()[1].loss(a.forward_step(state_batch))
    lb, sb = b.phases()[1].loss(b.forward_step(state_batch))
    assert torch.allclose(la, sa["G_GAN"])
    assert torch.allclose(lb, sb["G_GAN"] + 100 * sb["G_L1"])


def test_paper_test_mode_keeps_dropout_eval_mode_is_deterministic() -> None:
    b = batch(1)
    # a 32 px U-Net has no dropout layer (only the ngf*8 blocks of a deeper one have): a ResNet with dropout
    paper, plain = (
        Pix2Pix(
            Pix2PixConfig(netG="resnet_6blocks", ngf=8, dropout=0.5, test_mode=mode), DataInfo(3, 3, (32, 32))
        )
        for mode in ("paper", "eval")
    )
    with paper.inference():
        x1, x2 = paper.generate(b), paper.generate(b)
    with plain.inference():
        y1, y2 = plain.generate(b), plain.generate(b)
    assert not torch.equal(x1, x2)
    assert torch.equal(y1, y2)


def test_inference_leaves_batchnorm_statistics_untouched() -> None:
    m = make(test_mode="paper")
    before = {k: v.clone() for k, v in m.named_buffers()}
    m.visuals(batch())
    assert all(torch.equal(before[k], v) for k, v in m.named_buffers())
    assert m.training


def test_lambda_gan_zero_builds_and_steps_no_discriminator(synth_root, tmp_path) -> None:
    """Table 1's "L1": no discriminator at all, G alone on lambda_l1 * L1."""
    m = make(lambda_gan=0.0)
    assert "D" not in m.nets and [p.name for p in m.phases()] == ["G"]
    loss, scalars = m.phases()[0].loss(m.forward_step(batch()))
    assert set(scalars) == {"G_L1"} and torch.allclose(loss, 100 * scalars["G_L1"])
    result = pixforge.train(
        "pix2pix", synth_root / "aligned", tmp_path, preset="tiny", steps=2, overrides={"lambda_gan": 0}
    )
    assert result.step == 2 and set(result.scalars) == {"G_L1"}
    assert not any(".D." in k or k.startswith("D.") for k in checkpoint.read(tmp_path).weights)


def test_lambda_gan_weights_the_adversarial_term() -> None:
    m = make(lambda_gan=2.0, lambda_l1=10.0)
    loss, scalars = m.phases()[1].loss(m.forward_step(batch()))
    assert torch.allclose(loss, 2 * scalars["G_GAN"] + 10 * scalars["G_L1"])


def test_unconditional_discriminator_sees_only_the_output() -> None:
    """Table 1's "GAN": D(y), not D(x, y); its first layer takes the output's channels only."""
    torch.manual_seed(0)
    cfg = Pix2PixConfig(netG="unet", ngf=8, ndf=8, n_layers=2, conditional_d=False)
    m = Pix2Pix(cfg, DataInfo(1, 3, (32, 32)))
    assert m.nets["D"].blocks[0][0].in_channels == 3
    y = torch.rand(2, 3, 32, 32)
    assert torch.equal(
        m.discriminate(torch.zeros(2, 1, 32, 32), y), m.discriminate(torch.ones(2, 1, 32, 32), y)
    )


def test_no_objective_is_refused() -> None:
    with pytest.raises(PixforgeError, match="lambda_gan"):
        Pix2PixConfig(lambda_gan=0.0, lambda_l1=0.0).validate()
