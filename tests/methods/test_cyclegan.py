"""CycleGAN: the objective, the phases, the image pool, directions, and learning on a tiny overfit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.errors import PixforgeError
from pixforge.methods.base import DataInfo
from pixforge.methods.cyclegan import CycleGAN, CycleGANConfig, ImagePool

SIZE = 16


def make(**kw) -> CycleGAN:
    torch.manual_seed(0)
    cfg = CycleGANConfig(netG="resnet_6blocks", ngf=8, ndf=8, n_layers=2, **kw)
    return CycleGAN(cfg, DataInfo(3, 3, (SIZE, SIZE)))


def batch(n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1
    b = torch.rand(n, 3, SIZE, SIZE, generator=g).mul(0.5).sub(0.5)
    return {"A": a, "B": b, "index": torch.arange(n), "flip": torch.zeros(n, dtype=torch.bool)}


def run_steps(m: CycleGAN, b: dict, steps: int) -> list[dict[str, float]]:
    """Train like the trainer: each phase's nets get gradients, the others are frozen."""
    phases = m.phases()
    opts = {
        p.name: torch.optim.Adam(
            [q for n in p.nets for q in m.nets[n].parameters()], 2e-3, betas=(0.5, 0.999)
        )
        for p in phases
    }
    history = []
    for _ in range(steps):
        m.nets.requires_grad_(True)
        state = m.forward_step(b)
        scalars = {}
        for phase in phases:
            for name, net in m.nets.items():
                net.requires_grad_(name in phase.nets)
            opts[phase.name].zero_grad()
            loss, out = phase.loss(state)
            loss.backward()
            opts[phase.name].step()
            scalars.update({k: float(v) for k, v in out.items()})
        history.append(scalars)
    return history


def test_cycle_loss_falls_on_a_tiny_overfit() -> None:
    history = run_steps(make(pool_size=0, lambda_identity=0.0), batch(1), 25)
    cycle = [h["cycle_A"] + h["cycle_B"] for h in history]
    assert sum(cycle[-5:]) / 5 < 0.75 * sum(cycle[:5]) / 5


def test_networks_phases_and_objective() -> None:
    m = make()
    assert set(m.nets) == {"G_A", "G_B", "D_A", "D_B"}
    assert [(p.name, p.nets) for p in m.phases()] == [
        ("G", ("G_A", "G_B")),
        ("D_A", ("D_A",)),
        ("D_B", ("D_B",)),
    ]
    assert m.size_multiple == 4
    loss, s = m.loss_G(m.forward_step(batch()))
    cycle, identity = s["cycle_A"] + s["cycle_B"], s["idt_A"] + s["idt_B"]
    assert torch.allclose(loss, s["G_A"] + s["G_B"] + 10 * cycle + 0.5 * 10 * identity)


def test_identity_term_is_optional() -> None:
    m = make(lambda_identity=0.0)
    loss, s = m.loss_G(m.forward_step(batch()))
    assert set(s) == {"G_A", "G_B", "cycle_A", "cycle_B"}
    assert torch.allclose(loss, s["G_A"] + s["G_B"] + 10 * (s["cycle_A"] + s["cycle_B"]))


def test_cycle_runs_through_both_generators() -> None:
    m = make()
    b = batch()
    s = m.forward_step(b)
    with torch.no_grad():
        assert torch.allclose(s["rec_A"], m.nets["G_B"](m.nets["G_A"](b["A"])))
        assert torch.allclose(s["rec_B"], m.nets["G_A"](m.nets["G_B"](b["B"])))


def test_d_phases_train_on_detached_fakes() -> None:
    m = make()
    state = m.forward_step(batch())
    for phase in m.phases()[1:]:
        loss, _ = phase.loss(state)
        loss.backward()
    assert all(p.grad is None for g in ("G_A", "G_B") for p in m.nets[g].parameters())
    assert all(p.grad is not None for d in ("D_A", "D_B") for p in m.nets[d].parameters())


def test_generate_direction_picks_the_generator() -> None:
    m = make()
    b = batch()
    with m.inference():
        assert torch.equal(m.generate(b), m.nets["G_A"](b["A"]))
        assert torch.equal(m.generate(b, direction="AtoB"), m.nets["G_A"](b["A"]))
        assert torch.equal(m.generate(b, direction="BtoA"), m.nets["G_B"](b["A"]))
    with pytest.raises(PixforgeError, match="direction"):
        m.generate(b, direction="sideways")
    with pytest.raises(PixforgeError, match="cluster"):
        m.generate(b, cluster=2)


def test_visuals_show_both_cycles() -> None:
    v = make().visuals(batch())
    assert list(v) == ["input", "output", "reconstruction", "B", "B_output", "B_reconstruction"]
    assert all(t.shape == (2, 3, SIZE, SIZE) for t in v.values())


def test_labeled_data_is_refused() -> None:
    with pytest.raises(PixforgeError, match="labeled"):
        CycleGAN(CycleGANConfig(), DataInfo(13, 3, (SIZE, SIZE), label_nc=13))


def images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()


def test_image_pool_returns_new_images_until_full_then_mixes_in_old_ones() -> None:
    torch.manual_seed(0)
    pool = ImagePool(3)
    first = images([0.0, 1.0, 2.0])
    assert torch.equal(pool.query(first), first)
    returned = torch.cat([pool.query(images([10.0 + k])) for k in range(60)])[:, 0, 0, 0].tolist()
    old = [v for k, v in enumerate(returned) if v != 10.0 + k]
    assert set(returned) <= {0.0, 1.0, 2.0} | {10.0 + k for k in range(60)}
    assert 15 < len(old) < 45
    assert {0.0, 1.0, 2.0} & set(old)
    assert len(pool.images) == 3


def test_image_pool_of_size_zero_passes_through() -> None:
    x = images([1.0, 2.0])
    assert ImagePool(0).query(x) is x


def test_cli_trains_on_unaligned_domains_and_translates_both_ways(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    data = synth_root / "unaligned"
    main(["train", "cyclegan", "--data", str(data), "--out", str(run), "--preset", "tiny", "--steps", "2"])
    assert "finished at step 2" in capsys.readouterr().out
    for direction in ("AtoB", "BtoA"):
        main(["translate", str(run), str(data), "--out", str(tmp_path / direction), "--direction", direction])
    outputs = {d: sorted((tmp_path / d).glob("*.png")) for d in ("AtoB", "BtoA")}
    assert len(outputs["AtoB"]) == 2 and [p.name for p in outputs["AtoB"]] == [
        p.name for p in outputs["BtoA"]
    ]
    a, b = (Image.open(outputs[d][0]).tobytes() for d in ("AtoB", "BtoA"))
    assert a != b
    translator = pixforge.load(run)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out = translator.translate_batch({"A": x}, direction="BtoA")["output"]
    with translator.method.inference():
        assert torch.equal(out, translator.method.nets["G_B"](x))


def test_image_pool_state_round_trips_and_continues_identically() -> None:
    torch.manual_seed(0)
    pool = ImagePool(3)
    for k in range(5):
        pool.query(images([float(k)]))
    state = pool.state()
    assert sorted(state) == ["0", "1", "2"] and all(t.shape == (3, 2, 2) for t in state.values())
    copy = ImagePool(3)
    copy.load(state)
    rng = torch.get_rng_state()
    a = [pool.query(images([10.0 + k])) for k in range(8)]
    torch.set_rng_state(rng)
    b = [copy.query(images([10.0 + k])) for k in range(8)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_pools_travel_in_the_training_state() -> None:
    m = make(pool_size=3)
    run_steps(m, batch(2), 2)
    state = m.training_state()
    assert sorted(state) == [f"pool_{s}.{k}" for s in "AB" for k in range(3)] and not m.extra_state()
    fresh = make(pool_size=3)
    fresh.load_training_state(state)
    assert all(torch.equal(fresh.pools[s].images[k], m.pools[s].images[k]) for s in "AB" for k in range(3))


def test_resume_is_exact_past_the_pool_filling(synth_root: Path, tmp_path: Path, resume_check) -> None:
    resume_check("cyclegan", synth_root / "unaligned", tmp_path)
