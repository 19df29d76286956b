"""YAML configs: defaults, file keys, --set overrides and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from segnet_domains.config import apply_overrides, load_config, parse_override
from segnet_domains.errors import InputError
from segnet_domains.training import build_config

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs"
DEFAULTS = {"task": None, "model": {"features": [1, 2], "dropout": 0.0}, "train": {"epochs": 5, "lr": 0.1}}


def test_overrides_parse_yaml_values() -> None:
    assert parse_override("model.features=[8,16,32,64,64]") == ("model.features", [8, 16, 32, 64, 64])
    assert parse_override("train.lr=1e-3") == ("train.lr", 1e-3)
    assert parse_override("data.root=null") == ("data.root", None)
    assert parse_override("train.optimizer=adam") == ("train.optimizer", "adam")


def test_file_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 3\nmodel:\n  dropout: 0.5\n")
    cfg = load_config(f, DEFAULTS, ["train.epochs=1", "model.features=[8,16]"])
    assert cfg["train"] == {"epochs": 1, "lr": 0.1}
    assert cfg["model"] == {"features": [8, 16], "dropout": 0.5}
    assert DEFAULTS["train"]["epochs"] == 5  # defaults untouched


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.epoch=1", "unknown config key 'train.epoch'"),
        ("trian.epochs=1", "unknown config key 'trian.epochs'"),
        ("train=3", "is a section"),
        ("noequals", "expected key=value"),
    ],
)
def test_bad_overrides_are_one_clear_error(override: str, match: str) -> None:
    cfg = load_config(None, DEFAULTS)
    with pytest.raises(InputError, match=match) as err:
        apply_overrides(cfg, [override])
    assert "\n" not in str(err.value)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epocs: 3\n")
    with pytest.raises(InputError, match=r"c\.yaml: unknown config key 'train\.epocs'"):
        load_config(f, DEFAULTS)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_config(f, DEFAULTS)


def test_shipped_configs_build_with_task_keys(tmp_path: Path) -> None:
    for name, key in (("atlas_lesion", "data.context=1"), ("rite_vessels", "data.patch_size=64")):
        cfg = build_config(
            CONFIGS / f"{name}.yaml", [key, "train.epochs=1"], data_root=tmp_path, out=tmp_path
        )
        assert cfg["task"] == name and cfg["train"]["epochs"] == 1
        assert cfg["data"]["root"] == str(tmp_path)
    with pytest.raises(InputError, match="unknown config key 'data.context'"):
        build_config(CONFIGS / "rite_vessels.yaml", ["data.context=1"], data_root=tmp_path)
    cfg = build_config(CONFIGS / "rite_vessels.yaml", ["task=rite_av"], data_root=tmp_path)
    assert cfg["task"] == "rite_av"
    with pytest.raises(InputError, match="unknown task 'nope'"):
        build_config(CONFIGS / "rite_vessels.yaml", ["task=nope"], data_root=tmp_path)
    with pytest.raises(InputError, match="data.root is not set"):
        build_config(CONFIGS / "rite_vessels.yaml")
