"""Config resolution: defaults, priority of the sources, keys, types, choices, YAML round trip, presets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pixforge import api
from pixforge.cli import main
from pixforge.config import (
    Config,
    DataConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_preset,
    locate,
    parse_assignments,
    preset_names,
    read_yaml,
    set_value,
    validate,
)
from pixforge.errors import PixforgeError
from pixforge.methods import METHODS
from pixforge.methods.pix2pix import Pix2PixConfig
from pixforge.train import TrainResult


def pix2pix_config() -> Config:
    return Config(method="pix2pix", model=Pix2PixConfig())


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_the_paper_settings():
    cfg = api.resolve_config("pix2pix")
    assert cfg.method == "pix2pix"
    assert cfg.model == Pix2PixConfig()
    assert (cfg.model.netG, cfg.model.ngf, cfg.model.ndf, cfg.model.n_layers) == ("unet_256", 64, 64, 3)
    assert cfg.model.lambda_l1 == 100.0
    assert (cfg.train.lr, cfg.train.beta1, cfg.train.beta2) == (2e-4, 0.5, 0.999)
    assert (cfg.data.load_size, cfg.data.crop_size) == (286, 256)
    assert cfg.data == DataConfig() and cfg.train == TrainConfig()


def test_preset_applies_its_values():
    cfg = api.resolve_config("pix2pix", preset="tiny")
    preset = load_preset("pix2pix", "tiny")
    assert cfg.model.ngf == preset["model"]["ngf"] != Pix2PixConfig().ngf
    assert cfg.data.crop_size == preset["data"]["crop_size"]
    assert cfg.model.lambda_l1 == 100.0


def test_priority_preset_file_flags_set(tmp_path):
    file = write_yaml(
        tmp_path / "opts.yaml",
        {"model": {"ngf": 12}, "train": {"steps": 30, "log_every": 7}, "data": {"crop_size": 24}},
    )
    cfg = api.resolve_config(
        "pix2pix",
        preset="tiny",
        config_file=file,
        flags={"train.steps": 40, "train.log_every": 9},
        overrides={"steps": "50"},
    )
    tiny = load_preset("pix2pix", "tiny")
    assert cfg.model.n_layers == tiny["model"]["n_layers"]  # preset only
    assert cfg.data.load_size == tiny["data"]["load_size"]  # preset only
    assert cfg.model.ngf == 12  # file over preset
    assert cfg.data.crop_size == 24  # file over preset
    assert cfg.train.log_every == 9  # flags over file
    assert cfg.train.steps == 50  # --set over flags


class RecordingTrainer:
    """Stands in for the Trainer: keeps the resolved config instead of training."""

    configs: list[Config] = []

    def __init__(self, cfg: Config, run_dir: Path, **kwargs: Any) -> None:
        RecordingTrainer.configs.append(cfg)
        self.run_dir = run_dir

    def fit(self, stop_after: int | None = None) -> TrainResult:
        return TrainResult(self.run_dir, 0, {}, False)


def test_cli_flags_reach_the_config_with_priority(tmp_path, monkeypatch, synth_root):
    monkeypatch.setattr(api, "Trainer", RecordingTrainer)
    RecordingTrainer.configs = []
    file = write_yaml(
        tmp_path / "opts.yaml", {"model": {"ngf": 12}, "data": {"crop_size": 24}, "train": {"steps": 7}}
    )
    options = "--preset tiny --size 48 --steps 40 --batch-size 2 --direction BtoA --set steps=50"
    paths = ["--data", str(synth_root / "aligned"), "--out", str(tmp_path / "run"), "--config", str(file)]
    main(["train", "pix2pix", *paths, *options.split(), "--set", "model.lambda_l1=10"])
    (cfg,) = RecordingTrainer.configs
    assert cfg.data.root == str(synth_root / "aligned")
    assert (cfg.data.crop_size, cfg.data.load_size) == (48, 54)  # --size over the file; load = 48 * 286/256
    assert cfg.model.ngf == 12
    assert cfg.train.steps == 50
    assert cfg.train.batch_size == 2
    assert cfg.data.direction == "BtoA"
    assert cfg.model.lambda_l1 == 10.0


def test_plain_and_qualified_keys():
    cfg = pix2pix_config()
    assert locate(cfg, "lambda_l1") == ("model", "lambda_l1")
    assert locate(cfg, "train.lr") == ("train", "lr")
    set_value(cfg, "lambda_l1", "10")
    set_value(cfg, "model.ngf", "16")
    set_value(cfg, "data.direction", "BtoA")
    assert (cfg.model.lambda_l1, cfg.model.ngf, cfg.data.direction) == (10.0, 16, "BtoA")


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("lambda_L1", "did you mean lambda_l1"),
        ("lamda_l1", "did you mean lambda_l1"),
        ("model.ngff", "model.ngf"),
    ],
)
def test_unknown_key_names_the_closest(key, hint):
    with pytest.raises(PixforgeError, match="unknown config key") as exc:
        set_value(pix2pix_config(), key, "1")
    assert hint in str(exc.value)
    assert key in str(exc.value)


def test_key_in_the_wrong_section_is_refused():
    with pytest.raises(PixforgeError, match="train.ngf"):
        locate(pix2pix_config(), "train.ngf")


@dataclass
class ClashingModel:
    """A model section with a field of the same name as a training option."""

    seed: int = 1


def test_ambiguous_plain_key_asks_for_a_qualified_one():
    cfg = Config(method="clash", model=ClashingModel())
    with pytest.raises(PixforgeError, match="ambiguous") as exc:
        set_value(cfg, "seed", "3")
    assert "train.seed" in str(exc.value) and "model.seed" in str(exc.value)
    set_value(cfg, "model.seed", "3")
    assert (cfg.model.seed, cfg.train.seed) == (3, 0)


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("ngf", "16", 16),
        ("flip", "no", False),
        ("flip", "true", True),
        ("lr", "1e-3", 1e-3),
        ("max_broken", 0, 0.0),
    ],
)
def test_values_are_converted_to_the_field_type(key, raw, expected):
    cfg = pix2pix_config()
    set_value(cfg, key, raw)
    section, name = locate(cfg, key)
    value = getattr(getattr(cfg, section), name)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "raw", "kind"),
    [
        ("ngf", "abc", "int"),
        ("ngf", "2.5", "int"),
        ("ngf", 2.5, "int"),
        ("flip", "maybe", "bool"),
        ("lr", "fast", "float"),
    ],
)
def test_bad_values_are_refused(key, raw, kind):
    with pytest.raises(PixforgeError, match=rf"option {key}: .* is not a valid {kind}"):
        set_value(pix2pix_config(), key, raw)


def test_choices_are_validated():
    cfg = api.resolve_config("pix2pix", overrides={"gan_mode": "lsgan"})
    assert cfg.model.gan_mode == "lsgan"
    with pytest.raises(PixforgeError, match=r"option norm: 'foo' is not one of batch, instance, none"):
        api.resolve_config("pix2pix", overrides={"norm": "foo"})
    with pytest.raises(PixforgeError, match="preprocess"):
        api.resolve_config("pix2pix", overrides={"preprocess": "resize"})


@pytest.mark.parametrize(
    ("key", "raw"),
    [("steps", "-1"), ("batch_size", "0"), ("dropout", "1.5"), ("log_every", "0"), ("checkpoint_every", "0")],
)
def test_ranges_are_validated(key, raw):
    cfg = pix2pix_config()
    set_value(cfg, key, raw)
    with pytest.raises(PixforgeError, match=key):
        validate(cfg)


def test_bounded_fields_know_open_and_closed_ends():
    """dropout lives in [0, 1), DRPAN's lambda_reviser in [0, 1]: the field's metadata decides, not the method."""
    with pytest.raises(PixforgeError, match=r"option dropout: must be in \[0, 1\) \(got 1.0\)"):
        api.resolve_config("pix2pix", overrides={"dropout": "1"})
    assert api.resolve_config("drpan", overrides={"lambda_reviser": "1"}).model.lambda_reviser == 1.0
    with pytest.raises(PixforgeError, match=r"option lambda_reviser: must be in \[0, 1\]"):
        api.resolve_config("drpan", overrides={"lambda_reviser": "1.01"})
    assert api.resolve_config("guidegan").model.dropout is None


def test_set_needs_key_equals_value():
    assert parse_assignments(["ngf=16", " lr = 0.1 "]) == {"ngf": "16", "lr": "0.1"}
    with pytest.raises(PixforgeError, match="KEY=VALUE"):
        parse_assignments(["ngf"])
    with pytest.raises(PixforgeError, match="KEY=VALUE"):
        parse_assignments(["=3"])


def test_yaml_round_trip(tmp_path):
    cfg = api.resolve_config(
        "pix2pix",
        preset="tiny",
        overrides={"lambda_l1": "12.5", "direction": "BtoA", "flip": "false", "seed": "7"},
    )
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = from_dict(read_yaml(path), Pix2PixConfig)
    assert again == cfg
    assert again.to_yaml() == cfg.to_yaml()
    assert api.resolve_config("pix2pix", config_file=path) == cfg


def test_saved_config_refuses_unknown_keys():
    data = pix2pix_config().to_dict()
    data["model"]["lambda_L1"] = 5
    with pytest.raises(PixforgeError, match="did you mean model.lambda_l1"):
        from_dict(data, Pix2PixConfig)


def test_config_file_of_another_method_is_refused(tmp_path):
    file = write_yaml(tmp_path / "other.yaml", {"method": "cyclegan", "model": {}})
    with pytest.raises(PixforgeError, match="cyclegan"):
        api.resolve_config("pix2pix", config_file=file)


def test_bad_config_files(tmp_path):
    with pytest.raises(PixforgeError, match="not found"):
        read_yaml(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [ngf\n")
    with pytest.raises(PixforgeError, match="not valid YAML") as exc:
        read_yaml(broken)
    assert "\n" not in str(exc.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- ngf\n")
    with pytest.raises(PixforgeError, match="mapping"):
        read_yaml(listing)


def test_unknown_preset_lists_the_presets():
    names = preset_names("pix2pix")
    assert {"tiny", "facades"} <= set(names)
    with pytest.raises(PixforgeError, match="unknown preset 'facade'") as exc:
        api.resolve_config("pix2pix", preset="facade")
    message = str(exc.value)
    assert "did you mean facades" in message
    assert all(name in message for name in names)


def test_overrides_accept_nested_and_flat_mappings():
    cfg = pix2pix_config()
    apply_overrides(cfg, {"model": {"ngf": 4}, "train.lr": 0.5, "crop_size": "16"})
    assert (cfg.model.ngf, cfg.train.lr, cfg.data.crop_size) == (4, 0.5, 16)


# discovering the options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_every_option_documents_itself_in_one_line(method):
    """Each field of every config has a docstring right below it (the help `pixforge options` prints)."""
    from pixforge.config import describe

    rows = describe(api.resolve_config(method))
    assert {r.key.split(".")[0] for r in rows} == {"data", "train", "model"}
    undocumented = [r.key for r in rows if not r.help]
    assert not undocumented, f"fields without a docstring below them: {undocumented}"
    assert [r.key for r in rows if len(r.help) > 110] == [], "one short line each"


def test_options_show_type_value_after_preset_and_what_is_allowed():
    from pixforge.config import describe

    rows = {r.key: r for r in describe(api.resolve_config("pix2pix", preset="facades"))}
    assert rows["data.direction"].value == "BtoA" and rows["data.direction"].allowed == "AtoB | BtoA"
    l1 = rows["model.lambda_l1"]
    assert (l1.short, l1.type, l1.value, l1.allowed) == ("lambda_l1", "float", "100.0", ">= 0")
    assert l1.help.startswith("Weight of the L1 term")
    assert rows["model.dropout"].allowed == "[0, 1)" and rows["data.flip"].allowed == "true | false"
    assert (rows["train.checkpoint_every"].value, rows["train.checkpoint_every"].allowed) == ("5000", ">= 1")
    guide = {r.key: r for r in describe(api.resolve_config("guidegan"))}
    assert (guide["model.dropout"].type, guide["model.dropout"].value) == ("float or none", "none")
    clash = {r.key: r for r in describe(Config(method="clash", model=ClashingModel()))}
    assert clash["model.seed"].short is None and clash["train.seed"].short is None
    assert clash["train.lr"].short == "lr"


def test_options_command_and_presets_in_train_help(capsys):
    main(["options", "pix2pixhd", "--preset", "cityscapes_2048"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("model.niter_fix_global "))
    assert line.split()[:5] == ["model.niter_fix_global", "niter_fix_global", "int", "10", ">="]
    assert "G1 frozen" in line
    assert any(x.startswith("model.norm ") and "batch | instance | none" in x for x in out.splitlines())
    main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for method in METHODS:
        assert f"{method}: {', '.join(preset_names(method))}" in help_text
    assert "pixforge options METHOD" in help_text
