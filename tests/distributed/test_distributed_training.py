"""Training, translating and evaluating with 2 gloo processes (real torchrun jobs on 127.0.0.1).

The jobs are started once per module (process start-up dominates their cost) and shared by the tests:
``full`` is a 20-step pix2pix run through ``torchrun -m pixforge train``; the other runs come from one
torchrun job of :mod:`tests.distributed.jobs`; ``resumed`` continues one of them with ``pixforge train
--nproc 2 --resume``. One-process references run in the test process.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import pixforge
from pixforge import checkpoint
from pixforge.api import train_config
from pixforge.data.dataset import EpochSampler, TranslationDataset
from pixforge.methods.pix2pixhd import Pix2PixHD
from pixforge.train import Trainer

#: instance norm and no dropout: 2 processes x batch B then equal 1 process x batch 2B
PLAIN = {"norm": "instance", "dropout": "0"}
PIX2PIX = {"steps": 20, "batch_size": 2, "log_every": 1, "checkpoint_every": 5, "keep_checkpoints": 4}
SHORT = {"steps": 5, "batch_size": 2, "log_every": 1}
#: pix2pixHD with a local enhancer whose global generator is frozen for the first 2 of 3 steps
ENHANCER = {
    "steps": 3,
    "batch_size": 2,
    "size": 64,
    "checkpoint_every": 2,
    "overrides": {"n_local_enhancers": "1", "steps_fix_global": "2", "encoder": "false"},
}
#: CycleGAN with pools of 4 images: full after 2 steps of 2 samples per rank, then drawn from
POOL = {"steps": 12, "batch_size": 2, "log_every": 1, "checkpoint_every": 6, "overrides": {"pool_size": "4"}}


def set_args(options: dict[str, Any]) -> list[str]:
    return [x for k, v in options.items() for x in ("--set", f"{k}={v}")]


def rows(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]


def state_of(run: Path) -> dict[str, Any]:
    return checkpoint.read_state(checkpoint.resolve(run))


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Build and train in float64 (the 2-process side does the same: ``"float64": true`` in jobs.py)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def single(method: str, data: Path, out: Path, batch_size: int, **options: Any) -> Path:
    """The one-process reference: batch ``batch_size`` (twice the per-process batch of the 2-process job).

    Both sides run in float64. GAN training amplifies rounding: in float32 the 2-process run and this one
    differed by up to ~1e-3 of a 5-step weight update, depending on the thread count and the CPU's kernels
    (a CycleGAN comparison failed under load). In float64 the same amplification of 2^-52 rounding gave at
    most 1.1e-13 of a weight update and 2e-15 of a loss here (1 and 2 threads), so the comparison's 1e-6
    is seven orders above rounding on any CPU or thread count, while a missing gradient all-reduce differs
    by ~100%.
    """
    with float64():
        pixforge.train(
            method, data, out, preset="tiny", **{**SHORT, "batch_size": batch_size}, overrides=options
        )
    return out


def initial_weights(method: str, data: Path, tmp: Path, **options: Any) -> dict[str, torch.Tensor]:
    with float64():
        cfg = train_config(method, data, tmp, preset="tiny", **SHORT, overrides=options)
        return {k: v.clone() for k, v in Trainer(cfg, tmp).method.state_dict().items()}


def assert_same_training(one: Path, two: Path, init: dict[str, torch.Tensor]) -> None:
    """Equal losses at every step, and equal weight updates (where Adam's update is not float noise).

    Equal up to float64 rounding (see :func:`single`); without the gradient all-reduce CycleGAN's losses
    differ by 1e-2 at step 2 and its weight updates by ~100%.

    A bias in front of instance norm has no gradient but float noise, which Adam scales to full steps, so
    the check covers the weight tensors.
    """
    r1, r2 = rows(one), rows(two)
    assert [r["step"] for r in r1] == [r["step"] for r in r2]
    for a, b in zip(r1, r2, strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)
    w1, w2 = checkpoint.read(one).weights, checkpoint.read(two).weights
    assert w1.keys() == w2.keys()
    for k in w1:
        if not w1[k].is_floating_point():
            continue
        d1, d2 = w1[k] - init[k], w2[k] - init[k]
        if k.endswith("weight"):
            assert (d1 - d2).norm() <= 1e-6 * d1.norm() + 1e-12, k


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, synth_root: Path, dist_tools) -> dict[str, Path]:
    """All 2-process runs of this module (two torchrun jobs and one resume)."""
    run_cmd, torchrun_cmd, pixforge_cmd = dist_tools.run, dist_tools.torchrun_cmd, dist_tools.pixforge_cmd
    root = tmp_path_factory.mktemp("dist")
    aligned, unaligned, labeled = (synth_root / x for x in ("aligned", "unaligned", "labeled"))
    names = (
        "full",
        "part",
        "eq",
        "ddp",
        "cyc",
        "cyc12",
        "cyc6",
        "bn",
        "gg",
        "hd",
        "hd2",
        "lr",
        "drpan",
        "tr",
        "ev",
    )
    out = {name: root / name for name in names}
    full = run_cmd(
        torchrun_cmd(
            "-m", "pixforge", "train", "pix2pix", "--data", str(aligned), "--out", str(out["full"]),
            "--preset", "tiny", *set_args({**PIX2PIX, **PLAIN}),
        )
    )  # fmt: skip
    assert full.returncode == 0, full.stderr[-3000:]
    out["full_log"] = root / "full.log"
    out["full_log"].write_text(full.stdout + full.stderr)
    train = {"preset": "tiny"}
    jobs = [
        {"train": {**train, "method": "pix2pix", "data": str(aligned), "out": str(out["part"]),
                   "stop_after": 10, **PIX2PIX, "overrides": PLAIN}},
        {"train": {**train, "method": "pix2pix", "data": str(aligned), "out": str(out["eq"]), **SHORT,
                   "overrides": PLAIN}, "float64": True},
        {"ddp": {**train, "method": "pix2pix", "data": str(aligned), "out": str(out["ddp"]), **SHORT,
                 "overrides": PLAIN}, "float64": True},
        {"train": {**train, "method": "cyclegan", "data": str(unaligned), "out": str(out["cyc"]), **SHORT},
         "float64": True},
        {"train": {**train, "method": "pix2pix", "data": str(aligned), "out": str(out["bn"]), **SHORT,
                   "overrides": {"norm": "batch", "dropout": "0", "sync_bn": "true"}}, "float64": True},
        {"train": {**train, "method": "guidegan", "data": str(aligned), "out": str(out["gg"]), **SHORT,
                   "overrides": PLAIN}, "float64": True},
        {"train": {**train, "method": "pix2pixhd", "data": str(labeled), "out": str(out["hd"]), **SHORT,
                   "steps": 3}},
        {"train": {**train, "method": "cyclegan", "data": str(unaligned), "out": str(out["cyc12"]), **POOL}},
        {"train": {**train, "method": "cyclegan", "data": str(unaligned), "out": str(out["cyc6"]), **POOL,
                   "stop_after": 6}},
        {"train": {**train, "method": "cyclegan", "data": str(unaligned), "out": str(out["cyc6"]), **POOL,
                   "resume": True}},
        {"train": {**train, "method": "pix2pixhd", "data": str(labeled), "out": str(out["hd2"]), **ENHANCER}},
        {"train": {**train, "method": "pix2pix", "data": str(aligned), "out": str(out["lr"]), "steps": 1,
                   "log_every": 1, "overrides": {"lr_scale": "linear"}}},
        {"train": {**train, "method": "drpan", "data": str(aligned), "out": str(out["drpan"]), **SHORT,
                   "steps": 3}},
        {"cli": ["translate", str(out["part"]), str(aligned), "--split", "train", "--out", str(out["tr"]),
                 "--html"]},
        {"cli": ["evaluate", str(out["part"]), "--data", str(aligned), "--split", "train", "--metrics",
                 "psnr,ssim", "--images", str(out["ev"]), "--out", str(root / "ev.json")]},
        {"error": {**train, "method": "pix2pix", "data": str(aligned), "out": str(root / "small"),
                   "batch_size": 16, "steps": 2}, "record": str(root / "small.txt")},
    ]  # fmt: skip
    (root / "jobs.json").write_text(json.dumps(jobs))
    job = run_cmd(
        torchrun_cmd(str(dist_tools.root / "tests" / "distributed" / "jobs.py"), str(root / "jobs.json"))
    )
    assert job.returncode == 0, job.stderr[-3000:]
    out["jobs_log"] = root / "jobs.log"
    out["jobs_log"].write_text(job.stdout + job.stderr)
    out["small"] = root / "small.txt"
    out["ev.json"] = root / "ev.json"
    out["part_w1"] = root / "part_w1"
    shutil.copytree(out["part"], out["part_w1"])
    out["resumed"] = out["part"]
    resume = run_cmd(
        pixforge_cmd(
            "train", "pix2pix", "--data", str(aligned), "--out", str(out["part"]), "--preset", "tiny",
            "--resume", "--nproc", "2", *set_args({**PIX2PIX, **PLAIN}),
        )
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr[-3000:]
    return out


def test_resume_with_two_processes_is_exact(runs: dict[str, Path]) -> None:
    """2 procs x 10 steps + resume + 10 steps == 2 procs x 20 steps: losses and weights bit-equal."""
    assert rows(runs["resumed"]) == rows(runs["full"])
    a, b = checkpoint.read(runs["resumed"]).weights, checkpoint.read(runs["full"]).weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cyclegan_pools_are_per_rank_and_resume_exactly(runs: dict[str, Path]) -> None:
    """6 + resume + 6 == 12 steps with 2 processes, past the pools' filling: each rank gets its own pools back."""
    assert rows(runs["cyc6"]) == rows(runs["cyc12"])
    a, b = checkpoint.read(runs["cyc6"]).weights, checkpoint.read(runs["cyc12"]).weights
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoint.read(runs["cyc12"]).extra, "the pools are training state, not weights"
    ranks = state_of(runs["cyc12"])["ranks"]
    own = [k for k in ranks[1]["training"] if k.startswith("pool_")]
    assert len(own) == 8 and sorted(ranks[1]["keys"]) == sorted(ranks[0]["training"])


@pytest.mark.parametrize("run", ["full", "cyc", "gg", "hd", "hd2", "drpan"])
def test_every_method_trains_on_two_processes(runs: dict[str, Path], run: str) -> None:
    state = state_of(runs[run])
    assert state["world_size"] == 2 and state["global_batch"] == 4
    assert state["step"] == checkpoint.read(runs[run]).step > 0


def test_lr_is_scaled_only_when_asked(runs: dict[str, Path]) -> None:
    assert rows(runs["full"])[0]["lr"] == pytest.approx(2e-4)
    assert rows(runs["lr"])[0]["lr"] == pytest.approx(2 * 2e-4)


def test_rank_zero_alone_writes_and_logs(runs: dict[str, Path]) -> None:
    full = runs["full"]
    steps = [r["step"] for r in rows(full)]
    assert steps == list(range(1, 21))
    assert len(list((full / "tb").glob("events.*"))) == 1
    log = runs["full_log"].read_text()
    assert log.count("step 5/20") == 1 and log.count("finished at step 20") == 1
    state = state_of(full)
    assert state["world_size"] == 2 and state["global_batch"] == 4 and len(state["ranks"]) == 2
    assert not any(p.name.startswith(".tmp") for p in (full / "checkpoints").iterdir())


@pytest.mark.parametrize(
    ("method", "data", "run", "options"),
    [
        ("pix2pix", "aligned", "eq", PLAIN),
        ("cyclegan", "unaligned", "cyc", {}),
        ("guidegan", "aligned", "gg", PLAIN),
    ],
)
def test_two_processes_equal_one_with_twice_the_batch(
    runs: dict[str, Path], synth_root: Path, tmp_path: Path, method: str, data: str, run: str, options: dict
) -> None:
    one = single(method, synth_root / data, tmp_path / "one", 4, **options)
    init = initial_weights(method, synth_root / data, tmp_path / "init", **options)
    assert_same_training(one, runs[run], init)


def test_the_trainers_reduction_equals_torch_ddp(
    runs: dict[str, Path], synth_root: Path, tmp_path: Path
) -> None:
    """pix2pix on 2 gloo processes from the same start: the trainer's per-phase all-reduce and torch's
    DistributedDataParallel (jobs.py's ``ddp_pix2pix``) give the same weights, to float64 rounding (the
    bound of :func:`assert_same_training`)."""
    init = initial_weights("pix2pix", synth_root / "aligned", tmp_path / "init", **PLAIN)
    ours, ddp = checkpoint.read(runs["eq"]).weights, torch.load(runs["ddp"] / "ddp.pt")
    assert ours.keys() == ddp.keys()
    for k in ours:
        if k.endswith("weight"):
            d_ours, d_ddp = ours[k] - init[k], ddp[k] - init[k]
            assert (d_ours - d_ddp).norm() <= 1e-6 * d_ours.norm() + 1e-12, k


def test_sync_bn_gives_global_batch_statistics(
    runs: dict[str, Path], synth_root: Path, tmp_path: Path
) -> None:
    options = {"norm": "batch", "dropout": "0"}
    one = single("pix2pix", synth_root / "aligned", tmp_path / "one", 4, **options)
    init = initial_weights("pix2pix", synth_root / "aligned", tmp_path / "init", **options)
    assert_same_training(one, runs["bn"], init)
    w1, w2 = checkpoint.read(one).weights, checkpoint.read(runs["bn"]).weights
    stats = [k for k in w1 if k.endswith("running_var")]
    assert stats and all(torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6) for k in stats)


def test_guidegan_cache_is_whole_on_every_rank(
    runs: dict[str, Path], synth_root: Path, tmp_path: Path
) -> None:
    """5 steps x 4 samples visit the 20 training samples once: every rank's cache holds all 20 maps."""
    extra = checkpoint.training_state(state_of(runs["gg"]))
    assert bool(extra["attention_AtoB_seen"].all())
    ranks = state_of(runs["gg"])["ranks"]
    assert len(ranks) == 2 and ranks[1]["training"] == {}  # rank 1's cache equals rank 0's
    one = single("guidegan", synth_root / "aligned", tmp_path / "one", 4, **PLAIN)
    ref = checkpoint.training_state(state_of(one))
    assert torch.allclose(ref["attention_AtoB"], extra["attention_AtoB"], atol=1e-4)


def test_pix2pixhd_clusters_once_over_all_ranks_features(runs: dict[str, Path], synth_root: Path) -> None:
    """The centres of the 2-process run equal one process's clustering of the same final weights."""
    translator = pixforge.load(runs["hd"])
    method = translator.method
    assert isinstance(method, Pix2PixHD) and method.centres is not None
    saved = method.centres.clone(), method.centre_counts.clone()
    cfg = translator.config.data
    plain = TranslationDataset(
        synth_root / "labeled", "train", cfg, train=False, size_multiple=method.size_multiple
    )
    method.cluster_features(plain, torch.device("cpu"))
    assert torch.equal(saved[1], method.centre_counts)
    assert torch.allclose(saved[0], method.centres, atol=1e-5)


def test_a_frozen_network_is_neither_reduced_nor_stepped(
    runs: dict[str, Path], synth_root: Path, tmp_path: Path
) -> None:
    """pix2pixHD's global generator frozen for 2 steps (no hang), unchanged at step 2, trained at step 3."""
    cfg = train_config(
        "pix2pixhd", synth_root / "labeled", tmp_path / "init", preset="tiny", size=64,
        **{k: v for k, v in ENHANCER.items() if k not in ("size", "overrides")}, overrides=ENHANCER["overrides"],
    )  # fmt: skip
    init = Trainer(cfg, tmp_path / "init").method.state_dict()
    step2 = checkpoint.read(checkpoint.checkpoints_dir(runs["hd2"]) / "step_00000002").weights
    step3 = checkpoint.read(runs["hd2"]).weights
    frozen = [k for k in init if k.startswith("nets.G.global_net.")]
    trained = [k for k in init if k.startswith("nets.G.enhancers.")]
    assert frozen and trained
    assert all(torch.equal(step2[k], init[k]) for k in frozen)
    assert not all(torch.equal(step2[k], init[k]) for k in trained)
    assert not all(torch.equal(step3[k], init[k]) for k in frozen if k.endswith("weight"))


def test_translate_writes_each_image_once(runs: dict[str, Path], synth_root: Path, tmp_path: Path) -> None:
    from pixforge.cli import main

    main(
        [
            "translate",
            str(runs["part_w1"]),
            str(synth_root / "aligned"),
            "--split",
            "train",
            "--out",
            str(tmp_path / "one"),
        ]
    )
    ones = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    twos = sorted(p.name for p in runs["tr"].glob("*.png"))
    assert ones == twos and len(ones) == 20
    for name in ones:
        assert (tmp_path / "one" / name).read_bytes() == (runs["tr"] / name).read_bytes()
    assert (runs["tr"] / "index.html").read_text().count("<img src='inputs/") == len(ones)
    log = runs["jobs_log"].read_text()
    assert log.count(f"translated {len(ones)} images into") == 1


def test_evaluate_merges_one_report(runs: dict[str, Path], synth_root: Path, tmp_path: Path) -> None:
    from pixforge.evaluation import evaluate_run
    from pixforge.metrics.report import ScoreOptions

    report = json.loads(runs["ev.json"].read_text())
    one = evaluate_run(
        runs["part_w1"],
        synth_root / "aligned",
        split="train",
        out=tmp_path / "ev",
        scoring=ScoreOptions(("psnr", "ssim")),
    )
    assert report["values"] == pytest.approx(one.values, rel=1e-6)
    assert len(report["per_image"]) == len(one.per_image)
    assert sorted(p.name for p in (runs["ev"] / "fake").iterdir()) == sorted(
        p.name for p in (tmp_path / "ev" / "fake").iterdir()
    )


def test_too_few_samples_for_the_world_is_refused(runs: dict[str, Path]) -> None:
    message = runs["small"].read_text()
    assert "fewer than 2 processes x batch 16 = 32" in message


def test_resume_on_another_world_size_continues_the_order(
    runs: dict[str, Path], synth_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Step 10 of 2 x batch 2 is position 40 = epoch 2, position 0; one process (batch 2) goes on from there."""
    with caplog.at_level("WARNING", logger="pixforge"):
        result = pixforge.train(
            "pix2pix", synth_root / "aligned", runs["part_w1"], preset="tiny", resume=True, stop_after=3,
            **PIX2PIX, overrides=PLAIN,
        )  # fmt: skip
    assert result.step == 13
    assert "resuming a run of 2 process(es) on 1: the data continues at epoch 2, position 0" in caplog.text
    state = state_of(runs["part_w1"])
    assert state["world_size"] == 1 and state["data_position"] == (2, 6)


def test_sampler_blocks_of_the_global_batch() -> None:
    """Rank r's batch of step i is block r of the global batch i of one process with batch world x B."""
    one = iter(EpochSampler(20, 6, seed=1))
    ranks = [iter(EpochSampler(20, 2, seed=1, rank=r, world_size=3)) for r in range(3)]
    for _ in range(7):  # over an epoch boundary (3 global batches per epoch)
        assert [next(one) for _ in range(6)] == [next(s) for s in ranks for _ in range(2)]


def test_sampler_resumes_mid_epoch_on_another_world_size() -> None:
    """18 samples, global batch 4: 16 per epoch. From epoch 1, position 10 (where a run of another global
    batch stopped), the ranks' blocks continue the order: positions 10..13, then 14, 15 and epoch 2's 0, 1."""
    one = EpochSampler(18, 4, seed=0, start=16 + 10)
    ranks = [iter(EpochSampler(18, 2, seed=0, start=16 + 10, rank=r, world_size=2)) for r in range(2)]
    got = [next(s)[0] for _ in range(2) for s in ranks for _ in range(2)]
    assert got == one.order(1)[10:16] + one.order(2)[:2]
